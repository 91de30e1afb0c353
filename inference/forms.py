"""Forms of the inference pages. They collect what the pydantic parameters then validate;
the parameters (``inference.parameters``) stay the one definition of what a job accepts."""

from __future__ import annotations

from typing import Any

from django import forms
from pydantic import ValidationError

from inference.models import DatasetSnapshot
from inference.parameters import KEYFRAME_ARCHITECTURES, TRAINING_RECIPES, TrainKeyframeParameters

_TRAIN_DEFAULTS = TrainKeyframeParameters()

SELECTION_METRIC_CHOICES = [
    ("val_loss", "Validation loss (lowest)"),
    ("val_macro_f1", "Validation six-class macro F1 (highest)"),
    ("val_keyframe_f1", "Validation key-frame F1 (highest)"),
]
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
    patience = forms.IntegerField(
        min_value=1,
        initial=_TRAIN_DEFAULTS.patience,
        help_text="Epochs without a better validation score before training stops.",
    )
    selection_metric = forms.ChoiceField(
        label="Validation score",
        choices=SELECTION_METRIC_CHOICES,
        initial=_TRAIN_DEFAULTS.selection_metric,
        help_text="Picks the epoch whose weights are kept, and drives early stopping.",
    )
    label_smoothing = forms.FloatField(
        label="Label smoothing", min_value=0, max_value=0.99, initial=_TRAIN_DEFAULTS.label_smoothing
    )
    epoch_fraction = forms.FloatField(
        label="Frames per epoch (fraction)",
        min_value=0.01,
        max_value=1,
        initial=_TRAIN_DEFAULTS.epoch_fraction,
        help_text="Each epoch trains on a fresh random share of the training frames (neighbouring frames are alike).",
    )
    augmentation = forms.ChoiceField(
        choices=[
            ("trivial_augment_wide", "TrivialAugmentWide (the study's)"),
            ("mild", "Mild: small rotation, shift, zoom, brightness and contrast"),
        ],
        initial=_TRAIN_DEFAULTS.augmentation,
    )
    loop_context_window = forms.IntegerField(
        label="Loop context (frames each side)",
        min_value=0,
        max_value=50,
        required=False,
        initial=_TRAIN_DEFAULTS.loop_context_window,
        help_text="Blank: each frame on its own, as the study measured. A number: laterality from the whole loop "
        "and category over that many neighbouring frames, for the test figures and the pre-labels alike.",
    )
    loop_reference = forms.BooleanField(
        label="Read each frame beside its loop's minimum projection",
        required=False,
        initial=_TRAIN_DEFAULTS.loop_reference,
        help_text="A second input channel: the run's tree as filled as the contrast gets it, so the network "
        "judges how much of it a frame shows. Off: the frame alone, as the study.",
    )
    augment = forms.BooleanField(
        label="Augment the training frames",
        required=False,
        initial=_TRAIN_DEFAULTS.augment,
        help_text="With the augmentation chosen above.",
    )
    tune_keyframe_threshold = forms.BooleanField(
        label="Tune the key-frame threshold on the validation split",
        required=False,
        initial=_TRAIN_DEFAULTS.tune_keyframe_threshold,
        help_text="Otherwise 0.5. The threshold is stored with the model.",
    )
    activate = forms.BooleanField(
        required=False, help_text="Make it the active model when trained (the first model of its kind always is)."
    )

    #: The fields a recipe fills in (the page's recipe buttons set them; see ``recipes``).
    RECIPE_FIELDS = (
        "arch", "image_size", "epochs", "batch_size", "lr", "patience", "selection_metric", "label_smoothing",
        "epoch_fraction", "augment", "augmentation", "tune_keyframe_threshold", "loop_context_window",
        "loop_reference",
    )  # fmt: skip

    @classmethod
    def recipes(cls) -> dict[str, dict[str, Any]]:
        """Each recipe's value of every recipe field, for the page's recipe buttons."""
        return {
            name: TrainKeyframeParameters.model_validate(values).model_dump(include=set(cls.RECIPE_FIELDS))
            for name, values in TRAINING_RECIPES.items()
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            self.parameters = TrainKeyframeParameters(
                **{name: cleaned[name] for name in self.RECIPE_FIELDS},
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
