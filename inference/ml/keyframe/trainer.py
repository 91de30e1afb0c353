"""Training the key-frame CNN: AdamW, cross-entropy, TrivialAugmentWide, early stopping.

One call trains, checkpoints, evaluates and returns everything the registry stores. The frames
are decoded once into memory as uint8 tensors; each epoch shuffles them with a seeded
generator (and keeps ``epoch_fraction`` of them), augments each frame (TrivialAugmentWide on the
grey uint8 image) and accumulates gradients over micro-batches until a whole batch makes one
optimiser step. After every epoch the validation split scores the weights
(``selection_metric``); the best epoch's weights are kept, and with ``tune_keyframe_threshold``
the key-frame threshold with the best validation key-frame F1 is stored in the model's config
and used for the test metrics.

Checkpoints: after every epoch ``checkpoint_dir/last.pt`` is replaced atomically with the model,
optimiser and gradient-scaler states, the best validation state so far, the early-stopping
counters, the history and every random-number state. A run that finds ``last.pt`` continues
after its epoch and, because the random states come back too, ends with the same weights as a
run that was never interrupted. The checkpoint records a fingerprint of the data and of the
parameters that shape training; resuming with different ones is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from inference.ml.keyframe.config import CLASS_NAMES, KeyframeModelConfig
from inference.ml.keyframe.context import with_loop_context
from inference.ml.keyframe.data import ImageItem, decode_items, normalise
from inference.ml.keyframe.evaluate import KEYFRAME_THRESHOLD, best_keyframe_threshold, compute_metrics, draw_plots
from inference.ml.keyframe.model import build_model, cpu_state, load_init_weights, weights_to_safetensors
from inference.ml.keyframe.predictor import forward_images
from inference.ml.keyframe.runtime import configure_threads, resolve_device, rng_state, seed_everything, set_rng_state
from inference.parameters import TrainKeyframeParameters

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1
#: Peak ratios (context.with_loop_context) tried on the validation split when the threshold is
#: tuned with loop context; None: none.
PEAK_RATIO_CANDIDATES: tuple[float | None, ...] = (None, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The test metrics kept for the network's own per-frame predictions when loop context is on.
PER_FRAME_METRICS = ("laterality_f1", "keyframe_f1", "keyframe_auroc", "macro_f1", "accuracy", "ece")
EVAL_BATCH_SIZE = 64
# Parts of the reporter's 0-1 progress: decoding the frames, the epochs, the test evaluation.
DECODE_SPAN = (0.0, 0.05)
EPOCHS_SPAN = (0.05, 0.95)


class TrainingReporter(Protocol):
    """Where training reports to (``inference.training`` adapts a job's context to it)."""

    def progress(self, fraction: float, step: str | None = None, metrics: dict | None = None) -> None: ...

    def log(self, line: str) -> None: ...

    def check_cancelled(self) -> None:
        """Raises to stop training (the last checkpoint stays for a resume)."""


class CheckpointMismatch(ValueError):
    """``last.pt`` was written for other data or other training parameters."""


@dataclass
class TrainingResult:
    model_config: KeyframeModelConfig
    weights: bytes  # safetensors of the best-validation state
    metrics: dict[str, Any]  # test metrics (evaluate.compute_metrics) + epochs_run, best_epoch, ...
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    plots: dict[str, bytes] = field(default_factory=dict)  # PNG: confusion_matrix, reliability, curves
    # The kept weights' class probabilities (N x 6) on the "validation" and "test" frames, in order.
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Split:
    name: str
    keys: list[str]
    images: torch.Tensor  # uint8 N x 1 x S x S
    labels: torch.Tensor  # int64 N
    loops: list[str]  # each frame's loop and its number there, for loop context
    indices: list[int]

    def in_context(self, probabilities: np.ndarray, window: int | None, peak_ratio: float | None = None) -> np.ndarray:
        """The probabilities with loop context (``window``, ``peak_ratio``), or as they are
        (``window`` None)."""
        if window is None or not len(probabilities):
            return probabilities
        return with_loop_context(probabilities, self.loops, self.indices, window, peak_ratio)


#: Parameters added after the first checkpoint format: part of the fingerprint only when they
#: differ from their defaults, so that checkpoints written before them still resume.
_LATER_SHAPING = (
    "selection_metric",
    "label_smoothing",
    "epoch_fraction",
    "augmentation",
    "loop_context_window",
    "loop_reference",
)


def _fingerprint(params: TrainKeyframeParameters, train: list[ImageItem], validation: list[ImageItem]) -> str:
    shaping = params.model_dump(include={"arch", "image_size", "batch_size", "lr", "weight_decay", "seed", "augment"})
    defaults = TrainKeyframeParameters.model_fields
    shaping.update(
        {name: getattr(params, name) for name in _LATER_SHAPING if getattr(params, name) != defaults[name].default}
    )
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode())
    for split in (train, validation):
        digest.update(b"|")
        for item in split:
            digest.update(f"{item.key}:{item.label};".encode())
    return digest.hexdigest()


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``:
    a crash leaves either the old checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _amp_settings(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, whether a gradient scaler is needed): bf16 where the GPU has it, fp16
    with loss scaling otherwise; full precision on the CPU."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def _usable(items: list[ImageItem], name: str, reporter: TrainingReporter) -> list[ImageItem]:
    known = [item for item in items if 0 <= item.label < len(CLASS_NAMES)]
    if len(known) != len(items):
        reporter.log(f"{name}: {len(items) - len(known)} frames without a known class left out")
    return known


