"""Files the product stores: content-addressed, so every URL is immutable.

A file's name is the SHA-256 of its bytes (``frames/ab/cd/abcd....webp``). The same bytes
are stored once; a name never points at other bytes, so browsers may cache frames forever.
Ingest passes a ``StoredFiles`` ledger so that a file that fails half-way can remove exactly
the files it added, and none that another loop already shares.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from PIL import Image

HASH_CHUNK = 1024 * 1024


def content_name(prefix: str, digest: str, extension: str) -> str:
    return f"{prefix}/{digest[:2]}/{digest[2:4]}/{digest}.{extension}"


def encode_webp(display: np.ndarray) -> bytes:
    """The 8-bit display image as WebP, with the deployment's quality setting."""
    options = settings.CAGVLM_INGEST
    buffer = io.BytesIO()
    image = Image.fromarray(display)
    if options["WEBP_LOSSLESS"]:
        image.save(buffer, format="WEBP", lossless=True)
    else:
        image.save(buffer, format="WEBP", quality=options["WEBP_QUALITY"])
    return buffer.getvalue()


def read_stored(name: str, storage: Storage | None = None) -> bytes:
    """The bytes of a stored file (a frame's WebP, a loop's projection)."""
    with (storage or default_storage).open(name, "rb") as handle:
        return handle.read()


def minimum_projection(frames: Iterable[bytes]) -> bytes:
    """The minimum-intensity projection of a loop's display frames (WebP or PNG bytes), as a
    lossless PNG: every pixel at its darkest over the frames. Iodine darkens what it fills, so
    this is the run's coronary tree as filled as the contrast ever gets it, over every phase of
    the heartbeat (the key-frame CNN reads each frame beside it)."""
    darkest: np.ndarray | None = None
    for data in frames:
        with Image.open(io.BytesIO(data)) as image:
            gray = np.asarray(image if image.mode == "L" else image.convert("L"))
        if darkest is None:
            darkest = gray.copy()
        elif gray.shape != darkest.shape:
            raise ValueError(f"frames of one loop differ in size: {gray.shape} and {darkest.shape}")
        else:
            np.minimum(darkest, gray, out=darkest)
    if darkest is None:
        raise ValueError("a loop without frames has no minimum projection")
    buffer = io.BytesIO()
    Image.fromarray(darkest).save(buffer, format="PNG")
    return buffer.getvalue()


def sha256_of_file(fp: BinaryIO) -> str:
    digest = hashlib.sha256()
    fp.seek(0)
    while chunk := fp.read(HASH_CHUNK):
        digest.update(chunk)
    fp.seek(0)
    return digest.hexdigest()


class StoredFiles:
    """Saves content-addressed files and remembers which ones this unit of work created."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or default_storage
        self.created: list[str] = []
        # Frames are saved from several threads; identical frames (a loop's blank frames
        # before exposure) must not race each other into two copies.
        self._lock = threading.Lock()

    def save_bytes(self, prefix: str, extension: str, data: bytes) -> str:
        name = content_name(prefix, hashlib.sha256(data).hexdigest(), extension)
        with self._lock:
            if self.storage.exists(name):
                return name
            saved = self.storage.save(name, ContentFile(data))
            self.created.append(saved)
        return saved

    def save_file(self, prefix: str, extension: str, fp: BinaryIO) -> tuple[str, str]:
        digest = sha256_of_file(fp)
        name = content_name(prefix, digest, extension)
        if not self.storage.exists(name):
            name = self.storage.save(name, File(fp))
            self.created.append(name)
        return name, digest

    def remove_created(self) -> None:
        for name in self.created:
            self.storage.delete(name)
        self.created.clear()


@contextmanager
def all_or_nothing(storage: Storage | None = None) -> Iterator[StoredFiles]:
    """Yield a ledger; on any exception remove every file saved through it, then re-raise."""
    ledger = StoredFiles(storage)
    try:
        yield ledger
    except BaseException:
        ledger.remove_created()
        raise
