"""Test metrics of the key-frame CNN and their plots.

Everything returned is plain JSON (floats, ints, lists, ``None`` where a metric is undefined,
e.g. the AUROC of a test split holding one class only), because it is stored on the model
version and rendered on its page.

Definitions:
- laterality: LCA vs RCA, the predicted side being the one with the larger summed probability
  of its three classes; ``laterality_f1`` is the macro F1 over the two sides.
- key frame: "better" of either side vs the rest, scored by P(LCA_better) + P(RCA_better) and
  predicted positive at a score of ``keyframe_threshold`` or more (0.5 unless the trainer chose
  one on the validation split, ``best_keyframe_threshold``); precision, recall, F1 and AUROC.
- six classes: accuracy, macro F1 over the classes present in the test labels, per-class
  precision/recall/F1/support, the 6 x 6 confusion matrix (rows: truth, columns: prediction).
- calibration: expected calibration error over 15 equal-width bins of the top-class
  probability, and the bins themselves for the reliability diagram.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from inference.ml.keyframe.config import BETTER_CLASSES, CLASS_NAMES, LCA_CLASSES, RCA_CLASSES

ECE_BINS = 15
KEYFRAME_THRESHOLD = 0.5
#: The range a key-frame threshold tuned on validation frames is kept in: a few validation exams
#: must not push it to an extreme that a new exam's frames would all fall on one side of.
TUNED_THRESHOLD_RANGE = (0.05, 0.95)


def _float(value: float | np.floating) -> float:
    return round(float(value), 6)


def laterality_of(probabilities: np.ndarray) -> np.ndarray:
    """0 for LCA, 1 for RCA: the side with the larger summed probability."""
    lca = probabilities[:, list(LCA_CLASSES)].sum(axis=1)
    rca = probabilities[:, list(RCA_CLASSES)].sum(axis=1)
    return (rca > lca).astype(np.int64)


def keyframe_score(probabilities: np.ndarray) -> np.ndarray:
    return probabilities[:, list(BETTER_CLASSES)].sum(axis=1)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-width bins over (0, 1]; a confidence falls in the bin whose upper edge it reaches."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append(
            {
                "lower": _float(edges[b]),
                "upper": _float(edges[b + 1]),
                "count": count,
                "confidence": _float(confidence[members].mean()) if count else None,
                "accuracy": _float(correct[members].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float | None:
    total = len(confidence)
    if total == 0:
        return None
    error = 0.0
    for row in reliability_bins(confidence, correct, bins):
        if row["count"]:
            error += row["count"] / total * abs(row["accuracy"] - row["confidence"])
    return _float(error)


def _binary_f1(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    return _float(precision), _float(recall), _float(f1)


def _auroc(truth: np.ndarray, score: np.ndarray) -> float | None:
    if len(np.unique(truth)) < 2:
        return None  # undefined with one class
    return _float(roc_auc_score(truth, score))


def best_keyframe_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The key-frame score threshold with the best key-frame F1 on these frames (the validation
    split), within ``TUNED_THRESHOLD_RANGE``; ``KEYFRAME_THRESHOLD`` when they hold no key frame
    or no other frame. Candidates are the midpoints between neighbouring distinct scores, so the
    threshold falls between frames rather than on one; among equal F1s the one nearest 0.5 wins.
    """
    truth = np.isin(np.asarray(labels, dtype=np.int64), BETTER_CLASSES)
    if truth.all() or not truth.any():
        return KEYFRAME_THRESHOLD
    score = keyframe_score(np.asarray(probabilities, dtype=np.float64).reshape(-1, len(CLASS_NAMES)))
    low, high = TUNED_THRESHOLD_RANGE
    distinct = np.unique(score)
    candidates = np.concatenate([[KEYFRAME_THRESHOLD], (distinct[:-1] + distinct[1:]) / 2])
    candidates = np.unique(np.clip(candidates, low, high))
    # F1 for every candidate at once: sort the scores once and count from the top.
    order = np.argsort(-score, kind="stable")
    ranked_score, ranked_truth = score[order], truth[order]
    true_positives = np.concatenate([[0], np.cumsum(ranked_truth)])
    predicted = np.searchsorted(-ranked_score, -candidates, side="right")  # frames with score >= t
    f1 = 2 * true_positives[predicted] / (predicted + truth.sum())
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return _float(candidates[best[np.argmin(np.abs(candidates[best] - KEYFRAME_THRESHOLD))]])


