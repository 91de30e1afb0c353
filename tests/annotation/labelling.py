"""Helpers shared by the labelling tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from annotation.labels import submit_label
from annotation.models import FrameLabel
from tests.conftest import make_user

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotation.models import CineLoop, Frame

from cagvlm_site.roles import Role


def label(frame: Frame, physician: User, six_class: str = "LCA_better", **options: object) -> FrameLabel:
    """``physician`` labels ``frame`` with a class written as ``LCA_better``."""
    laterality, category = six_class.split("_")
    return submit_label(frame, physician, laterality, category, **options)


def sampled_frames(loop: CineLoop) -> list[Frame]:
    return list(loop.frames.filter(is_sampled=True).order_by("index"))


def physicians(count: int, prefix: str = "dr_reader") -> list[User]:
    return [make_user(f"{prefix}_{number}", Role.PHYSICIAN) for number in range(count)]
