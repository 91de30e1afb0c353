"""Bring generated phantom exams into the product: ingest their runs, attach their reports.

The runs go through the same ingest (and so the same de-identification) as any cath-lab file;
the reports become clinical documents of the exam, scrubbed like any other document.
"""

from __future__ import annotations

import json
from pathlib import Path

from annotation.deid import remap_uid
from annotation.documents import create_clinical_document
from annotation.ingest import IngestReport, ingest_paths
from annotation.models import ClinicalDocument, Exam


def load_phantom_exam(truth_path: Path) -> tuple[IngestReport, Exam | None]:
    """Ingest one phantom exam folder and store its reports as documents (idempotent)."""
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    folder = truth_path.parent
    report = ingest_paths([folder / loop["file"] for loop in truth["loops"]])
    exam = Exam.objects.filter(study_instance_uid=remap_uid(truth["study_instance_uid"])).first()
    if exam is not None:
        for kind, texts in truth["reports"].items():
            for language, text in texts.items():
                if not ClinicalDocument.objects.filter(exam=exam, kind=kind, language=language).exists():
                    create_clinical_document(exam=exam, kind=kind, language=language, text=text, source="phantom")
    return report, exam


def load_phantom_cohort(folder: Path) -> list[tuple[IngestReport, Exam | None]]:
    return [load_phantom_exam(path) for path in sorted(folder.glob("*/ground_truth.json"))]