def compute_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, keyframe_threshold: float = KEYFRAME_THRESHOLD
) -> dict[str, Any]:
    """Test metrics from true class indices (N,) and predicted probabilities (N, 6); a frame is
    a key frame at a key-frame score of ``keyframe_threshold`` or more."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(CLASS_NAMES))
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels but {len(probabilities)} predictions")
    n = len(labels)
    counts = {name: int((labels == index).sum()) for index, name in enumerate(CLASS_NAMES)}
    if n == 0:
        return {
            "n_frames": 0,
            "class_counts": counts,
            "accuracy": None,
            "macro_f1": None,
            "laterality_f1": None,
            "laterality_accuracy": None,
            "keyframe_precision": None,
            "keyframe_recall": None,
            "keyframe_f1": None,
            "keyframe_auroc": None,
            "keyframe_threshold": _float(keyframe_threshold),
            "ece": None,
            "confusion_matrix": [[0] * len(CLASS_NAMES) for _ in CLASS_NAMES],
            "per_class": {},
            "reliability": reliability_bins(np.zeros(0), np.zeros(0)),
        }

    predicted = probabilities.argmax(axis=1)
    present = sorted(set(labels.tolist()))
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(CLASS_NAMES))), zero_division=0
    )
    per_class = {
        name: {
            "precision": _float(precision[index]),
            "recall": _float(recall[index]),
            "f1": _float(f1[index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(CLASS_NAMES)
    }

    side_truth = (labels >= len(LCA_CLASSES)).astype(np.int64)
    side_predicted = laterality_of(probabilities)
    sides_present = sorted(set(side_truth.tolist()))

    key_truth = np.isin(labels, BETTER_CLASSES).astype(np.int64)
    key_score = keyframe_score(probabilities)
    key_precision, key_recall, key_f1 = _binary_f1(key_truth, (key_score >= keyframe_threshold).astype(np.int64))

    confidence = probabilities.max(axis=1)
    correct = (predicted == labels).astype(np.float64)
    return {
        "n_frames": n,
        "class_counts": counts,
        "accuracy": _float(correct.mean()),
        "macro_f1": _float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)),
        "laterality_f1": _float(
            f1_score(side_truth, side_predicted, labels=sides_present, average="macro", zero_division=0)
        ),
        "laterality_accuracy": _float((side_truth == side_predicted).mean()),
        "laterality_auroc": _auroc(side_truth, probabilities[:, list(RCA_CLASSES)].sum(axis=1)),
        "keyframe_precision": key_precision,
        "keyframe_recall": key_recall,
        "keyframe_f1": key_f1,
        "keyframe_auroc": _auroc(key_truth, key_score),
        "keyframe_threshold": _float(keyframe_threshold),
        "ece": expected_calibration_error(confidence, correct),
        "confusion_matrix": confusion.tolist(),
        "per_class": per_class,
        "reliability": reliability_bins(confidence, correct),
    }


# --- plots ----------------------------------------------------------------------------------


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def plot_confusion_matrix(metrics: dict[str, Any]) -> bytes:
    matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    figure = Figure(figsize=(5.6, 4.8))
    axes = figure.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    image = axes.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(
            column, row, str(value), ha="center", va="center", color="white" if shade[row, column] > 0.6 else "black"
        )
    axes.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    axes.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test; colour: row fraction)")
    figure.colorbar(image, ax=axes, fraction=0.046)
    return _png(figure)


def plot_reliability(metrics: dict[str, Any]) -> bytes:
    bins = metrics["reliability"]
    figure = Figure(figsize=(4.8, 4.8))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    filled = [row for row in bins if row["count"]]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 1 / ECE_BINS
    axes.bar(
        [row["lower"] for row in filled],
        [row["accuracy"] for row in filled],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    axes.plot(
        [row["confidence"] for row in filled], [row["accuracy"] for row in filled], "o", color="C3", label="bin mean"
    )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-class probability)")
    axes.set_ylabel("accuracy")
    ece = metrics.get("ece")
    axes.set_title(f"Reliability (ECE {ece:.3f})" if ece is not None else "Reliability")
    axes.legend(loc="upper left")
    return _png(figure)


def plot_curves(history: list[dict[str, Any]]) -> bytes:
    figure = Figure(figsize=(9.6, 4.0))
    loss_axes, metric_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]

    def series(key: str) -> list[float]:
        return [row[key] if row.get(key) is not None else np.nan for row in history]

    loss_axes.plot(epochs, series("train_loss"), marker="o", label="train")
    loss_axes.plot(epochs, series("val_loss"), marker="o", label="validation")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("cross-entropy")
    loss_axes.set_title("Loss")
    loss_axes.legend()
    for key, label in (
        ("val_laterality_f1", "laterality F1"),
        ("val_keyframe_f1", "key-frame F1"),
        ("val_macro_f1", "six-class macro F1"),
    ):
        metric_axes.plot(epochs, series(key), marker="o", label=label)
    metric_axes.set_ylim(0, 1.02)
    metric_axes.set_xlabel("epoch")
    metric_axes.set_title("Validation metrics")
    metric_axes.legend(loc="lower right")
    return _png(figure)


def draw_plots(metrics: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG images for the model version's page."""
    return {
        "confusion_matrix": plot_confusion_matrix(metrics),
        "reliability": plot_reliability(metrics),
        "curves": plot_curves(history),
    }
