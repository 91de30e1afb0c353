"""The stage-1 key-frame CNN's configuration: what a set of weights needs to be used again.

Plain pydantic, no torch: the registry validates it from ``ModelVersion.config`` in the web
process without loading the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

#: The six combined classes, in the order of ``annotation.models.SIX_CLASSES`` (a test checks
#: that they agree). Copied rather than imported so that the ML code needs no Django models.
CLASS_NAMES: list[str] = ["LCA_better", "LCA_bad", "LCA_other", "RCA_better", "RCA_bad", "RCA_other"]

#: Class indices by laterality and the indices of the two "better" (key-frame) classes.
LCA_CLASSES = (0, 1, 2)
RCA_CLASSES = (3, 4, 5)
BETTER_CLASSES = (0, 3)

# The grey level of ImageNet's mean and standard deviation (the RGB values averaged), so that a
# stem adapted from RGB ImageNet weights by summing its channels sees inputs on the scale it knows.
GRAY_MEAN = 0.449
GRAY_STD = 0.226


class KeyframeModelConfig(BaseModel):
    """A timm ConvNeXt with a six-way head over one grey channel, and its input normalisation."""

    arch: str = Field(default="convnext_base", pattern=r"^convnext_[a-z0-9_.]+$")
    image_size: int = Field(default=224, ge=16, le=1024)
    num_classes: int = 6
    class_names: list[str] = Field(default_factory=lambda: list(CLASS_NAMES))
    in_chans: int = Field(default=1, ge=1, le=3)
    # How grey levels become the network's input (data.normalise): "highpass" removes the
    # background each exam has its own of; "image" and "fixed" keep it.
    normalisation: Literal["highpass", "image", "fixed"] = "highpass"
    mean: float = GRAY_MEAN
    std: float = Field(default=GRAY_STD, gt=0)
    # A frame is a key frame at P(LCA_better) + P(RCA_better) of this or more: 0.5, or the
    # threshold with the best key-frame F1 on the validation split when training tuned it.
    keyframe_threshold: float = Field(default=0.5, ge=0, le=1)
    # Loop context the model was measured with and pre-labels with (context.with_loop_context):
    # None, each frame on its own; else the category window in frames.
    loop_context_window: int | None = Field(default=None, ge=0, le=50)
    # With loop context: P(better) below this share of the loop's best frame's is scaled down
    # (context.with_loop_context); chosen on the validation split with the threshold.
    keyframe_peak_ratio: float | None = Field(default=None, gt=0, le=1)
    # The input's second channel is the frame's loop's minimum-intensity projection
    # (data.with_loop_reference); in_chans is then 2.
    loop_reference: bool = False

    @model_validator(mode="after")
    def _six_known_classes(self) -> KeyframeModelConfig:
        if self.num_classes != len(self.class_names):
            raise ValueError("num_classes must equal the number of class names")
        if self.class_names != CLASS_NAMES:
            raise ValueError(f"class names must be {CLASS_NAMES} (the metrics and the key-frame picker rely on them)")
        if self.loop_reference and self.in_chans != 2:
            raise ValueError("a model with the loop reference takes 2 input channels (the frame and its loop's)")
        return self

    @property
    def image_channels(self) -> int:
        """Channels of the uint8 images the network's input is made from: the frame, and its
        loop's minimum-intensity projection when the model takes it."""
        return 2 if self.loop_reference else 1
