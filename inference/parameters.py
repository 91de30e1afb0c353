"""The validated parameters of each kind of job (stored in ``Job.parameters``).

Plain pydantic, no torch: the web process validates a form or an API call against these
before a job row exists, and the worker reads them back the same way.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Architectures offered in the training form. Any timm ConvNeXt name works from the command
#: line; these are the ones the study used (base) and the ones a CPU trains in minutes.
KEYFRAME_ARCHITECTURES = ["convnext_base", "convnext_small", "convnext_tiny", "convnext_nano", "convnext_atto"]


class TrainKeyframeParameters(BaseModel):
    """One training run of the stage-1 key-frame CNN. Defaults follow the study."""

    model_config = ConfigDict(extra="forbid")

    arch: str = Field("convnext_base", pattern=r"^convnext_[a-z0-9_.]+$")
    image_size: int = Field(224, ge=32, le=1024)
    epochs: int = Field(200, ge=1, le=1000)
    batch_size: int = Field(128, ge=1, le=4096)
    # Largest batch pushed through the network at once; batch_size / micro_batch_size steps of
    # gradient accumulation make one optimiser step. None: the whole batch at once.
    micro_batch_size: int | None = Field(None, ge=1, le=4096)
    lr: float = Field(1e-4, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    # Early stopping: epochs without improvement of the validation loss before stopping.
    patience: int = Field(20, ge=1)
    # What picks the epoch whose weights are kept and drives early stopping: the validation loss
    # (lower is better) or a validation F1 (higher is better; ties go to the lower loss).
    selection_metric: Literal["val_loss", "val_macro_f1", "val_keyframe_f1"] = "val_loss"
    # Label smoothing of the cross-entropy (0: none).
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Fraction of the training frames each epoch trains on (a fresh random subset every epoch):
    # neighbouring frames of a run are nearly alike, so fewer of them per epoch cost little.
    epoch_fraction: float = Field(1.0, gt=0, le=1)
    # Choose the key-frame threshold on P(better) with the best validation key-frame F1 and store
    # it with the model; False: 0.5.
    tune_keyframe_threshold: bool = False
    augment: bool = True
    # Which augmentation ``augment`` applies: TrivialAugmentWide (the study's), or "mild": a small
    # rotation, shift and zoom and a little brightness and contrast, none of the operations that
    # change what the classes are about (sharpness, contrast inversion, posterisation).
    augmentation: Literal["trivial_augment_wide", "mild"] = "trivial_augment_wide"
    # Loop context (inference.ml.keyframe.context): laterality from the whole loop, category
    # averaged over this many frames on each side; applied to validation, test and pre-labels
    # alike. None: each frame on its own, as the study measured.
    loop_context_window: int | None = Field(None, ge=0, le=50)
    # A second input channel with the loop's minimum-intensity projection (every pixel at its
    # darkest over the run: its tree as filled as the contrast ever gets it), so the network
    # judges each frame against its own run's filled tree. False: the frame alone, as the study.
    loop_reference: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # An existing snapshot to train on; None: build a new one from the current final labels.
    snapshot: UUID | None = None
    # How a new snapshot is split (ignored when ``snapshot`` is given).
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    split_by: Literal["exam", "loop"] = "exam"
    # Activate the new version when it is trained (the first version of a kind always is).
    activate: bool = False

    @model_validator(mode="after")
    def _micro_batch_divides_batch(self) -> TrainKeyframeParameters:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError("batch_size must be a multiple of micro_batch_size")
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise ValueError("validation and test fractions leave too little to train on")
        return self


class KeyFrameSelection(BaseModel):
    """How key frames are picked from the pre-labels of a loop."""

    model_config = ConfigDict(extra="forbid")

    # Minimum probability of "<laterality>_better" for a frame to be a key frame; None: the
    # model's own (tuned on its validation split when it was trained so; else 0.5).
    threshold: float | None = Field(None, ge=0, le=1)
    # Key frames of one loop are at least this many frames apart.
    min_gap_frames: int = Field(5, ge=1)
    # At most this many key frames per loop.
    max_per_loop: int = Field(2, ge=1)
    # At most this many key frames per exam and laterality (the study read ~4.6 per exam).
    max_per_exam_laterality: int = Field(3, ge=1)


class PrelabelParameters(BaseModel):
    """Run a model over the frames of exams, store pre-labels and pick key frames."""

    model_config = ConfigDict(extra="forbid")

    # Exams to pre-label; empty: every exam without pre-labels of the model.
    exams: list[UUID] = Field(default_factory=list)
    # The model version to use; None: the active version of the key-frame CNN.
    model_version: UUID | None = None
    # Pre-label every frame (key-frame extraction needs them all) or sampled frames only.
    frames: Literal["all", "sampled"] = "all"
    batch_size: int = Field(64, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    key_frames: KeyFrameSelection = Field(default_factory=KeyFrameSelection)


#: The CPU recipe, chosen with ``benchmarks/phantom_keyframe_experiment.py`` on phantom cohorts
#: (the study's defaults, ConvNeXt-Base at 224 px for 200 epochs, need a GPU): three epochs over
#: a fresh half of the training frames each, a mild augmentation (TrivialAugmentWide's
#: sharpness, solarise and posterise change what the classes are about), the key-frame threshold
#: tuned on the validation split, loop context (laterality from the whole run, category over
#: +-2 frames, a key-frame peak ratio chosen with the threshold on the validation split), and
#: each frame read beside its loop's minimum projection. About 6 minutes on 2 CPU threads for 42
#: training exams; the figures it reaches on held-out phantom exams are in the experiment's
#: docstring.
CPU_RECIPE: dict[str, object] = {
    "arch": "convnext_atto",
    "image_size": 128,
    "epochs": 3,
    "batch_size": 32,
    "lr": 1e-3,
    "patience": 3,
    "epoch_fraction": 0.5,
    "augmentation": "mild",
    "tune_keyframe_threshold": True,
    "loop_context_window": 2,
    "loop_reference": True,
}
#: Named sets of training parameters: the study's defaults (ConvNeXt-Base, needs a GPU) and the
#: CPU recipe tested on the phantom. ``train_keyframe --recipe`` and the training form start
#: from one; what is given explicitly overrides it.
TRAINING_RECIPES: dict[str, dict[str, object]] = {"study": {}, "cpu": CPU_RECIPE}
