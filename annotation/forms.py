"""Forms of the annotation pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import models

from annotation.labels import MAX_NOTE_CHARS
from annotation.models import AnnotationProject, Exam, KeyFrameCategory, Laterality
from cagvlm_site.roles import Role


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


# --- labelling pages ---------------------------------------------------------------------------


class AdjudicationForm(forms.Form):
    laterality = forms.ChoiceField(choices=Laterality.choices, widget=forms.RadioSelect)
    category = forms.ChoiceField(choices=KeyFrameCategory.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        required=False,
        max_length=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this label: kept with the final label.",
    )


class AuditTrail(models.TextChoices):
    LABELS = "labels", "Physicians' labels"
    FINAL = "final", "Final labels"


class AuditFilterForm(forms.Form):
    trail = forms.ChoiceField(choices=AuditTrail.choices, required=False, label="Trail")
    physician = forms.ModelChoiceField(
        queryset=None,  # set in __init__: the users who label or adjudicate
        required=False,
        to_field_name="username",
        label="Person",
        empty_label="Everyone",
        help_text="Whose label it is; on the final labels' trail, who caused the change.",
    )
    exam = forms.UUIDField(required=False, help_text="The exam's UUID.")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["physician"].queryset = (
            get_user_model()
            .objects.filter(groups__name__in=[Role.PHYSICIAN.value, Role.ADMIN.value])
            .distinct()
            .order_by("username")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned


class LabelImportForm(forms.Form):
    file = forms.FileField(
        label="CSV or JSON file",
        help_text="Columns: frame_uuid (or loop_uuid and frame_index), physician (username), laterality (LCA, RCA), "
        "category (better, bad, other), note.",
    )
    dry_run = forms.BooleanField(required=False, initial=True, label="Dry run: check the file and report, save nothing")
    final = forms.BooleanField(required=False, label="These are final labels (no physician column)")


class ProjectForm(forms.ModelForm):
    """A project's labelling settings."""

    class Meta:
        model = AnnotationProject
        fields = ("mode", "labels_required", "worklist_order")


class NewProjectForm(forms.ModelForm):
    class Meta:
        model = AnnotationProject
        fields = ("name", "mode", "labels_required", "worklist_order")


class ExamAssignmentForm(forms.Form):
    """Put the chosen exams in one project."""

    exams = forms.ModelMultipleChoiceField(
        queryset=Exam.objects.all(),
        to_field_name="uuid",
        error_messages={"required": "Choose at least one exam."},
    )
    project = forms.ModelChoiceField(
        queryset=AnnotationProject.objects.all(),
        to_field_name="uuid",
        empty_label=None,
        error_messages={"invalid_choice": "That project does not exist (any more)."},
    )