def _decode_splits(
    splits: dict[str, list[ImageItem]], config: KeyframeModelConfig, reporter: TrainingReporter
) -> dict[str, _Split]:
    total = sum(len(items) for items in splits.values()) or 1
    done = 0
    decoded: dict[str, _Split] = {}
    for name, items in splits.items():

        def report(count: int, offset: int = done, split: str = name) -> None:
            reporter.check_cancelled()
            fraction = DECODE_SPAN[0] + (DECODE_SPAN[1] - DECODE_SPAN[0]) * (offset + count) / total
            reporter.progress(fraction, f"decoding {split} frames: {count}/{len(splits[split])}")

        images = decode_items(items, config.image_size, with_reference=config.loop_reference, on_progress=report)
        labels = torch.tensor([item.label for item in items], dtype=torch.int64)
        loops, indices = [item.loop or item.key for item in items], [item.index for item in items]
        decoded[name] = _Split(name, [item.key for item in items], images, labels, loops, indices)
        done += len(items)
    return decoded


def _evaluate(
    model: nn.Module,
    split: _Split,
    config: KeyframeModelConfig,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> tuple[float | None, np.ndarray]:
    """(mean cross-entropy, probabilities) over a split, in eval mode."""
    if len(split.labels) == 0:
        return None, np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        logits = forward_images(
            model, split.images, config, device=device, batch_size=EVAL_BATCH_SIZE, autocast_dtype=autocast_dtype
        )
    finally:
        model.train(was_training)
    loss = float(F.cross_entropy(logits, split.labels).item())
    return loss, torch.softmax(logits, dim=1).numpy().astype(np.float32)


def _warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor per optimiser step: a linear warm-up over the first 5% of the
    steps (at most 500), then a cosine decay towards zero at the last epoch. AdamW on a
    ConvNeXt trained from scratch diverges or stalls with the full rate from the first step
    (LayerScale starts its blocks near zero), and the decay settles the weights that early
    stopping picks from."""
    warmup = max(1, min(500, total_steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _selection_score(params: TrainKeyframeParameters, loss: float, metrics: dict[str, Any]) -> tuple[float, float]:
    """What the epochs are compared by, larger is better: (the selection metric, minus the loss
    as the tie-break). A metric the split cannot define counts as 0."""
    if params.selection_metric == "val_loss":
        return -loss, 0.0
    value = metrics.get(params.selection_metric.removeprefix("val_"))
    return float(value) if value is not None else 0.0, -loss


def _augmenter(params: TrainKeyframeParameters) -> v2.Transform | None:
    """The per-frame augmentation of the grey uint8 frames. No flips: a mirrored left coronary
    tree looks like a right one to the laterality classifier.

    ``trivial_augment_wide``: one random operation per frame out of TrivialAugmentWide's.
    ``mild``: a small rotation, shift and zoom, then a little brightness and contrast; nothing
    that blurs or sharpens (motion blur makes a frame "bad"), inverts or posterises.
    """
    if not params.augment:
        return None
    if params.augmentation == "mild":
        return v2.Compose(
            [
                v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                v2.ColorJitter(brightness=0.2, contrast=0.2),
            ]
        )
    return v2.TrivialAugmentWide()


def _new_state(
    params: TrainKeyframeParameters, config: KeyframeModelConfig, init_weights: Path | None, reporter: TrainingReporter
) -> tuple[nn.Module, torch.Generator]:
    seed_everything(params.seed)
    model = build_model(config)
    if init_weights is not None:
        for line in load_init_weights(model, init_weights, config):
            reporter.log(line)
    shuffle = torch.Generator().manual_seed(params.seed)
    return model, shuffle


def train_keyframe_model(
    params: TrainKeyframeParameters,
    train: list[ImageItem],
    validation: list[ImageItem],
    test: list[ImageItem],
    *,
    checkpoint_dir: Path,
    reporter: TrainingReporter,
    init_weights: Path | None = None,
    threads: int | None = None,
) -> TrainingResult:
    """Train on ``train``, select the epoch by ``validation`` (``params.selection_metric``),
    measure on ``test``.

    Resumes from ``checkpoint_dir/last.pt`` when it exists (raising ``CheckpointMismatch`` when
    it belongs to other data or parameters). ``init_weights`` (a local safetensors or torch
    file) initialises a fresh run only. ``threads``: CPU threads (default: the physical cores,
    or ``CAGVLM_TORCH_THREADS``).
    """
    config = KeyframeModelConfig(
        arch=params.arch,
        image_size=params.image_size,
        loop_context_window=params.loop_context_window,
        loop_reference=params.loop_reference,
        in_chans=2 if params.loop_reference else 1,
    )
    window = params.loop_context_window
    device = resolve_device(params.device)
    if device.type == "cpu":
        configure_threads(threads)
    autocast_dtype, needs_scaler = _amp_settings(device)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME

    train = _usable(train, "train", reporter)
    validation = _usable(validation, "validation", reporter)
    test = _usable(test, "test", reporter)
    if not train:
        raise ValueError("no training frames with a known class")
    fingerprint = _fingerprint(params, train, validation)

    model, shuffle = _new_state(params, config, init_weights if not checkpoint_path.exists() else None, reporter)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    epoch_frames = max(1, round(len(train) * params.epoch_fraction))
    steps_per_epoch = math.ceil(epoch_frames / params.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps_per_epoch * params.epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_loss = math.inf
    best_score = (-math.inf, -math.inf)
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale_epochs = 0
    finished = False
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("fingerprint") != fingerprint:
            raise CheckpointMismatch(
                f"{checkpoint_path} was written for other frames or training parameters; "
                "start a new training job instead of resuming this one"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        shuffle.set_state(saved["shuffle"])
        set_rng_state(saved["rng"])
        history = list(saved["history"])
        start_epoch = int(saved["epoch"])
        best_loss, best_epoch, stale_epochs = float(saved["best_loss"]), int(saved["best_epoch"]), int(saved["stale"])
        best_score = tuple(saved.get("best_score", (-best_loss, 0.0)))
        best_state = saved["best_state"]
        finished = bool(saved["finished"])
        reporter.log(f"Resuming after epoch {start_epoch} from {checkpoint_path}")

    splits = _decode_splits({"train": train, "validation": validation, "test": test}, config, reporter)
    train_split, validation_split, test_split = splits["train"], splits["validation"], splits["test"]
    reporter.log(
        f"Training {config.arch} at {config.image_size} px on {device}"
        + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else f" (autocast {autocast_dtype})")
        + f": {len(train)} train, {len(validation)} validation, {len(test)} test frames"
    )

    augmenter = _augmenter(params)
    micro = params.micro_batch_size or params.batch_size
    n_train = len(train_split.labels)
    epoch = start_epoch
    model.train()
    while not finished and epoch < params.epochs:
        epoch += 1
        started = time.monotonic()
        order = torch.randperm(n_train, generator=shuffle)[:epoch_frames]
        loss_sum = 0.0
        seen = 0
        for step in range(steps_per_epoch):
            batch = order[step * params.batch_size : (step + 1) * params.batch_size]
            optimizer.zero_grad(set_to_none=True)
            for micro_start in range(0, len(batch), micro):
                reporter.check_cancelled()
                indices = batch[micro_start : micro_start + micro]
                images = train_split.images[indices]
                if augmenter is not None:
                    # Channels as a batch of one-channel images: a transform draws its
                    # parameters once per call, so a frame and its loop reference move together.
                    images = torch.stack([augmenter(image.unsqueeze(1)).squeeze(1) for image in images])
                inputs = _to_inputs(images, config, device)
                targets = train_split.labels[indices].to(device, non_blocking=True)
                with torch.autocast(
                    device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
                ):
                    logits = model(inputs)
                    # Summed here and divided by the whole batch: micro-batches of any size
                    # add up to the gradient of the batch mean.
                    loss = F.cross_entropy(
                        logits.float(), targets, reduction="sum", label_smoothing=params.label_smoothing
                    )
                scaler.scale(loss / len(batch)).backward()
                loss_sum += float(loss.detach())
                seen += len(indices)
                fraction = ((epoch - 1) + seen / epoch_frames) / params.epochs
                reporter.progress(
                    EPOCHS_SPAN[0] + (EPOCHS_SPAN[1] - EPOCHS_SPAN[0]) * fraction,
                    f"epoch {epoch}/{params.epochs}: step {step + 1}/{steps_per_epoch}, "
                    f"train loss {loss_sum / seen:.3f}",
                )
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

        reporter.check_cancelled()
        train_loss = loss_sum / max(seen, 1)
        val_loss, val_probabilities = _evaluate(model, validation_split, config, device, autocast_dtype)
        val_metrics = compute_metrics(
            validation_split.labels.numpy(), validation_split.in_context(val_probabilities, window)
        )
        # Without a validation split the training loss stands in (and says so in the history).
        selection_loss = val_loss if val_loss is not None else train_loss
        score = _selection_score(params, selection_loss, val_metrics if val_loss is not None else {})
        improved = score > best_score
        if improved:
            best_loss, best_score, best_epoch, stale_epochs = selection_loss, score, epoch, 0
            best_state = cpu_state(model)
        else:
            stale_epochs += 1
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "val_loss": round(val_loss, 6) if val_loss is not None else None,
            "val_accuracy": val_metrics["accuracy"],
            "val_macro_f1": val_metrics["macro_f1"],
            "val_laterality_f1": val_metrics["laterality_f1"],
            "val_keyframe_f1": val_metrics["keyframe_f1"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.monotonic() - started, 2),
            "best": improved,
        }
        history.append(row)
        finished = stale_epochs >= params.patience or epoch >= params.epochs
        _atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": fingerprint,
                "epoch": epoch,
                "model": cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "shuffle": shuffle.get_state(),
                "rng": rng_state(),
                "history": history,
                "best_loss": best_loss,
                "best_score": list(best_score),
                "best_epoch": best_epoch,
                "best_state": best_state,
                "stale": stale_epochs,
                "finished": finished,
            },
            checkpoint_path,
        )
        reporter.log(_epoch_line(row, params.epochs))
        reporter.progress(
            EPOCHS_SPAN[0] + (EPOCHS_SPAN[1] - EPOCHS_SPAN[0]) * epoch / params.epochs,
            _epoch_line(row, params.epochs),
            {key: value for key, value in row.items() if key != "best"},
        )
        if stale_epochs >= params.patience:
            reporter.log(f"Early stopping: no better {params.selection_metric} for {stale_epochs} epochs")

    assert best_state is not None  # at least one epoch ran (epochs >= 1) or came from the checkpoint
    model.load_state_dict(best_state)
    reporter.progress(EPOCHS_SPAN[1], f"testing the epoch-{best_epoch} weights on {len(test)} frames")
    _, raw_val_probabilities = _evaluate(model, validation_split, config, device, autocast_dtype)
    val_probabilities = validation_split.in_context(raw_val_probabilities, window)
    if params.tune_keyframe_threshold and len(validation_split.labels):
        val_labels = validation_split.labels.numpy()
        # With loop context, the peak ratio is chosen with the threshold: each candidate's best
        # threshold, then the pair with the best validation key-frame F1 (ties: the earlier).
        best_f1 = -1.0
        for ratio in PEAK_RATIO_CANDIDATES if window is not None else (None,):
            candidate = validation_split.in_context(raw_val_probabilities, window, ratio)
            threshold = best_keyframe_threshold(val_labels, candidate)
            f1 = compute_metrics(val_labels, candidate, keyframe_threshold=threshold)["keyframe_f1"] or 0.0
            if f1 > best_f1 + 1e-9:
                best_f1, val_probabilities = f1, candidate
                config = config.model_copy(update={"keyframe_threshold": threshold, "keyframe_peak_ratio": ratio})
        reporter.log(
            f"Key-frame threshold {config.keyframe_threshold:.3f}"
            + (f", peak ratio {config.keyframe_peak_ratio}" if config.keyframe_peak_ratio is not None else "")
            + " (best key-frame F1 on the validation frames)"
        )
    _, frame_probabilities = _evaluate(model, test_split, config, device, autocast_dtype)
    test_probabilities = test_split.in_context(frame_probabilities, window, config.keyframe_peak_ratio)
    metrics = compute_metrics(
        test_split.labels.numpy(), test_probabilities, keyframe_threshold=config.keyframe_threshold
    )
    if config.keyframe_threshold != KEYFRAME_THRESHOLD:
        at_default = compute_metrics(test_split.labels.numpy(), test_probabilities)
        metrics["keyframe_f1_at_default_threshold"] = at_default["keyframe_f1"]
    if window is not None:
        # The network's own per-frame figures, for comparison with those in loop context.
        per_frame = compute_metrics(
            test_split.labels.numpy(), frame_probabilities, keyframe_threshold=config.keyframe_threshold
        )
        metrics["per_frame"] = {name: per_frame[name] for name in PER_FRAME_METRICS}
        metrics["loop_context_window"] = window
        metrics["keyframe_peak_ratio"] = config.keyframe_peak_ratio
    metrics.update(
        {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "best_val_loss": round(best_loss, 6) if math.isfinite(best_loss) else None,
            "early_stopped": len(history) < params.epochs,
            "train_frames": len(train),
            "validation_frames": len(validation),
            "test_frames": len(test),
            "train_seconds": round(sum(row["seconds"] for row in history), 1),
        }
    )
    plots = draw_plots(metrics, history)
    reporter.log(
        "Test: "
        + ", ".join(
            f"{name} {metrics[name]:.3f}"
            for name in ("laterality_f1", "keyframe_f1", "keyframe_auroc", "macro_f1", "accuracy", "ece")
            if metrics.get(name) is not None
        )
    )
    reporter.progress(1.0, f"trained: best epoch {best_epoch} of {len(history)}")
    return TrainingResult(
        model_config=config,
        weights=weights_to_safetensors(best_state, config),
        metrics=metrics,
        history=history,
        plots=plots,
        probabilities={"validation": val_probabilities, "test": test_probabilities},
    )


def _to_inputs(images: torch.Tensor, config: KeyframeModelConfig, device: torch.device) -> torch.Tensor:
    return normalise(images.to(device, non_blocking=True), config).contiguous(memory_format=torch.channels_last)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f}"]
    if row["val_loss"] is not None:
        parts.append(f"val loss {row['val_loss']:.3f}")
        parts.extend(
            f"{label} {row[key]:.3f}"
            for key, label in (
                ("val_laterality_f1", "laterality F1"),
                ("val_keyframe_f1", "key-frame F1"),
                ("val_macro_f1", "macro F1"),
            )
            if row[key] is not None
        )
    return ", ".join(parts) + f" ({row['seconds']:.0f} s)" + (" *" if row["best"] else "")
