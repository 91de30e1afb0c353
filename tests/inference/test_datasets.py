"""Dataset snapshots: the split keeps loops (and exams) whole, is stratified and deterministic;
the manifest is immutable and its hash is checked."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation.models import SIX_CLASSES, CineLoop, Exam
from inference.datasets import (
    SPLITS,
    SnapshotError,
    SnapshotIntegrityError,
    SplitItem,
    build_manifest,
    build_snapshot,
    load_manifest,
    read_frame_image,
    split_frames,
)
from tests.factories import CineLoopFactory, ExamFactory, label_loop_frames

# --- the split as a pure function -------------------------------------------------------------


@st.composite
def labelled_frames(draw: st.DrawFn) -> list[SplitItem]:
    """Frames of loops of exams, each with a class; at least three exams."""
    exams = draw(st.integers(min_value=3, max_value=12))
    items = []
    for exam in range(exams):
        for loop in range(draw(st.integers(min_value=1, max_value=4))):
            # Loops usually show one artery; a few classes per loop, unevenly.
            classes = draw(st.lists(st.sampled_from(SIX_CLASSES), min_size=1, max_size=8))
            for index, name in enumerate(classes):
                items.append(
                    SplitItem(key=f"f{exam}-{loop}-{index}", loop=f"l{exam}-{loop}", exam=f"e{exam}", label=name)
                )
    return items


def groups_per_split(items: list[SplitItem], splits: dict[str, str], attribute: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for item in items:
        seen.setdefault(getattr(item, attribute), set()).add(splits[item.key])
    return seen


@settings(max_examples=150, deadline=None)
@given(
    items=labelled_frames(),
    seed=st.integers(min_value=0, max_value=2**31),
    split_by=st.sampled_from(["exam", "loop"]),
    validation=st.floats(min_value=0.05, max_value=0.4),
    test=st.floats(min_value=0.05, max_value=0.4),
    shuffle_seed=st.randoms(use_true_random=False),
)
def test_split_keeps_groups_whole_and_is_deterministic(items, seed, split_by, validation, test, shuffle_seed) -> None:
    splits = split_frames(items, seed=seed, split_by=split_by, validation_fraction=validation, test_fraction=test)

    # Every frame once, in one of the three splits; every split has frames.
    assert set(splits) == {item.key for item in items}
    assert set(splits.values()) == set(SPLITS)
    # No loop in two splits, ever; no exam in two splits when splitting by exam.
    assert all(len(s) == 1 for s in groups_per_split(items, splits, "loop").values())
    if split_by == "exam":
        assert all(len(s) == 1 for s in groups_per_split(items, splits, "exam").values())
    # The same seed gives the same split, whatever order the frames come in.
    shuffled = list(items)
    shuffle_seed.shuffle(shuffled)
    assert split_frames(shuffled, seed=seed, split_by=split_by, validation_fraction=validation, test_fraction=test) == (
        splits
    )


def test_split_is_stratified_when_groups_allow() -> None:
    """40 exams, each one class: every class reaches every split in about its share."""
    items = [
        SplitItem(key=f"f{e}-{i}", loop=f"l{e}", exam=f"e{e}", label=SIX_CLASSES[e % 6])
        for e in range(60)
        for i in range(10)
    ]
    splits = split_frames(items, seed=3, validation_fraction=0.2, test_fraction=0.2)
    per_split = {split: Counter(item.label for item in items if splits[item.key] == split) for split in SPLITS}
    for name in SIX_CLASSES:
        # 10 exams of each class: 6 / 2 / 2 is the stratified split.
        assert per_split["train"][name] == 60, per_split
        assert per_split["validation"][name] == 20, per_split
        assert per_split["test"][name] == 20, per_split


def test_different_seeds_give_different_splits() -> None:
    items = [SplitItem(key=f"f{e}", loop=f"l{e}", exam=f"e{e}", label=SIX_CLASSES[e % 6]) for e in range(60)]
    assert split_frames(items, seed=1) != split_frames(items, seed=2)


def test_too_few_groups_are_refused() -> None:
    items = [SplitItem(key=f"f{i}", loop=f"l{i % 2}", exam="e0", label="LCA_better") for i in range(10)]
    with pytest.raises(SnapshotError, match="from 1 exam;"):
        split_frames(items, seed=0)
    with pytest.raises(SnapshotError, match="2 cine loops"):
        split_frames(items, seed=0, split_by="loop")


# --- snapshots in the database ----------------------------------------------------------------


@pytest.fixture
def labelled_exams(db):
    """Six exams of two loops each (one left, one right), eight labelled frames per loop."""
    loops = []
    for _ in range(6):
        exam = ExamFactory()
        for laterality in ("LCA", "RCA"):
            loop = CineLoopFactory(exam=exam, frame_count=10)
            label_loop_frames(
                loop,
                [f"{laterality}_{c}" for c in ("other", "bad", "better", "better", "bad", "other", "other", "bad")],
            )
            loops.append(loop)
    return loops


def test_snapshot_holds_every_final_label_split_by_exam(labelled_exams, admin_user) -> None:
    snapshot = build_snapshot(name="first", seed=5, user=admin_user)

    manifest = load_manifest(snapshot)
    assert snapshot.frame_count == len(manifest.entries) == 6 * 2 * 8
    assert snapshot.created_by == admin_user
    assert snapshot.manifest_path.startswith("datasets/")
    assert manifest.seed == 5
    assert manifest.parameters.split_by == "exam"
    exams_by_split: dict[str, set] = {}
    for entry in manifest.entries:
        exams_by_split.setdefault(str(entry.exam), set()).add(entry.split)
        assert read_frame_image(entry)  # the image the hash names
    assert all(len(splits) == 1 for splits in exams_by_split.values())
    assert {entry.split for entry in manifest.entries} == set(SPLITS)
    # Counts per split and class on the row add up to the manifest.
    assert sum(sum(per_class.values()) for per_class in snapshot.counts.values()) == snapshot.frame_count
    assert set(snapshot.counts["train"]) == set(SIX_CLASSES)
    assert snapshot.counts["train"]["LCA_better"] == sum(
        1 for e in manifest.entries if e.split == "train" and e.label == "LCA_better"
    )


def test_same_labels_and_seed_give_the_same_manifest(labelled_exams) -> None:
    first = build_snapshot(name="a", seed=1)
    second = build_snapshot(name="b", seed=1)
    other = build_snapshot(name="c", seed=2, split_by="loop")

    assert first.uuid != second.uuid
    assert first.manifest_sha256 == second.manifest_sha256
    assert first.manifest_path == second.manifest_path
    assert other.manifest_sha256 != first.manifest_sha256


@pytest.mark.parametrize("split_by", ["exam", "loop"])
def test_the_split_and_order_follow_the_images_not_the_database_ids(labelled_exams, split_by) -> None:
    """The same images ingested into another database get other UUIDs but the same (remapped)
    DICOM UIDs: a seed must split them the same way, and list them in the same order (training
    draws its batches by position)."""

    def split_and_order() -> list[tuple[int, str, int]]:
        manifest = build_manifest(seed=3, split_by=split_by)
        uids = dict(CineLoop.objects.values_list("uuid", "sop_instance_uid"))
        return [(SPLITS.index(entry.split), uids[entry.loop], entry.index) for entry in manifest.entries]

    before = split_and_order()
    for exam in Exam.objects.all():
        Exam.objects.filter(pk=exam.pk).update(uuid=uuid.uuid4())
    for loop in CineLoop.objects.all():
        CineLoop.objects.filter(pk=loop.pk).update(uuid=uuid.uuid4())

    assert split_and_order() == before
    assert before == sorted(before)  # by split, then loop UID and frame number
    assert {split for split, _uid, _index in before} == set(range(len(SPLITS)))


def test_snapshot_is_immutable(labelled_exams) -> None:
    snapshot = build_snapshot(name="frozen", seed=0)
    snapshot.name = "renamed"
    with pytest.raises(ValidationError):
        snapshot.save()


def test_tampered_manifest_is_refused(labelled_exams, media_root) -> None:
    snapshot = build_snapshot(name="tamper", seed=0)
    path = media_root / snapshot.manifest_path
    data = json.loads(path.read_text())
    data["entries"][0]["label"] = "RCA_better" if data["entries"][0]["label"] != "RCA_better" else "LCA_better"
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))

    with pytest.raises(SnapshotIntegrityError, match="SHA-256"):
        load_manifest(snapshot)

    default_storage.delete(snapshot.manifest_path)
    with pytest.raises(SnapshotIntegrityError, match="missing"):
        load_manifest(snapshot)


def test_tampered_frame_image_is_refused(labelled_exams, media_root) -> None:
    snapshot = build_snapshot(name="images", seed=0)
    entry = load_manifest(snapshot).entries[0]
    (media_root / entry.image).write_bytes(b"other pixels")
    with pytest.raises(SnapshotIntegrityError, match="not the one"):
        read_frame_image(entry)


def test_no_final_labels_is_refused(db) -> None:
    CineLoopFactory()
    with pytest.raises(SnapshotError, match="no final labels"):
        build_snapshot(name="empty", seed=0)


def test_too_few_exams_are_refused_and_nothing_is_written(db, media_root) -> None:
    exam = ExamFactory()
    for _ in range(3):
        label_loop_frames(CineLoopFactory(exam=exam), ["LCA_better", "LCA_bad"])
    with pytest.raises(SnapshotError, match="from 1 exam;"):
        build_snapshot(name="one exam", seed=0)
    assert not (media_root / "datasets").exists()
    # Split by loop, the same labels make a snapshot.
    assert build_snapshot(name="by loop", seed=0, split_by="loop").frame_count == 6
