"""Loop references: a loop's minimum-intensity projection, made once from all its frames and
kept on the loop."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from annotation.derivatives import minimum_projection
from annotation.models import CineLoop
from inference import references
from inference.references import loop_reference_names, loop_references_by_uuid
from tests.factories import CineLoopFactory, give_frames_real_images

pytestmark = pytest.mark.django_db


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def test_the_minimum_projection_is_each_pixels_darkest_value_losslessly():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16, 16)) for _ in range(4)]
    projection = minimum_projection(png(frame, "WEBP") for frame in frames)
    with Image.open(io.BytesIO(projection)) as image:
        assert image.format == "PNG"
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), np.minimum.reduce(frames))


def test_a_projection_needs_frames_of_one_size():
    with pytest.raises(ValueError, match="without frames"):
        minimum_projection([])
    with pytest.raises(ValueError, match="differ in size"):
        minimum_projection([png(np.zeros((8, 8))), png(np.zeros((8, 9)))])


def test_a_loops_projection_is_made_once_and_kept(monkeypatch):
    first, second = CineLoopFactory.create_batch(2, frame_count=4)
    for loop in (first, second):
        give_frames_real_images(loop)
    made: list[int] = []
    make = references.make_minimum_projection
    monkeypatch.setattr(references, "make_minimum_projection", lambda loop_id: made.append(loop_id) or make(loop_id))

    names = loop_reference_names([first.pk, second.pk])
    again = loop_reference_names([first.pk, second.pk, first.pk])

    assert names == again
    assert sorted(made) == sorted([first.pk, second.pk])  # the second call made none
    first.refresh_from_db()
    assert first.minimum_projection.name == names[first.pk]
    expected = minimum_projection(frame.image.read() for frame in first.frames.order_by("index"))
    assert loop_references_by_uuid([first.uuid])[str(first.uuid)] == expected


def test_loops_of_identical_frames_share_one_stored_projection():
    first, second = CineLoopFactory.create_batch(2, frame_count=3)
    for loop in (first, second):
        give_frames_real_images(loop)
    names = loop_reference_names([first.pk, second.pk])
    assert names[first.pk] == names[second.pk]  # content-addressed
    assert CineLoop.objects.filter(minimum_projection=names[first.pk]).count() == 2
