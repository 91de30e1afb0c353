"""``manage.py import_phantom_labels``: the phantom's ground truth becomes final labels of the
ingested exams, once, without touching what physicians decided."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.deid import remap_uid
from annotation.ingest import ingest_paths
from annotation.models import CineLoop, FinalLabel, FinalLabelEvent, FinalLabelMethod
from annotation.phantom.generate import GENERATOR_VERSION, generate_exam
from tests.factories import CineLoopFactory, ExamFactory, FinalLabelFactory

COHORT_SEED = 11


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated exam, plus the ground truth of an exam that is never ingested."""
    folder = tmp_path_factory.mktemp("phantom_labels")
    truth_path = generate_exam(COHORT_SEED, 0, folder)
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    truth["exam_id"] = "not-ingested"
    for loop in truth["loops"]:
        loop["sop_instance_uid"] += ".999"
    (folder / "not-ingested").mkdir()
    (folder / "not-ingested" / "ground_truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return folder


def run_import(folder: Path) -> str:
    out = StringIO()
    call_command("import_phantom_labels", str(folder), stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_every_frame_of_an_ingested_exam_gets_its_ground_truth_once(phantom_dir: Path) -> None:
    [truth_path] = [p for p in phantom_dir.glob("*/ground_truth.json") if p.parent.name != "not-ingested"]
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    # The exam's two shortest runs, one of each artery, keep the test quick; the other runs
    # are reported as not ingested.
    runs = sorted(truth["loops"], key=lambda loop: len(loop["frames"]))
    chosen = [next(loop for loop in runs if loop["artery"] == artery) for artery in ("LCA", "RCA")]
    report = ingest_paths([truth_path.parent / loop["file"] for loop in chosen])
    assert report.count("ingested") == 2, [r.line for r in report.results]
    truth["loops"] = chosen

    output = run_import(phantom_dir)

    frames_in_truth = sum(len(loop["frames"]) for loop in chosen)
    assert f"{len(runs) - 2} runs not ingested" in output
    assert FinalLabel.objects.count() == frames_in_truth
    assert "final labels " + str(frames_in_truth) + " created" in output
    assert "1 imported, 1 not ingested (skipped)" in output
    assert "not-ingested: not ingested, skipped" in output
    for loop_truth in truth["loops"]:
        loop = CineLoop.objects.get(sop_instance_uid=remap_uid(loop_truth["sop_instance_uid"]))
        finals = {
            index: (laterality, category, method, note)
            for index, laterality, category, method, note in FinalLabel.objects.filter(frame__loop=loop).values_list(
                "frame__index", "laterality", "category", "method", "note"
            )
        }
        # All frames, not only the sampled ones, each with the truth of its index.
        assert len(finals) == loop.frame_count == len(loop_truth["frames"])
        for frame in loop_truth["frames"]:
            assert finals[frame["index"]] == (
                frame["laterality"],
                frame["category"],
                FinalLabelMethod.PHANTOM,
                f"phantom ground truth {GENERATOR_VERSION}",
            )

    # Again: nothing changes, and the summary says so.
    stamps = list(FinalLabel.objects.order_by("pk").values_list("pk", "updated_at"))
    again = run_import(phantom_dir)
    assert f"0 created, 0 updated, {frames_in_truth} unchanged, 0 kept" in again
    assert list(FinalLabel.objects.order_by("pk").values_list("pk", "updated_at")) == stamps


def write_truth(folder: Path, loops: dict[str, list[str]], exam_id: str = "phantom-000") -> None:
    """A ground-truth JSON naming loops by their original UID, with one class per frame."""
    (folder / exam_id).mkdir(parents=True, exist_ok=True)
    document = {
        "generator_version": 2,
        "exam_id": exam_id,
        "loops": [
            {
                "sop_instance_uid": uid,
                "frames": [
                    {"index": i, "laterality": name.split("_")[0], "category": name.split("_")[1]}
                    for i, name in enumerate(classes)
                ],
            }
            for uid, classes in loops.items()
        ],
    }
    (folder / exam_id / "ground_truth.json").write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.django_db
def test_final_labels_reached_by_physicians_are_kept(tmp_path: Path, admin_user, physician) -> None:
    loop = CineLoopFactory(exam=ExamFactory(), sop_instance_uid=remap_uid("1.2.3.4"), frame_count=4)
    frames = list(loop.frames.order_by("index"))
    FinalLabelFactory(frame=frames[0], laterality="RCA", category="bad", method=FinalLabelMethod.AGREEMENT)
    FinalLabelFactory(
        frame=frames[1], laterality="RCA", category="other", method=FinalLabelMethod.ADJUDICATION, decided_by=physician
    )
    FinalLabelFactory(
        frame=frames[2], laterality="LCA", category="better", method=FinalLabelMethod.IMPORT, decided_by=admin_user
    )
    write_truth(tmp_path, {"1.2.3.4": ["LCA_better", "LCA_better", "LCA_bad", "LCA_other"]})

    output = run_import(tmp_path)

    assert "1 created, 0 updated, 0 unchanged, 3 kept" in output
    finals = {f.frame_id: f for f in FinalLabel.objects.all()}
    assert (finals[frames[0].pk].class_name, finals[frames[0].pk].method) == ("RCA_bad", "agreement")
    assert (finals[frames[1].pk].class_name, finals[frames[1].pk].method) == ("RCA_other", "adjudication")
    assert (finals[frames[2].pk].class_name, finals[frames[2].pk].method) == ("LCA_better", "import")
    assert (finals[frames[3].pk].class_name, finals[frames[3].pk].method) == ("LCA_other", "phantom")


@pytest.mark.django_db
def test_changed_ground_truth_updates_phantom_labels(tmp_path: Path) -> None:
    loop = CineLoopFactory(sop_instance_uid=remap_uid("1.2.3.5"), frame_count=2)
    write_truth(tmp_path, {"1.2.3.5": ["RCA_better", "RCA_other"]})
    run_import(tmp_path)
    write_truth(tmp_path, {"1.2.3.5": ["RCA_better", "RCA_bad"]})

    output = run_import(tmp_path)

    assert "0 created, 1 updated, 1 unchanged, 0 kept" in output
    assert [f.class_name for f in FinalLabel.objects.filter(frame__loop=loop).order_by("frame__index")] == [
        "RCA_better",
        "RCA_bad",
    ]
    trail = FinalLabelEvent.objects.filter(frame__loop=loop).order_by("id")
    assert [(e.action, e.actor, (e.before or {}).get("category"), e.after["category"]) for e in trail] == [
        ("decided", None, None, "better"),
        ("decided", None, None, "other"),
        ("changed", None, "other", "bad"),
    ]


@pytest.mark.django_db
def test_a_folder_without_ground_truth_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"no \*/ground_truth.json"):
        run_import(tmp_path)
    with pytest.raises(CommandError, match="not a folder"):
        run_import(tmp_path / "missing")
