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
    augment: bool = True
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

    # Minimum probability of "<laterality>_better" for a frame to be a key frame.
    threshold: float = Field(0.5, ge=0, le=1)
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
