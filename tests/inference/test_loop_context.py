"""Loop context: laterality from the whole loop, category from a frame and its neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from inference.ml.keyframe.config import CLASS_NAMES
from inference.ml.keyframe.context import with_loop_context


def row(**probabilities: float) -> list[float]:
    return [probabilities.get(name, 0.0) for name in CLASS_NAMES]


def test_a_loop_has_one_laterality_its_frames_vote_for() -> None:
    # A run into the RCA: two frames before contrast look left to the network, three filled
    # frames are clearly right.
    frames = np.array(
        [
            row(LCA_other=0.7, RCA_other=0.3),
            row(LCA_other=0.6, RCA_other=0.4),
            row(RCA_better=0.9, LCA_better=0.1),
            row(RCA_better=0.95, LCA_better=0.05),
            row(RCA_bad=0.9, LCA_bad=0.1),
        ]
    )

    result = with_loop_context(frames, ["run"] * 5, range(5), window=0)

    p_lca = result[:, :3].sum(axis=1)
    assert np.allclose(p_lca, frames[:, :3].sum(axis=1).mean())  # (0.7+0.6+0.1+0.05+0.1)/5 = 0.31
    assert (result.argmax(axis=1) >= 3).all()  # every frame right, the early ones included
    assert np.allclose(result.sum(axis=1), 1.0)
    # window 0: each frame keeps its own category probabilities.
    categories = result[:, :3] + result[:, 3:]
    assert np.allclose(categories, frames[:, :3] + frames[:, 3:], atol=1e-6)


def test_categories_are_averaged_over_neighbours_of_the_same_loop_only() -> None:
    better, other = row(LCA_better=1.0), row(LCA_other=1.0)
    # Loop a: better, other (a one-frame dip), better; loop b: other. Listed out of order.
    frames = np.array([other, better, better, other])
    loops = ["a", "a", "a", "b"]
    indices = [1, 0, 2, 0]

    result = with_loop_context(frames, loops, indices, window=1)

    categories = result[:, :3] + result[:, 3:]
    # The dip (index 1) sees itself and both neighbours: 2/3 better.
    assert categories[0] == pytest.approx([2 / 3, 0, 1 / 3], abs=1e-6)
    # The ends see themselves and the dip: 1/2 better.
    assert categories[1] == pytest.approx([0.5, 0, 0.5], abs=1e-6)
    assert categories[2] == pytest.approx([0.5, 0, 0.5], abs=1e-6)
    # Loop b is on its own: its frame does not borrow from loop a.
    assert categories[3] == pytest.approx([0, 0, 1], abs=1e-6)


def test_neighbours_are_by_frame_number_when_only_some_frames_are_there() -> None:
    better, bad = row(RCA_better=1.0), row(RCA_bad=1.0)
    # Sampled frames 0, 10 and 11: frame 0 is too far from the others for a window of 2.
    result = with_loop_context(np.array([better, bad, bad]), ["a"] * 3, [0, 10, 11], window=2)
    assert result[0] == pytest.approx(row(RCA_better=1.0), abs=1e-6)
    assert result[1] == pytest.approx(row(RCA_bad=1.0), abs=1e-6)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="N x 6"):
        with_loop_context(np.ones((2, 5)) / 5, ["a", "a"], [0, 1])
    with pytest.raises(ValueError, match="one loop and one index"):
        with_loop_context(np.ones((2, 6)) / 6, ["a"], [0, 1])
    with pytest.raises(ValueError, match="window"):
        with_loop_context(np.ones((2, 6)) / 6, ["a", "a"], [0, 1], window=-1)


def test_a_peak_ratio_moves_better_below_the_loops_best_frame_to_bad() -> None:
    # A run filling (0.3), full (0.9), washing out (0.6); the other classes are "bad".
    frames = np.array([row(LCA_better=p, LCA_bad=1 - p) for p in (0.3, 0.9, 0.6)])

    result = with_loop_context(frames, ["run"] * 3, [0, 1, 2], window=0, peak_ratio=0.8)

    better = result[:, 0]
    # 0.9 is the peak and keeps its value; 0.6 is 0.67 of it (under 0.8): scaled by 0.67 / 0.8.
    assert better == pytest.approx([0.3 * (0.3 / 0.9) / 0.8, 0.9, 0.6 * (0.6 / 0.9) / 0.8], abs=1e-6)
    assert np.allclose(result.sum(axis=1), 1.0)
    assert result[:, 1] == pytest.approx(1 - better, abs=1e-6)
    # No ratio: the frames keep their own.
    assert with_loop_context(frames, ["run"] * 3, [0, 1, 2], window=0)[:, 0] == pytest.approx([0.3, 0.9, 0.6])
    with pytest.raises(ValueError, match="peak_ratio"):
        with_loop_context(frames, ["run"] * 3, [0, 1, 2], peak_ratio=1.5)
