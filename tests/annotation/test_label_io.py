"""Export of final labels and import of labels: formats, the validation report, dry runs,
idempotence and the round trip."""

from __future__ import annotations

import csv
import io
import json

import pytest

from annotation.label_io import ImportFileError, final_label_rows, final_labels_csv, final_labels_json, import_labels
from annotation.labels import adjudicate, withdraw_label
from annotation.models import FinalLabel, FinalLabelEvent, FinalLabelMethod, FrameLabel, LabelAction, LabelEvent
from tests.annotation.labelling import label, sampled_frames
from tests.factories import CineLoopFactory

pytestmark = pytest.mark.django_db


def as_csv(rows: list[dict[str, object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


@pytest.fixture
def loop():
    return CineLoopFactory(frame_count=20)  # sampled: 0, 5, 10, 15


# --- export ----------------------------------------------------------------------------------


def test_export_has_every_final_label_with_how_it_was_reached(loop, physician, other_physician, admin_user):
    agreed, disputed, _, _ = sampled_frames(loop)
    label(agreed, physician, "LCA_better")
    label(agreed, other_physician, "LCA_better")
    label(disputed, physician, "LCA_bad")
    label(disputed, other_physician, "RCA_bad")
    adjudicate(disputed, admin_user, "RCA", "bad")

    rows = list(csv.DictReader(io.StringIO(final_labels_csv())))
    document = json.loads(final_labels_json())

    assert [(row["frame_index"], row["class"], row["method"], row["decided_by"]) for row in rows] == [
        ("0", "LCA_better", "agreement", ""),
        ("5", "RCA_bad", "adjudication", "lab_admin"),
    ]
    assert rows[0]["frame_uuid"] == str(agreed.uuid)
    assert rows[0]["loop_uuid"] == str(loop.uuid)
    assert rows[0]["exam_uuid"] == str(loop.exam.uuid)
    assert document["final_labels"][1]["frame_uuid"] == str(disputed.uuid)
    assert document["final_labels"][1]["frame_index"] == 5


# --- import of physicians' labels ------------------------------------------------------------


def test_import_by_frame_uuid_or_by_loop_and_index(loop, physician, other_physician, admin_user):
    first, second, *_ = sampled_frames(loop)
    payload = as_csv(
        [
            {"frame_uuid": first.uuid, "loop_uuid": "", "frame_index": "", "physician": "dr_physician",
             "laterality": "lca", "category": "Better", "note": "imported"},
            {"frame_uuid": "", "loop_uuid": loop.uuid, "frame_index": 5, "physician": "dr_other_physician",
             "laterality": "RCA", "category": "bad", "note": ""},
        ]
    )  # fmt: skip

    report = import_labels(payload, "old.csv", admin_user)

    assert report.ok, report.errors
    assert (report.rows, report.created, report.unchanged) == (2, 2, 0)
    mine = FrameLabel.objects.get(frame=first, physician=physician)
    assert (mine.class_name, mine.note) == ("LCA_better", "imported")
    assert FrameLabel.objects.get(frame=second, physician=other_physician).class_name == "RCA_bad"
    event = mine.events.get()
    assert (event.action, event.actor) == (LabelAction.IMPORTED, admin_user)


def test_import_keeps_valid_rows_and_reports_the_others(loop, physician, other_physician, cardiologist, admin_user):
    first, second, third, fourth = sampled_frames(loop)
    label(fourth, physician, "LCA_better")
    rows = [
        {"frame_uuid": first.uuid, "physician": "dr_physician", "laterality": "LCA", "category": "better"},
        {"frame_uuid": "not-a-uuid", "physician": "dr_physician", "laterality": "LCA", "category": "better"},
        {"frame_uuid": "6f1c1d7e-0000-4000-8000-000000000000", "physician": "dr_physician", "laterality": "LCA",
         "category": "better"},
        {"frame_uuid": second.uuid, "physician": "dr_nobody", "laterality": "LCA", "category": "better"},
        {"frame_uuid": second.uuid, "physician": "dr_cardiologist", "laterality": "LCA", "category": "better"},
        {"frame_uuid": third.uuid, "physician": "dr_physician", "laterality": "LAD", "category": "better"},
        {"frame_uuid": first.uuid, "physician": "dr_physician", "laterality": "RCA", "category": "better"},
        {"frame_uuid": fourth.uuid, "physician": "dr_physician", "laterality": "RCA", "category": "other"},
        {"frame_uuid": "", "physician": "dr_physician", "laterality": "RCA", "category": "other"},
        {"frame_uuid": second.uuid, "physician": "", "laterality": "RCA", "category": "other"},
        {"frame_uuid": third.uuid, "physician": "dr_other_physician", "laterality": "RCA", "category": "other"},
    ]  # fmt: skip

    report = import_labels(as_csv(rows), "labels.csv", admin_user)

    errors = {error.row: error.error for error in report.errors}
    assert errors == {
        3: "frame_uuid 'not-a-uuid' is not a UUID.",
        4: "No such frame.",
        5: "No physician with username 'dr_nobody'.",
        6: "No physician with username 'dr_cardiologist'.",
        7: "'LAD' is not a laterality; use one of LCA, RCA.",
        8: "Row 2 already labels this frame.",
        9: "dr_physician already labels this frame LCA_better (version 1); the import leaves that label as it is.",
        10: "Name the frame by frame_uuid, or by loop_uuid and frame_index.",
        11: "The physician column is empty.",
    }
    assert (report.created, report.rows) == (2, 11)
    assert not report.ok
    assert FrameLabel.objects.get(frame=fourth).class_name == "LCA_better"  # left as it was
    assert FrameLabel.objects.count() == 3


def test_importing_twice_changes_nothing_and_a_withdrawn_label_is_restored(loop, physician, admin_user):
    first, second, *_ = sampled_frames(loop)
    label(second, physician, "RCA_bad")
    withdraw_label(second, physician, expected_version=1)
    payload = json.dumps(
        {
            "labels": [
                {"frame_uuid": str(first.uuid), "physician": "dr_physician", "laterality": "LCA", "category": "bad"},
                {"frame_uuid": str(second.uuid), "physician": "dr_physician", "laterality": "LCA", "category": "other"},
            ]
        }
    ).encode()

    first_run = import_labels(payload, "labels.json", admin_user)
    second_run = import_labels(payload, "labels.json", admin_user)

    assert (first_run.created, first_run.restored, first_run.unchanged) == (1, 1, 0)
    assert (second_run.created, second_run.restored, second_run.unchanged) == (0, 0, 2)
    restored = FrameLabel.objects.get(frame=second)
    assert restored.is_active
    assert restored.class_name == "LCA_other"
    assert LabelEvent.objects.filter(action=LabelAction.IMPORTED).count() == 2


def test_a_dry_run_reports_the_same_and_saves_nothing(loop, physician, admin_user):
    first, *_ = sampled_frames(loop)
    payload = as_csv(
        [
            {"frame_uuid": first.uuid, "physician": "dr_physician", "laterality": "LCA", "category": "bad"},
            {"frame_uuid": first.uuid, "physician": "dr_ghost", "laterality": "LCA", "category": "bad"},
        ]
    )

    dry = import_labels(payload, "labels.csv", admin_user, dry_run=True)

    assert (dry.created, len(dry.errors), dry.dry_run) == (1, 1, True)
    assert dry.summary.startswith("Dry run, nothing saved.")
    assert not FrameLabel.objects.exists()
    assert not LabelEvent.objects.exists()
    assert not FinalLabel.objects.exists()
    real = import_labels(payload, "labels.csv", admin_user)
    assert (real.created, len(real.errors)) == (1, 1)
    assert FrameLabel.objects.count() == 1


def test_imported_labels_reach_agreement_like_any_other(loop, physician, other_physician, admin_user):
    first, *_ = sampled_frames(loop)
    payload = as_csv(
        [
            {"frame_uuid": first.uuid, "physician": "dr_physician", "laterality": "RCA", "category": "better"},
            {"frame_uuid": first.uuid, "physician": "dr_other_physician", "laterality": "RCA", "category": "better"},
        ]
    )

    import_labels(payload, "labels.csv", admin_user)

    assert FinalLabel.objects.get(frame=first).method == FinalLabelMethod.AGREEMENT


@pytest.mark.parametrize(
    ("payload", "name", "message"),
    [
        (b"\xff\xfe\x00garbage", "x.csv", "not UTF-8"),
        (b"{not json", "x.json", "not valid JSON"),
        (b'{"rows": 3}', "x.json", "a list of labels"),
        (b"", "x.csv", "no header row"),
    ],
)
def test_unreadable_files_are_refused_whole(admin_user, payload, name, message):
    with pytest.raises(ImportFileError, match=message):
        import_labels(payload, name, admin_user)


def test_json_rows_must_be_objects(admin_user):
    report = import_labels(b'[["a", "b"]]', "x.json", admin_user)
    assert [(error.row, error.error) for error in report.errors] == [(1, "A row must be an object with named fields.")]


# --- final labels: import and the round trip -------------------------------------------------


def test_export_then_import_final_labels_round_trip(loop, physician, other_physician, admin_user):
    agreed, disputed, imported, _ = sampled_frames(loop)
    label(agreed, physician, "LCA_better")
    label(agreed, other_physician, "LCA_better")
    label(disputed, physician, "LCA_bad")
    label(disputed, other_physician, "RCA_other")
    adjudicate(disputed, admin_user, "RCA", "other")
    FinalLabel.objects.create(
        frame=imported, laterality="LCA", category="bad", method=FinalLabelMethod.IMPORT, decided_by=admin_user,
        decided_at="2024-01-01T00:00:00Z",
    )  # fmt: skip
    exported = final_labels_csv().encode()
    before = {(row["frame_uuid"], row["class"]) for row in final_label_rows()}

    # Another installation, the same frames and no final labels: import what was exported.
    FinalLabel.objects.all().delete()
    report = import_labels(exported, "final.csv", admin_user, final=True)

    assert report.ok, report.errors
    assert report.created == 3
    after = final_label_rows()
    assert {(row["frame_uuid"], row["class"]) for row in after} == before
    assert {row["method"] for row in after} == {"import"}
    assert {row["decided_by"] for row in after} == {"lab_admin"}
    imported_events = FinalLabelEvent.objects.filter(after__method="import")
    assert sorted(imported_events.values_list("action", "actor__username")) == [("decided", "lab_admin")] * 3
    # Importing them again: already there.
    again = import_labels(exported, "final.csv", admin_user, final=True)
    assert (again.created, again.unchanged) == (0, 3)


def test_a_final_label_import_never_replaces_a_different_final_label(loop, physician, other_physician, admin_user):
    agreed, *_ = sampled_frames(loop)
    label(agreed, physician, "LCA_better")
    label(agreed, other_physician, "LCA_better")
    payload = as_csv([{"frame_uuid": agreed.uuid, "laterality": "RCA", "category": "bad"}])

    report = import_labels(payload, "final.csv", admin_user, final=True)

    assert [error.error for error in report.errors] == [
        "The frame already has the final label LCA_better (Agreement of physicians); the import leaves it as it is."
    ]
    assert FinalLabel.objects.get(frame=agreed).class_name == "LCA_better"
