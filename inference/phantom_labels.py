"""Final labels from the phantom's ground truth, so a model can be trained without a physician.

The phantom command writes one ``ground_truth.json`` per exam with the laterality and
key-frame category of every frame of every run. The runs were ingested like any cath-lab file,
so their SOP Instance UIDs were remapped (``annotation.deid.remap_uid``); that is how a run of
the ground truth finds its CineLoop. Each frame gets a FinalLabel with method ``phantom``.

A final label reached by physicians (agreement, adjudication, import) is never replaced: the
import reports it as kept. Re-running changes nothing; a phantom label whose ground truth
changed (a new generator version) is updated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.deid import remap_uid
from annotation.models import CineLoop, FinalLabel, FinalLabelAction, FinalLabelEvent, FinalLabelMethod, Frame


@dataclass
class PhantomLabelReport:
    exams_seen: int = 0
    exams_imported: int = 0
    exams_not_ingested: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    # Frames of the ground truth that the ingested loop does not have (should not happen).
    missing_frames: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (
            f"{self.exams_seen} phantom exam{'s' if self.exams_seen != 1 else ''}: "
            f"{self.exams_imported} imported, {self.exams_not_ingested} not ingested (skipped); "
            f"final labels {self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.kept} kept (decided by physicians)"
            + (f", {self.missing_frames} frames missing from the ingested loops" if self.missing_frames else "")
        )


def phantom_note(generator_version: Any) -> str:
    return f"phantom ground truth {generator_version}"


def import_phantom_labels(phantom_dir: Path) -> PhantomLabelReport:
    """Import the ground truth of every ``*/ground_truth.json`` under ``phantom_dir``."""
    report = PhantomLabelReport()
    for truth_path in sorted(phantom_dir.glob("*/ground_truth.json")):
        report.exams_seen += 1
        import_exam_truth(json.loads(truth_path.read_text(encoding="utf-8")), report)
    return report


def import_exam_truth(truth: dict[str, Any], report: PhantomLabelReport) -> None:
    """One exam's ground truth, in one transaction."""
    exam_id = truth.get("exam_id", "?")
    note = phantom_note(truth.get("generator_version", "?"))
    loops_by_uid = {remap_uid(loop["sop_instance_uid"]): loop for loop in truth["loops"]}
    ingested = {loop.sop_instance_uid: loop for loop in CineLoop.objects.filter(sop_instance_uid__in=loops_by_uid)}
    if not ingested:
        report.exams_not_ingested += 1
        report.lines.append(f"{exam_id}: not ingested, skipped")
        return
    exam_report = PhantomLabelReport()
    with transaction.atomic():
        for uid, loop in ingested.items():
            _import_loop(loop, loops_by_uid[uid]["frames"], note, exam_report)
    report.exams_imported += 1
    for name in ("created", "updated", "unchanged", "kept", "missing_frames"):
        setattr(report, name, getattr(report, name) + getattr(exam_report, name))
    missing_loops = len(loops_by_uid) - len(ingested)
    report.lines.append(
        f"{exam_id}: {exam_report.created} created, {exam_report.updated} updated, "
        f"{exam_report.unchanged} unchanged, {exam_report.kept} kept"
        + (f"; {missing_loops} run{'s' if missing_loops != 1 else ''} not ingested" if missing_loops else "")
    )


def _import_loop(loop: CineLoop, truth_frames: list[dict[str, Any]], note: str, report: PhantomLabelReport) -> None:
    # Lock the loop's frames, as a physician's label change does (annotation.labels), so a
    # final label by agreement cannot appear between the read below and the insert.
    frames = {frame.index: frame for frame in Frame.objects.select_for_update().filter(loop=loop).only("pk", "index")}
    finals = {final.frame_id: final for final in FinalLabel.objects.filter(frame__loop=loop)}
    now = timezone.now()
    to_create: list[FinalLabel] = []
    events: list[FinalLabelEvent] = []  # the audit trail, as annotation.labels.audit_final_label writes it
    for truth in truth_frames:
        frame = frames.get(truth["index"])
        if frame is None:
            report.missing_frames += 1
            continue
        laterality, category = truth["laterality"], truth["category"]
        final = finals.get(frame.pk)
        if final is None:
            to_create.append(
                FinalLabel(
                    frame=frame,
                    laterality=laterality,
                    category=category,
                    method=FinalLabelMethod.PHANTOM,
                    decided_at=now,
                    note=note,
                )
            )
        elif final.method != FinalLabelMethod.PHANTOM:
            report.kept += 1
        elif (final.laterality, final.category, final.note) == (laterality, category, note):
            report.unchanged += 1
        else:
            before = final.snapshot()
            final.laterality, final.category, final.note, final.decided_at = laterality, category, note, now
            final.save(update_fields=["laterality", "category", "note", "decided_at", "updated_at"])
            events.append(
                FinalLabelEvent(frame=frame, action=FinalLabelAction.CHANGED, before=before, after=final.snapshot())
            )
            report.updated += 1
    FinalLabel.objects.bulk_create(to_create)
    events += [
        FinalLabelEvent(frame_id=final.frame_id, action=FinalLabelAction.DECIDED, after=final.snapshot())
        for final in to_create
    ]
    FinalLabelEvent.objects.bulk_create(events)
    report.created += len(to_create)
