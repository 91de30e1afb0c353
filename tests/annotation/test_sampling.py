"""Frame sampling at local extrema of the intensity mean and variance."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from annotation.sampling import local_extrema, sample_frames_at_intensity_extrema


def test_extrema_of_a_contrast_run() -> None:
    # Mean dips as contrast fills the vessels, then recovers; variance peaks at the plateau.
    frames = np.arange(60)
    means = 120 - 30 * np.exp(-(((frames - 30) / 8.0) ** 2))
    variances = 900 + 400 * np.exp(-(((frames - 28) / 6.0) ** 2))

    chosen = sample_frames_at_intensity_extrema(means, variances, min_gap=5)

    assert 30 in chosen or 28 in chosen  # the plateau is sampled
    assert all(b - a >= 5 for a, b in itertools.pairwise(chosen))


def test_plateaus_count_once_and_constant_signal_has_none() -> None:
    assert local_extrema([1, 2, 2, 2, 1]) == [0, 2, 4]  # the ends count: the signal leaves them
    assert local_extrema([5, 5, 5]) == []
    assert local_extrema([3, 1, 2]) == [0, 1, 2]


def test_constant_loop_still_offers_one_frame() -> None:
    assert sample_frames_at_intensity_extrema([7.0] * 11, [1.0] * 11) == [5]


@given(
    st.lists(st.floats(min_value=0, max_value=255, allow_nan=False), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=12),
)
def test_sampled_frames_are_valid_and_apart(values: list[float], gap: int) -> None:
    variances = [v * 0.5 + (i % 3) for i, v in enumerate(values)]

    chosen = sample_frames_at_intensity_extrema(values, variances, min_gap=gap)

    assert chosen == sorted(set(chosen))
    assert all(0 <= i < len(values) for i in chosen)
    assert all(b - a >= gap for a, b in itertools.pairwise(chosen))
    assert len(chosen) >= 1
