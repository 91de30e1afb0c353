"""Which frames of a loop physicians are asked to label.

The CAG-VLM study sampled frames at the local extrema of the per-frame pixel-intensity mean
and variance, at least five frames apart: contrast arriving darkens the image (the mean dips)
and draws vessel edges (the variance rises), so the extrema fall on the moments of a run that
differ most, and a physician labels about 27 frames per exam instead of hundreds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def local_extrema(values: Sequence[float] | np.ndarray) -> list[int]:
    """Indices of strict local minima and maxima, plateaus counted once (at their middle).

    The first and last frames count as extrema when the signal moves away from them.
    """
    signal = np.asarray(values, dtype=np.float64)
    n = len(signal)
    if n == 0:
        return []
    if n == 1:
        return [0]
    # Collapse runs of equal values so that a flat top is one extremum.
    change = np.flatnonzero(np.diff(signal) != 0) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n]))
    levels = signal[starts]
    extrema = []
    for k in range(len(levels)):
        left = levels[k - 1] if k > 0 else None
        right = levels[k + 1] if k + 1 < len(levels) else None
        if left is None and right is None:
            continue  # a constant signal has no extrema
        neighbours = [v for v in (left, right) if v is not None]
        if all(levels[k] > v for v in neighbours) or all(levels[k] < v for v in neighbours):
            extrema.append(int((starts[k] + ends[k] - 1) // 2))
    return extrema


def sample_frames_at_intensity_extrema(
    means: Sequence[float], variances: Sequence[float], min_gap: int = 5
) -> list[int]:
    """Frame indices to annotate: extrema of the mean and of the variance, ``min_gap`` apart.

    Candidates are taken greedily by prominence (distance from the loop's median, in units of
    the signal's spread), so that where two extrema crowd each other the more pronounced one
    stays. A loop with no extrema at all (a constant run) still gets its middle frame.
    """
    if len(means) != len(variances):
        raise ValueError("means and variances must have one value per frame")
    if min_gap < 1:
        raise ValueError("min_gap must be at least 1")
    n = len(means)
    if n == 0:
        return []
    scores: dict[int, float] = {}
    for signal in (np.asarray(means, dtype=np.float64), np.asarray(variances, dtype=np.float64)):
        spread = float(np.std(signal)) or 1.0
        median = float(np.median(signal))
        for index in local_extrema(signal):
            prominence = abs(signal[index] - median) / spread
            scores[index] = max(scores.get(index, 0.0), prominence)
    if not scores:
        return [n // 2]
    chosen: list[int] = []
    for index in sorted(scores, key=lambda i: (-scores[i], i)):
        if all(abs(index - other) >= min_gap for other in chosen):
            chosen.append(index)
    return sorted(chosen)
