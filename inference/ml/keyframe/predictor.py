"""Class probabilities for frames: the pre-labelling path and its naive baseline.

The product path (``KeyframePredictor``) batches frames, runs under ``torch.inference_mode``
in channels-last memory format (on the CPU, oneDNN's depthwise 7x7 convolutions of ConvNeXt are
several times faster in NHWC than in NCHW), with the thread count set for the machine, and
decodes the next batch on a thread while the network runs on the current one.
``predict_naively`` is the per-frame eager loop that ``benchmarks/prelabel.py`` measures it
against: same decoding, same weights, one frame at a time.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import batched

import numpy as np
import torch
from torch import nn

from inference.ml.keyframe.config import KeyframeModelConfig
from inference.ml.keyframe.data import decode_gray, decode_many, normalise
from inference.ml.keyframe.model import model_from_safetensors
from inference.ml.keyframe.runtime import configure_threads, resolve_device

#: Decoded loop references a predictor keeps (streams work on neighbouring frames, so a few loops).
REFERENCE_CACHE_SIZE = 8


@torch.inference_mode()
def forward_images(
    model: nn.Module,
    images: torch.Tensor,
    config: KeyframeModelConfig,
    *,
    device: torch.device,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits (float32, on the CPU) for uint8 ``N x 1 x S x S`` images, in batches.

    The caller puts ``model`` in eval mode (training calls this for validation and restores
    train mode itself).
    """
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        inputs = normalise(batch, config).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(inputs)
        outputs.append(logits.float().cpu())
    if not outputs:
        return torch.empty((0, config.num_classes), dtype=torch.float32)
    return torch.cat(outputs)


