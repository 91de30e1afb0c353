"""Dataset snapshots: the frames and final labels one training run sees, split and frozen.

A snapshot is built from the final labels (every method: agreement, adjudication, import,
phantom). Frames are split into train, validation and test by group: by exam (the default)
or by cine loop, so that no loop (and by default no exam) has frames in two splits; frames
of one loop are nearly the same picture, and a model tested on a loop it trained on would
be measured on what it memorised. Within that constraint the split is stratified by class
and deterministic for a seed (``split_frames``).

The manifest (every frame's UUID, loop, exam, class, split and the content hash of its
image) is canonical JSON written content-addressed to storage; its SHA-256 is kept on the
DatasetSnapshot row and checked every time the manifest is read (``load_manifest``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal, NamedTuple
from uuid import UUID

from django.core.files.storage import default_storage
from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field

from annotation.derivatives import StoredFiles
from annotation.models import SIX_CLASSES, FinalLabel, class_name
from inference.models import DatasetSnapshot, ModelKind

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
SplitBy = Literal["exam", "loop"]

MANIFEST_FORMAT = 1
_HEX = frozenset("0123456789abcdef")


class SnapshotError(Exception):
    """A snapshot that cannot be built; the message is meant for the admin."""


class SnapshotIntegrityError(SnapshotError):
    """The stored manifest (or a frame image it names) is not the one that was recorded."""


# --- the split --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitItem:
    """One labelled frame as the split sees it: its key and the groups it belongs to."""

    key: str
    loop: str
    exam: str
    label: str


def split_frames(
    items: Sequence[SplitItem],
    *,
    seed: int,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_by: SplitBy = "exam",
) -> dict[str, Split]:
    """Assign every item to train, validation or test; return ``{key: split}``.

    Whole groups (exams, or loops with ``split_by="loop"``) go to one split. Groups are
    visited in an order shuffled by ``seed`` (from a sorted start, so the input order does not
    matter) and each goes to the split that is furthest below its target share, measured per
    class and weighted by the group's own classes: the splits come out stratified by class as
    far as the groups allow. The first three groups seed the three splits, and no split is
    left empty, so three groups are the minimum (``SnapshotError`` below that).
    """
    if not 0 < validation_fraction < 1 or not 0 < test_fraction < 1 or validation_fraction + test_fraction >= 1:
        raise ValueError("validation and test fractions must be positive and leave a share for training")
    if split_by not in ("exam", "loop"):
        raise ValueError(f"split_by must be 'exam' or 'loop', not {split_by!r}")

    exam_of_loop: dict[str, str] = {}
    groups: dict[str, list[SplitItem]] = defaultdict(list)
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise ValueError(f"frame {item.key} appears twice")
        seen.add(item.key)
        if exam_of_loop.setdefault(item.loop, item.exam) != item.exam:
            raise ValueError(f"loop {item.loop} belongs to two exams")
        groups[item.exam if split_by == "exam" else item.loop].append(item)

    if len(groups) < len(SPLITS):
        unit = "exams" if split_by == "exam" else "cine loops"
        found = f"{len(groups)} {unit if len(groups) != 1 else unit[:-1]}"
        raise SnapshotError(
            f"The labelled frames come from {found}; a train, validation and test split "
            f"needs at least {len(SPLITS)}. Label frames of more {unit}"
            + (" or split by loop." if split_by == "exam" else ".")
        )

    fractions = {
        "train": 1 - validation_fraction - test_fraction,
        "validation": validation_fraction,
        "test": test_fraction,
    }
    class_totals = Counter(item.label for item in items)
    targets = {split: {label: fractions[split] * total for label, total in class_totals.items()} for split in SPLITS}
    assigned: dict[Split, Counter[str]] = {split: Counter() for split in SPLITS}
    group_split: dict[str, Split] = {}

    order = sorted(groups)
    random.Random(seed).shuffle(order)
    for group in order:
        counts = Counter(item.label for item in groups[group])
        size = sum(counts.values())

        def shortfall(split: Split, counts: Counter[str] = counts, size: int = size) -> float:
            # How far below its target share the split is, for the classes this group brings.
            return sum(
                n / size * (targets[split][label] - assigned[split][label]) / targets[split][label]
                for label, n in counts.items()
            )

        # Ties (all splits equally short, e.g. at the start) go to the earlier split in SPLITS.
        best = max(SPLITS, key=lambda split: (shortfall(split), -SPLITS.index(split)))
        group_split[group] = best
        assigned[best].update(counts)

    # A split left without any group (possible with few, very unequal groups) takes the
    # smallest group of the split holding the most groups.
    for split in SPLITS:
        if split in group_split.values():
            continue
        members: dict[Split, list[str]] = defaultdict(list)
        for group, other in group_split.items():
            members[other].append(group)
        donor = max(members, key=lambda s: (len(members[s]), -SPLITS.index(s)))
        moved = min(members[donor], key=lambda g: (len(groups[g]), g))
        group_split[moved] = split

    return {item.key: group_split[group] for group, members_ in groups.items() for item in members_}


# --- the manifest -----------------------------------------------------------------------------


class SplitParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    split_by: SplitBy = "exam"


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: UUID
    loop: UUID
    exam: UUID
    index: int = Field(ge=0, description="The frame's number within its loop.")
    label: str = Field(description="One of the six classes, e.g. LCA_better.")
    split: Split
    image: str = Field(description="Storage path of the frame's WebP derivative.")
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label_method: str = Field(description="How the final label was reached (agreement, adjudication, import, phantom).")


class SnapshotManifest(BaseModel):
    """What a snapshot holds. Carries no snapshot UUID or name: the same frames, labels and
    split give the same bytes and the same hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = MANIFEST_FORMAT
    kind: str = ModelKind.KEYFRAME_CNN.value
    seed: int
    parameters: SplitParameters
    classes: list[str] = Field(default_factory=lambda: list(SIX_CLASSES))
    entries: list[ManifestEntry]

    def split(self, name: Split) -> list[ManifestEntry]:
        return [entry for entry in self.entries if entry.split == name]

    def canonical_bytes(self) -> bytes:
        """The manifest as stored: sorted keys, no whitespace, so the hash is reproducible."""
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def image_sha256(path: str) -> str:
    """The SHA-256 of a stored frame image. Frame images are content-addressed (the name is
    the hash), so this reads the file only for a name that is not a hash."""
    stem = PurePosixPath(path).stem
    if len(stem) == 64 and set(stem) <= _HEX:
        return stem
    digest = hashlib.sha256()
    with default_storage.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_frame_image(entry: ManifestEntry) -> bytes:
    """The frame's image bytes, checked against the hash the manifest recorded."""
    with default_storage.open(entry.image, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != entry.image_sha256:
        raise SnapshotIntegrityError(f"The image of frame {entry.frame} is not the one the snapshot recorded.")
    return data


def count_by_split_and_class(entries: Iterable[ManifestEntry]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {split: dict.fromkeys(SIX_CLASSES, 0) for split in SPLITS}
    for entry in entries:
        counts[entry.split][entry.label] += 1
    return counts


class _LabelledFrame(NamedTuple):
    """A frame with a final label, as ``build_manifest`` reads it."""

    frame: UUID
    frame_index: int
    image: str
    loop: UUID
    exam: UUID
    laterality: str
    category: str
    method: str
    loop_uid: str  # the loop's remapped SOP Instance UID
    study_uid: str  # its exam's remapped Study Instance UID

    @property
    def label(self) -> str:
        return class_name(self.laterality, self.category)


def build_manifest(
    *,
    seed: int,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_by: SplitBy = "exam",
) -> SnapshotManifest:
    """The manifest of the current final labels, split (no storage or rows written)."""
    parameters = SplitParameters(
        validation_fraction=validation_fraction, test_fraction=test_fraction, split_by=split_by
    )
    rows = [
        _LabelledFrame(*values)
        for values in FinalLabel.objects.exclude(frame__image="")
        .order_by()
        .values_list(
            "frame__uuid",
            "frame__index",
            "frame__image",
            "frame__loop__uuid",
            "frame__loop__exam__uuid",
            "laterality",
            "category",
            "method",
            "frame__loop__sop_instance_uid",
            "frame__loop__exam__study_instance_uid",
        )
    ]
    if not rows:
        raise SnapshotError(
            "There are no final labels yet: label frames (or import labels) before building a snapshot."
        )
    # Loops and exams enter the split, and frames the manifest's order, by their (remapped) DICOM
    # UIDs rather than their database UUIDs: the UIDs follow from the files and the deployment's
    # key, so the same images ingested into another database split the same way for a seed, and
    # training, which draws its batches by position, sees them in the same order.
    items = [SplitItem(key=str(row.frame), loop=row.loop_uid, exam=row.study_uid, label=row.label) for row in rows]
    splits = split_frames(
        items,
        seed=seed,
        validation_fraction=parameters.validation_fraction,
        test_fraction=parameters.test_fraction,
        split_by=parameters.split_by,
    )
    rows.sort(key=lambda row: (SPLITS.index(splits[str(row.frame)]), row.loop_uid, row.frame_index))
    entries = [
        ManifestEntry(
            frame=row.frame,
            loop=row.loop,
            exam=row.exam,
            index=row.frame_index,
            label=row.label,
            split=splits[str(row.frame)],
            image=row.image,
            image_sha256=image_sha256(row.image),
            label_method=row.method,
        )
        for row in rows
    ]
    return SnapshotManifest(seed=seed, parameters=parameters, entries=entries)


def build_snapshot(
    *,
    name: str,
    seed: int,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_by: SplitBy = "exam",
    user: User | None = None,
) -> DatasetSnapshot:
    """Freeze the current final labels into a DatasetSnapshot (manifest in storage)."""
    manifest = build_manifest(
        seed=seed, validation_fraction=validation_fraction, test_fraction=test_fraction, split_by=split_by
    )
    data = manifest.canonical_bytes()
    digest = hashlib.sha256(data).hexdigest()
    files = StoredFiles()
    path = files.save_bytes("datasets", "json", data)
    try:
        with transaction.atomic():
            return DatasetSnapshot.objects.create(
                kind=manifest.kind,
                name=name,
                seed=seed,
                parameters=manifest.parameters.model_dump(mode="json"),
                manifest_path=path,
                manifest_sha256=digest,
                frame_count=len(manifest.entries),
                counts=count_by_split_and_class(manifest.entries),
                created_by=user,
            )
    except BaseException:
        # Only a file this call created; an identical manifest already stored stays.
        files.remove_created()
        raise


def load_manifest(snapshot: DatasetSnapshot) -> SnapshotManifest:
    """Read the snapshot's manifest from storage, refusing one whose hash does not match."""
    try:
        with default_storage.open(snapshot.manifest_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SnapshotIntegrityError(f"The manifest of snapshot {snapshot.uuid} is missing from storage.") from None
    if hashlib.sha256(data).hexdigest() != snapshot.manifest_sha256:
        raise SnapshotIntegrityError(
            f"The manifest of snapshot {snapshot.uuid} has changed since it was written (SHA-256 mismatch)."
        )
    return SnapshotManifest.model_validate_json(data)


def group_counts(manifest: SnapshotManifest) -> dict[str, dict[str, int]]:
    """Exams and loops per split, for the snapshot page."""
    exams: dict[str, set[UUID]] = {split: set() for split in SPLITS}
    loops: dict[str, set[UUID]] = {split: set() for split in SPLITS}
    for entry in manifest.entries:
        exams[entry.split].add(entry.exam)
        loops[entry.split].add(entry.loop)
    return {split: {"exams": len(exams[split]), "loops": len(loops[split])} for split in SPLITS}
