"""Export of final labels (CSV, JSON) and import of existing labels with a validation report.

Import keeps the valid rows and reports the others (row number and error): a lab importing
years of labels should not lose thousands of good rows to one typo, and the report says
exactly which rows to fix and send again. Importing the same file twice changes nothing the
second time. A dry run does the whole import, reports what it would do, and rolls it back.

Rows name the frame by ``frame_uuid``, or by ``loop_uuid`` and ``frame_index``. Physicians'
labels name the ``physician`` by username; final labels (``final=True``) need no physician and
are stored with method "import", decided by the admin who imported them. An imported label
never replaces a different label already there (a physician's own, or a frame's final label):
that row is reported and the stored label left as it is.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.labels import LabelError, StaleLabel, audit_final_label, record_label, validate_label_values
from annotation.models import FinalLabel, FinalLabelMethod, Frame, class_name
from cagvlm_site.roles import Role

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.contrib.auth.models import User

EXPORT_FIELDS = [
    "frame_uuid",
    "exam_uuid",
    "loop_uuid",
    "frame_index",
    "laterality",
    "category",
    "class",
    "method",
    "decided_by",
    "decided_at",
]
IMPORT_FIELDS = ["frame_uuid", "loop_uuid", "frame_index", "physician", "laterality", "category", "note"]
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_IMPORT_ROWS = 200_000


# --- export ----------------------------------------------------------------------------------


def final_label_rows() -> list[dict[str, Any]]:
    """Every final label, exam by exam and frame by frame, in one query."""
    rows = (
        FinalLabel.objects.order_by("frame__loop__exam__created_at", "frame__loop__created_at", "frame__index")
        .values(
            "frame__uuid",
            "frame__loop__exam__uuid",
            "frame__loop__uuid",
            "frame__index",
            "laterality",
            "category",
            "method",
            "decided_by__username",
            "decided_at",
        )
        .iterator(chunk_size=2000)
    )
    return [
        {
            "frame_uuid": str(row["frame__uuid"]),
            "exam_uuid": str(row["frame__loop__exam__uuid"]),
            "loop_uuid": str(row["frame__loop__uuid"]),
            "frame_index": row["frame__index"],
            "laterality": row["laterality"],
            "category": row["category"],
            "class": class_name(row["laterality"], row["category"]),
            "method": row["method"],
            "decided_by": row["decided_by__username"] or "",
            "decided_at": row["decided_at"].isoformat(),
        }
        for row in rows
    ]


def final_labels_csv() -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(final_label_rows())
    return buffer.getvalue()


def final_labels_json() -> str:
    return json.dumps({"final_labels": final_label_rows()}, indent=1, ensure_ascii=False)


# --- import ----------------------------------------------------------------------------------


class ImportFileError(ValueError):
    """The file as a whole cannot be read; no row was looked at."""


@dataclass
class RowError:
    row: int
    error: str


@dataclass
class ImportReport:
    dry_run: bool
    final: bool
    rows: int = 0
    created: int = 0
    restored: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self) -> str:
        kind = "final labels" if self.final else "labels"
        verb = "would be" if self.dry_run else "were"
        text = (
            f"{self.rows} row{'s' if self.rows != 1 else ''} read: {self.created} {kind} {verb} created, "
            f"{self.restored} {verb} restored, {self.unchanged} already there; {len(self.errors)} rejected."
        )
        return ("Dry run, nothing saved. " if self.dry_run else "") + text


def _parse(payload: bytes, filename: str) -> list[tuple[int, dict[str, Any]]]:
    """(row number, fields) for each row: CSV rows are numbered as a spreadsheet shows them
    (the header is row 1), JSON items from 1."""
    if len(payload) > MAX_IMPORT_BYTES:
        raise ImportFileError(f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it.")
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("The file is not UTF-8 text.") from None
    is_json = filename.lower().endswith(".json") or text.lstrip()[:1] in ("[", "{")
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"The file is not valid JSON: {exc}.") from None
        if isinstance(data, dict):
            data = data.get("labels", data.get("final_labels"))
        if not isinstance(data, list):
            raise ImportFileError('A JSON import is a list of labels, or an object with a list under "labels".')
        rows = list(enumerate(data, start=1))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ImportFileError("The CSV file has no header row.")
        rows = [(number, row) for number, row in enumerate(reader, start=2)]
    if len(rows) > MAX_IMPORT_ROWS:
        raise ImportFileError(f"The file has {len(rows)} rows; import at most {MAX_IMPORT_ROWS} at a time.")
    return rows


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def _frame_keys(row: dict[str, Any]) -> UUID | tuple[UUID, int]:
    """The frame's UUID, or its loop's UUID and index; ValueError says what is missing."""
    if frame_uuid := _text(row, "frame_uuid"):
        try:
            return UUID(frame_uuid)
        except ValueError:
            raise ValueError(f"frame_uuid {frame_uuid!r} is not a UUID.") from None
    loop_uuid, index = _text(row, "loop_uuid"), _text(row, "frame_index")
    if not loop_uuid or not index:
        raise ValueError("Name the frame by frame_uuid, or by loop_uuid and frame_index.")
    try:
        loop = UUID(loop_uuid)
    except ValueError:
        raise ValueError(f"loop_uuid {loop_uuid!r} is not a UUID.") from None
    try:
        number = int(index)
    except ValueError:
        raise ValueError(f"frame_index {index!r} is not a whole number.") from None
    return loop, number


def _frames_named(keys: Iterable[UUID | tuple[UUID, int]]) -> dict[UUID | tuple[UUID, int], Frame]:
    """The frames the rows name, in two queries whatever the number of rows."""
    keys = set(keys)
    by_uuid = [key for key in keys if isinstance(key, UUID)]
    by_position = [key for key in keys if isinstance(key, tuple)]
    found: dict[UUID | tuple[UUID, int], Frame] = {}
    if by_uuid:
        for frame in Frame.objects.filter(uuid__in=by_uuid).select_related("loop"):
            found[frame.uuid] = frame
    if by_position:
        position = Q()
        for loop, index in by_position:
            position |= Q(loop__uuid=loop, index=index)
        # In batches: one OR per row would make a statement too long for SQLite.
        conditions = list(position.children)
        for start in range(0, len(conditions), 500):
            batch = Q(*conditions[start : start + 500], _connector=Q.OR)
            for frame in Frame.objects.filter(batch).select_related("loop"):
                found[(frame.loop.uuid, frame.index)] = frame
    return found


def _physicians_named(names: Iterable[str]) -> dict[str, User]:
    user_model = get_user_model()
    return {
        user.get_username(): user
        for user in user_model.objects.filter(
            **{f"{user_model.USERNAME_FIELD}__in": set(names)}, groups__name=Role.PHYSICIAN.value
        )
    }


def _normalised(row: dict[str, Any]) -> tuple[str, str, str]:
    laterality = _text(row, "laterality").upper()
    category = _text(row, "category").lower()
    return validate_label_values(laterality, category, _text(row, "note"))


def import_labels(
    payload: bytes, filename: str, actor: User, *, dry_run: bool = False, final: bool = False
) -> ImportReport:
    """Import physicians' labels (or, with ``final``, final labels) from CSV or JSON.

    Valid rows are imported and invalid ones reported; ``dry_run`` reports without saving.
    Raises ImportFileError when the file itself cannot be read.
    """
    rows = _parse(payload, filename)
    report = ImportReport(dry_run=dry_run, final=final, rows=len(rows))
    keys: dict[int, UUID | tuple[UUID, int]] = {}
    for number, row in rows:
        if not isinstance(row, dict):
            report.errors.append(RowError(number, "A row must be an object with named fields."))
            continue
        try:
            keys[number] = _frame_keys(row)
        except ValueError as exc:
            report.errors.append(RowError(number, str(exc)))
    frames = _frames_named(keys.values())
    physicians = {} if final else _physicians_named(_text(row, "physician") for _, row in rows if isinstance(row, dict))
    seen: dict[tuple[int, int | None], int] = {}

    with transaction.atomic():
        for number, row in rows:
            if number not in keys:
                continue
            frame = frames.get(keys[number])
            if frame is None:
                report.errors.append(RowError(number, "No such frame."))
                continue
            physician = None
            if not final:
                name = _text(row, "physician")
                physician = physicians.get(name)
                if physician is None:
                    message = f"No physician with username {name!r}." if name else "The physician column is empty."
                    report.errors.append(RowError(number, message))
                    continue
            duplicate_key = (frame.pk, physician.pk if physician else None)
            if duplicate_key in seen:
                report.errors.append(RowError(number, f"Row {seen[duplicate_key]} already labels this frame."))
                continue
            seen[duplicate_key] = number
            try:
                laterality, category, note = _normalised(row)
                with transaction.atomic():
                    if final:
                        outcome = _import_final_label(frame, actor, laterality, category, note)
                    else:
                        outcome = _import_physician_label(frame, physician, actor, laterality, category, note)
            except LabelError as exc:
                report.errors.append(RowError(number, str(exc)))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
        if dry_run:
            transaction.set_rollback(True)
    report.errors.sort(key=lambda error: error.row)
    return report


def _import_physician_label(
    frame: Frame,
    physician: User | None,
    actor: User,
    laterality: str,
    category: str,
    note: str,
) -> str:
    assert physician is not None
    try:
        outcome = record_label(frame, physician, laterality, category, note, imported_by=actor)
    except StaleLabel as exc:
        current = exc.current
        assert current is not None
        raise LabelError(
            f"{physician.get_username()} already labels this frame {current.class_name} "
            f"(version {current.version}); the import leaves that label as it is."
        ) from None
    if outcome.action is None:
        return "unchanged"
    # A label the physician had withdrawn comes back with the imported values.
    return "created" if outcome.label.version == 1 else "restored"


def _import_final_label(frame: Frame, actor: User, laterality: str, category: str, note: str) -> str:
    existing = FinalLabel.objects.select_for_update().filter(frame=frame).first()
    if existing is not None:
        if (existing.laterality, existing.category) == (laterality, category):
            return "unchanged"
        raise LabelError(
            f"The frame already has the final label {existing.class_name} ({existing.get_method_display()}); "
            "the import leaves it as it is."
        )
    final = FinalLabel.objects.create(
        frame=frame,
        laterality=laterality,
        category=category,
        method=FinalLabelMethod.IMPORT,
        decided_by=actor,
        decided_at=timezone.now(),
        note=note,
    )
    audit_final_label(frame.pk, actor, None, final)
    return "created"