class KeyframePredictor:
    """A loaded key-frame CNN that turns frame images into six class probabilities."""

    #: Frames per forward pass on the CPU, whatever the batch asked for: a ConvNeXt's early
    #: activations for a few frames stay in the CPU's caches; for 64 frames they do not, and
    #: throughput drops (measured with ``benchmarks/prelabel.py``).
    CPU_FORWARD_BATCH = 8

    def __init__(
        self,
        model: nn.Module,
        config: KeyframeModelConfig,
        *,
        device: str = "auto",
        threads: int | None = None,
        forward_batch: int | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.threads = configure_threads(threads) if self.device.type == "cpu" else None
        self.forward_batch = forward_batch or (self.CPU_FORWARD_BATCH if self.device.type == "cpu" else None)
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        # Decoded loop references by their bytes (a loop's frames share one object, whose hash
        # Python computes once): a few loops at a time are in flight.
        self._reference_cache: dict[bytes, torch.Tensor] = {}
        self._reference_lock = threading.Lock()

    @classmethod
    def from_safetensors(
        cls,
        weights: bytes,
        config: KeyframeModelConfig,
        *,
        device: str = "auto",
        threads: int | None = None,
        forward_batch: int | None = None,
    ) -> KeyframePredictor:
        model = model_from_safetensors(weights, config)
        return cls(model, config, device=device, threads=threads, forward_batch=forward_batch)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        config: KeyframeModelConfig,
        *,
        device: str = "auto",
        threads: int | None = None,
        forward_batch: int | None = None,
    ) -> KeyframePredictor:
        """A predictor over a copy of ``model`` (the predictor changes its memory format and
        device; the caller's model stays as it was)."""
        return cls(copy.deepcopy(model), config, device=device, threads=threads, forward_batch=forward_batch)

    def predict_images(self, images: torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
        """Probabilities for already decoded uint8 ``N x 1 x S x S`` images (one stream)."""
        if self.threads is not None:
            configure_threads(self.threads)
        return self._forward(images, batch_size)

    def _forward(self, images: torch.Tensor, batch_size: int) -> np.ndarray:
        if self.forward_batch is not None:
            batch_size = min(batch_size, self.forward_batch)
        logits = forward_images(self.model, images, self.config, device=self.device, batch_size=batch_size)
        return torch.softmax(logits, dim=1).numpy().astype(np.float32, copy=False)

    def predict(
        self, items: Iterable[bytes], *, batch_size: int = 64, references: Iterable[bytes] | None = None
    ) -> np.ndarray:
        """Probabilities (float32, N x 6, rows summing to 1) for frame images as WebP/PNG bytes,
        in the order given. A model that reads the loop reference needs each frame's loop's
        minimum projection in ``references`` (one per frame; the frames of a loop share one
        bytes object, decoded once)."""
        pairs = zip(items, _references_for(self.config, references), strict=self.config.loop_reference)
        results = (
            self._predict_cpu(pairs, batch_size) if self.device.type == "cpu" else self._predict_gpu(pairs, batch_size)
        )
        if not results:
            return np.zeros((0, self.config.num_classes), dtype=np.float32)
        return np.concatenate(results)

    def _decode(self, pairs: tuple[tuple[bytes, bytes | None], ...]) -> torch.Tensor:
        """A batch of (frame, loop reference or None) as uint8 ``N x C x S x S``."""
        size = self.config.image_size
        frames = decode_many((frame for frame, _ in pairs), size)
        if not self.config.loop_reference:
            return frames
        references = []
        for _, reference in pairs:
            assert reference is not None  # _references_for insists on them for such a model
            with self._reference_lock:
                decoded = self._reference_cache.get(reference)
            if decoded is None:
                decoded = decode_gray(reference, size)
                with self._reference_lock:
                    if len(self._reference_cache) >= REFERENCE_CACHE_SIZE:
                        self._reference_cache.clear()
                    self._reference_cache[reference] = decoded
            references.append(decoded)
        return torch.cat([frames, torch.stack(references)], dim=1)

    def _predict_cpu(self, items: Iterable[tuple[bytes, bytes | None]], batch_size: int) -> list[np.ndarray]:
        """One stream per thread, each decoding its own small batch and running the network on
        it with a single intra-op thread. Small per-frame operations split over several threads
        spend much of their time at OpenMP barriers (and stall whenever another process holds
        one of the cores); independent streams never wait for each other. Measured on 2 cores:
        about 1.3x the throughput of one stream with two threads."""
        streams = self.threads or 1
        chunk = min(batch_size, self.forward_batch or batch_size)
        previous = torch.get_num_threads()

        def stream(frames: tuple[tuple[bytes, bytes | None], ...]) -> np.ndarray:
            configure_threads(1)
            return self._forward(self._decode(frames), chunk)

        results: list[np.ndarray] = []
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="prelabel") as pool:
                # A bounded window of batches in flight keeps a lazy iterable lazy.
                pending: deque[Future[np.ndarray]] = deque()
                for frames in batched(items, chunk):
                    pending.append(pool.submit(stream, frames))
                    if len(pending) >= 2 * streams:
                        results.append(pending.popleft().result())
                results.extend(future.result() for future in pending)
        finally:
            torch.set_num_threads(previous)
        return results

    def _predict_gpu(self, items: Iterable[tuple[bytes, bytes | None]], batch_size: int) -> list[np.ndarray]:
        """Large batches on the device while a CPU thread decodes the next one (PIL releases
        the GIL), so decoding hides behind the network."""
        results: list[np.ndarray] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prelabel-decode") as decoder:
            pending: Future[torch.Tensor] | None = None
            for frames in batched(items, batch_size):
                following = decoder.submit(self._decode, frames)
                if pending is not None:
                    results.append(self._forward(pending.result(), batch_size))
                pending = following
            if pending is not None:
                results.append(self._forward(pending.result(), batch_size))
        return results


def predict_naively(
    model: nn.Module, items: Iterable[bytes], config: KeyframeModelConfig, references: Iterable[bytes] | None = None
) -> np.ndarray:
    """The baseline the benchmark measures against: one frame at a time, eager, under
    ``torch.no_grad`` only, in the model's own (default) memory format and thread setting (a
    model that reads the loop reference gets each loop's decoded once, as the product does)."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    decoded: dict[bytes, torch.Tensor] = {}  # each loop's reference, decoded once
    with torch.no_grad():
        for data, reference in zip(items, _references_for(config, references), strict=config.loop_reference):
            image = decode_gray(data, config.image_size)
            if reference is not None:
                if reference not in decoded:
                    decoded[reference] = decode_gray(reference, config.image_size)
                image = torch.cat([image, decoded[reference]])
            logits = model(normalise(image.unsqueeze(0).to(device), config))
            rows.append(torch.softmax(logits.float(), dim=1)[0].cpu().numpy())
    if not rows:
        return np.zeros((0, config.num_classes), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


def _references_for(config: KeyframeModelConfig, references: Iterable[bytes] | None) -> Iterable[bytes | None]:
    """What to pair each frame with: its loop reference when the model reads one (required
    then), else None for ever."""
    if config.loop_reference:
        if references is None:
            raise ValueError("this model reads each frame beside its loop's minimum projection: give the references")
        return references
    return itertools.repeat(None)
