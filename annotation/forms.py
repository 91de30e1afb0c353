"""Forms of the annotation pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes any number of files and cleans to a list of them."""

    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = [item for item in (data if isinstance(data, list | tuple) else [data]) if item]
        if not files:
            if self.required:
                raise forms.ValidationError(self.error_messages["required"], code="required")
            return []
        # The single-file checks (empty file, name length) run on each file in turn.
        return [super(MultipleFileField, self).clean(item, initial) for item in files]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="DICOM files or zip archives",
        # No ``accept`` filter: cine loops often come without any extension (XA1_UNC, IM00001).
        help_text="XA cine loops (.dcm or no extension) and .zip archives of them; choose as many as you like.",
        error_messages={"required": "Choose at least one file to upload."},
    )
