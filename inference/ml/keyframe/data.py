"""Frames in, tensors out: the one preprocessing path that training and prediction share.

A frame arrives as the bytes of its 8-bit display image (the WebP derivative ingest wrote, or a
PNG) and becomes a ``1 x S x S`` uint8 tensor: decoded to grey, resized straight to the model's
square input with an antialiased filter. A model that reads the loop reference gets a second
channel: the loop's minimum-intensity projection, decoded the same way. Augmentation works on
those uint8 tensors; the float conversion and normalisation happen last, on whole batches
(``normalise``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from inference.ml.keyframe.config import KeyframeModelConfig

# A 512 x 512 frame decodes and resizes in a few milliseconds; PIL releases the GIL while it
# does, so a few threads keep up with the model without a process pool.
DECODE_THREADS = min(4, os.cpu_count() or 1)


#: Smallest standard deviations (0-1 grey scale) a frame is divided by when normalised by its own.
IMAGE_STD_FLOOR = 0.02
HIGHPASS_STD_FLOOR = 0.005


@dataclass(frozen=True)
class ImageItem:
    """One frame for training or evaluation."""

    key: str  # the frame's UUID
    label: int  # index in CLASS_NAMES; -1 when unknown
    load: Callable[[], bytes]  # the frame's display image (WebP or PNG bytes)
    loop: str = ""  # the cine loop it belongs to, and its number there (for loop context)
    index: int = 0
    # The loop's minimum-intensity projection (annotation.derivatives.minimum_projection), for
    # a model that reads each frame beside it (KeyframeModelConfig.loop_reference).
    reference: Callable[[], bytes] | None = None


def decode_gray(data: bytes, image_size: int) -> torch.Tensor:
    """The display image as a ``1 x image_size x image_size`` uint8 tensor.

    Non-square images are resized to the square as they are (angiography frames are square).
    PIL's bilinear filter widens its support when it shrinks an image, so the resize is
    antialiased: thin vessels fade rather than alias away.
    """
    with Image.open(io.BytesIO(data)) as image:
        gray = image if image.mode == "L" else image.convert("L")
        if gray.size != (image_size, image_size):
            gray = gray.resize((image_size, image_size), Image.Resampling.BILINEAR)
        array = np.array(gray, dtype=np.uint8)
    return torch.from_numpy(array).unsqueeze(0)


def decode_many(blobs: Iterable[bytes], image_size: int, *, executor: ThreadPoolExecutor | None = None) -> torch.Tensor:
    """Decode images into one ``N x 1 x S x S`` uint8 tensor (in parallel when given an executor)."""
    blobs = list(blobs)
    out = torch.empty((len(blobs), 1, image_size, image_size), dtype=torch.uint8)
    if executor is None:
        decoded: Iterable[torch.Tensor] = (decode_gray(blob, image_size) for blob in blobs)
    else:
        decoded = executor.map(lambda blob: decode_gray(blob, image_size), blobs)
    for index, image in enumerate(decoded):
        out[index] = image
    return out


def decode_items(
    items: Sequence[ImageItem],
    image_size: int,
    *,
    with_reference: bool = False,
    threads: int = DECODE_THREADS,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """Load and decode every item once (training caches the result for all its epochs):
    ``N x 1 x S x S`` uint8, or ``N x 2 x S x S`` ``with_reference`` (each frame and its loop's
    minimum projection, decoded once per loop)."""
    out = torch.empty((len(items), 2 if with_reference else 1, image_size, image_size), dtype=torch.uint8)
    references: dict[str, torch.Tensor] = {}
    if with_reference:
        missing = [item.key for item in items if item.reference is None]
        if missing:
            raise ValueError(f"{len(missing)} frames have no loop reference (first: {missing[0]})")
        first_of_loop = {item.loop or item.key: item for item in items}
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode") as executor:
            decoded = executor.map(lambda item: decode_gray(item.reference(), image_size), first_of_loop.values())
            references = dict(zip(first_of_loop, decoded, strict=True))

    def load_and_decode(item: ImageItem) -> torch.Tensor:
        image = decode_gray(item.load(), image_size)
        if with_reference:
            return torch.cat([image, references[item.loop or item.key]])
        return image

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode") as executor:
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            for offset, image in enumerate(executor.map(load_and_decode, part)):
                out[start + offset] = image
            if on_progress is not None:
                on_progress(start + len(part))
    return out


def normalise(images: torch.Tensor, config: KeyframeModelConfig) -> torch.Tensor:
    """uint8 ``N x C x S x S`` -> the float input of the network (on the images' device), each
    channel (the frame; its loop reference) normalised on its own.

    ``highpass`` (the default): each frame minus its local mean over a window of 1/16 of the
    image, divided by the result's standard deviation. What is left is what the classes are
    about (vessels, their filling, the catheter) without the chest, the collimator's shading
    and the display window, which differ from exam to exam: trained on the raw grey levels, a
    network learns to recognise each training exam's background and does not generalise to new
    exams (measured with ``benchmarks/phantom_keyframe_experiment.py``). ``image``: each frame
    standardised by its mean and standard deviation. ``fixed``: ImageNet's grey mean and std.
    """
    scaled = images.to(torch.float32).div_(255.0)
    if config.normalisation == "highpass":
        window = max(3, (images.shape[-1] // 16) | 1)
        # The local mean as two 1-D box filters (the window is a square; near the border it
        # averages the pixels inside the image only, which separates the same way).
        rows = F.avg_pool2d(scaled, (window, 1), stride=1, padding=(window // 2, 0), count_include_pad=False)
        background = F.avg_pool2d(rows, (1, window), stride=1, padding=(0, window // 2), count_include_pad=False)
        scaled = scaled.sub_(background)
        # The floor keeps a blank frame's noise from being blown up to unit variance.
        scaled = scaled.div_(scaled.std(dim=(2, 3), keepdim=True).clamp_min_(HIGHPASS_STD_FLOOR))
    elif config.normalisation == "image":
        mean = scaled.mean(dim=(2, 3), keepdim=True)
        scaled = scaled.sub_(mean).div_(scaled.std(dim=(2, 3), keepdim=True).clamp_min_(IMAGE_STD_FLOOR))
    else:
        scaled = scaled.sub_(config.mean).div_(config.std)
    if scaled.shape[1] == 1 and config.in_chans != 1:
        scaled = scaled.expand(-1, config.in_chans, -1, -1)
    return scaled
