"""Forms of the inference pages. They collect what the pydantic parameters then validate;
the parameters (``inference.parameters``) stay the one definition of what a job accepts."""

from __future__ import annotations

from typing import Any

from django import forms
from pydantic import ValidationError

from inference.models import DatasetSnapshot
from inference.parameters import KEYFRAME_ARCHITECTURES, TrainKeyframeParameters

_TRAIN_DEFAULTS = TrainKeyframeParameters()

SPLIT_BY_CHOICES = [("exam", "By exam (no exam in two splits)"), ("loop", "By cine loop (no loop in two splits)")]


class SnapshotChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.frame_count} frames, {obj.created_at:%Y-%m-%d %H:%M})"


class TrainKeyframeForm(forms.Form):
    arch = forms.ChoiceField(
        label="Architecture",
        choices=[(name, name) for name in KEYFRAME_ARCHITECTURES],
        initial=_TRAIN_DEFAULTS.arch,
        help_text="convnext_base as in the study; convnext_atto or convnext_nano train in minutes on a CPU.",
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000, initial=_TRAIN_DEFAULTS.epochs)
    batch_size = forms.IntegerField(label="Batch size", min_value=1, max_value=4096, initial=_TRAIN_DEFAULTS.batch_size)
    lr = forms.FloatField(label="Learning rate", min_value=1e-8, max_value=1, initial=_TRAIN_DEFAULTS.lr)
    image_size = forms.IntegerField(
        label="Image size (px)", min_value=32, max_value=1024, initial=_TRAIN_DEFAULTS.image_size
    )
    seed = forms.IntegerField(
        initial=_TRAIN_DEFAULTS.seed, help_text="Seeds the split of a new snapshot and the training."
    )
    snapshot = SnapshotChoiceField(
        queryset=DatasetSnapshot.objects.all(),
        required=False,
        empty_label="New snapshot from the current final labels",
        to_field_name="uuid",
    )
    split_by = forms.ChoiceField(
        label="Split a new snapshot", choices=SPLIT_BY_CHOICES, initial=_TRAIN_DEFAULTS.split_by
    )
    activate = forms.BooleanField(
        required=False, help_text="Make it the active model when trained (the first model of its kind always is)."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            self.parameters = TrainKeyframeParameters(
                arch=cleaned["arch"],
                epochs=cleaned["epochs"],
                batch_size=cleaned["batch_size"],
                lr=cleaned["lr"],
                image_size=cleaned["image_size"],
                seed=cleaned["seed"],
                snapshot=cleaned["snapshot"].uuid if cleaned.get("snapshot") else None,
                split_by=cleaned["split_by"],
                activate=cleaned.get("activate", False),
            )
        except ValidationError as exc:
            for error in exc.errors():
                raise forms.ValidationError(error["msg"]) from None
        return cleaned


class SnapshotForm(forms.Form):
    name = forms.CharField(max_length=200)
    seed = forms.IntegerField(initial=0)
    validation_fraction = forms.FloatField(min_value=0.01, max_value=0.49, initial=0.15)
    test_fraction = forms.FloatField(min_value=0.01, max_value=0.49, initial=0.15)
    split_by = forms.ChoiceField(choices=SPLIT_BY_CHOICES, initial="exam")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        validation, test = cleaned.get("validation_fraction"), cleaned.get("test_fraction")
        if validation is not None and test is not None and validation + test >= 0.8:
            raise forms.ValidationError("Validation and test fractions leave too little to train on.")
        return cleaned
