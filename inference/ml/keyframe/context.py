"""Loop context: what the frames of one cine run say about each other.

A run is one injection into one coronary artery, so every frame of it has the same laterality,
the frames before the contrast arrives included, where the network sees only the catheter. And
contrast fills and washes out over several frames, so a frame's category is seldom unlike its
neighbours'. ``with_loop_context`` turns the network's per-frame probabilities into:

- the laterality of the whole loop: the mean over its frames of P(LCA) = P(LCA_better) +
  P(LCA_bad) + P(LCA_other), the same for every frame of the loop;
- the category of each frame from itself and its neighbours: the mean of P(better), P(bad) and
  P(other) (both sides summed) over the frames at most ``window`` indices away in the loop;
- their product as the six-class probabilities (rows still sum to 1);
- with ``peak_ratio`` r (0 < r <= 1): a frame whose P(better) is below r times the loop's best
  frame's is not the run's fully filled view (filling is still under way, or washing out), so
  its P(better) is scaled by (its ratio / r) and the rest moves to "bad".

It uses no labels, only which loop each frame belongs to and its index, so it applies to new
exams exactly as to a test split. With ``window=0`` and single-frame loops it changes nothing
but the laterality/category coupling of each frame.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from inference.ml.keyframe.config import LCA_CLASSES, RCA_CLASSES

#: Frames on each side whose category probabilities are averaged with a frame's own.
DEFAULT_WINDOW = 2
#: Columns of the category probabilities (better, bad, other: the order within each side).
CATEGORY_COLUMNS = {"better": 0, "bad": 1, "other": 2}


def with_loop_context(
    probabilities: np.ndarray,
    loops: Sequence[Hashable],
    indices: Sequence[int],
    window: int = DEFAULT_WINDOW,
    peak_ratio: float | None = None,
) -> np.ndarray:
    """Six-class probabilities (N x 6, in the order of ``CLASS_NAMES``) with loop context."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(LCA_CLASSES) + len(RCA_CLASSES):
        raise ValueError(f"expected N x 6 probabilities, got {probabilities.shape}")
    if not len(loops) == len(indices) == len(probabilities):
        raise ValueError("one loop and one index per frame")
    if window < 0:
        raise ValueError("window must be 0 or more")
    if peak_ratio is not None and not 0 < peak_ratio <= 1:
        raise ValueError("peak_ratio must be in (0, 1]")
    lca = probabilities[:, list(LCA_CLASSES)].sum(axis=1)
    categories = probabilities[:, list(LCA_CLASSES)] + probabilities[:, list(RCA_CLASSES)]
    rows_of: dict[Hashable, list[int]] = defaultdict(list)
    for row, loop in enumerate(loops):
        rows_of[loop].append(row)
    loop_lca = np.empty(len(probabilities))
    smoothed = np.empty_like(categories)
    frame_indices = np.asarray(indices)
    for rows in rows_of.values():
        members = np.asarray(rows)
        loop_lca[members] = lca[members].mean()
        ordered = members[np.argsort(frame_indices[members], kind="stable")]
        positions = frame_indices[ordered]
        for row, position in zip(ordered, positions, strict=True):
            near = ordered[np.abs(positions - position) <= window]
            smoothed[row] = categories[near].mean(axis=0)
    smoothed /= smoothed.sum(axis=1, keepdims=True)
    if peak_ratio is not None:
        better, bad = CATEGORY_COLUMNS["better"], CATEGORY_COLUMNS["bad"]
        for rows in rows_of.values():
            members = np.asarray(rows)
            peak = smoothed[members, better].max()
            if peak <= 0:
                continue
            keep = np.minimum(1.0, smoothed[members, better] / (peak_ratio * peak))
            moved = smoothed[members, better] * (1.0 - keep)
            smoothed[members, better] -= moved
            smoothed[members, bad] += moved
    result = np.empty_like(probabilities)
    result[:, list(LCA_CLASSES)] = loop_lca[:, None] * smoothed
    result[:, list(RCA_CLASSES)] = (1.0 - loop_lca)[:, None] * smoothed
    return result.astype(np.float32)
