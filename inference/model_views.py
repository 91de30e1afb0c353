"""Pages of the model registry and the dataset snapshots (admins only): the versions of each
kind, training, a version's metrics and plots, activation and rollback, comparing two versions,
and building and inspecting snapshots."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import SIX_CLASSES
from cagvlm_site.roles import Role, role_required
from inference.datasets import (
    SPLITS,
    SnapshotError,
    SnapshotIntegrityError,
    build_snapshot,
    group_counts,
    load_manifest,
)
from inference.forms import SnapshotForm, TrainKeyframeForm
from inference.keyframes import model_keyframe_threshold
from inference.models import DatasetSnapshot, JobKind, ModelActivation, ModelKind, ModelVersion
from inference.registry import RegistryError, activate, rollback, rollback_target

if TYPE_CHECKING:
    from django.http import HttpRequest

# The test metrics the pages show, with which way is better. ECE: lower is better calibrated.
METRICS: list[tuple[str, str, bool]] = [
    ("laterality_f1", "Laterality F1 (LCA vs RCA)", True),
    ("keyframe_precision", "Key-frame precision", True),
    ("keyframe_recall", "Key-frame recall", True),
    ("keyframe_f1", "Key-frame F1", True),
    ("keyframe_auroc", "Key-frame AUROC", True),
    ("macro_f1", "Six-class macro F1", True),
    ("accuracy", "Six-class accuracy", True),
    ("ece", "Expected calibration error", False),
]
SUMMARY_METRICS = ("laterality_f1", "keyframe_f1", "macro_f1", "ece")
PLOT_TITLES = {
    "confusion_matrix": "Confusion matrix (test split)",
    "reliability": "Reliability (calibration)",
    "curves": "Loss and metrics per epoch",
}
ARTIFACT_CACHE_CONTROL = "private, max-age=31536000, immutable"


def _test_metrics(version: ModelVersion) -> dict[str, Any]:
    metrics = version.metrics or {}
    test = metrics.get("test")
    return test if isinstance(test, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class MetricRow:
    name: str
    title: str
    higher_is_better: bool
    values: list[float | None]
    # Index of the better value in ``values`` (None: a tie, or a value missing).
    better: int | None = None


def metric_rows(*versions: ModelVersion) -> list[MetricRow]:
    tests = [_test_metrics(version) for version in versions]
    rows = []
    for name, title, higher in METRICS:
        values = [_number(test.get(name)) for test in tests]
        better = None
        present = [v for v in values if v is not None]
        if len(versions) > 1 and len(present) == len(values) and len(set(present)) > 1:
            best = max(present) if higher else min(present)
            better = values.index(best)
        rows.append(MetricRow(name, title, higher, values, better))
    return rows


def confusion_table(version: ModelVersion) -> list[dict[str, Any]] | None:
    """The test confusion matrix as rows for a table (true class per row), if recorded."""
    matrix = _test_metrics(version).get("confusion_matrix")
    classes = version.model_settings.get("class_names") or SIX_CLASSES
    if not isinstance(matrix, list) or len(matrix) != len(classes):
        return None
    return [{"true": name, "counts": row} for name, row in zip(classes, matrix, strict=True)]


def _plots(version: ModelVersion) -> list[dict[str, str]]:
    return [
        {"name": name, "title": PLOT_TITLES.get(name, name.replace("_", " ").capitalize())}
        for name, path in sorted((version.artifacts or {}).items())
        if path.lower().endswith(".png")
    ]


def _summary(version: ModelVersion) -> list[tuple[str, float | None]]:
    test = _test_metrics(version)
    return [(name, _number(test.get(name))) for name in SUMMARY_METRICS]


# --- the registry -----------------------------------------------------------------------------


@require_GET
@role_required(Role.ADMIN)
def model_list(request: HttpRequest) -> HttpResponse:
    versions = list(ModelVersion.objects.select_related("snapshot", "trained_by", "activated_by", "training_job"))
    kinds = [
        {
            "value": kind.value,
            "label": kind.label,
            "versions": [{"version": v, "summary": _summary(v)} for v in versions if v.kind == kind],
        }
        for kind in ModelKind
    ]
    return render(
        request,
        "inference/model_list.html",
        {"kinds": kinds, "summary_metrics": SUMMARY_METRICS, "versions": versions},
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def model_train(request: HttpRequest) -> HttpResponse:
    # Imported here: the job machinery (and through it the runners) is not needed by the
    # read-only pages.
    from inference.jobs import JobConflict, start_job

    form = TrainKeyframeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                job = start_job(JobKind.TRAIN_KEYFRAME, form.parameters, request.user)
            except JobConflict as exc:
                form.add_error(None, str(exc))
                status = 409
            else:
                return redirect(job.get_absolute_url())
        else:
            status = 400
    context = {"form": form, "recipes": TrainKeyframeForm.recipes()}
    return render(request, "inference/train_form.html", context, status=status)


@require_GET
@role_required(Role.ADMIN)
def model_detail(request: HttpRequest, model_uuid: UUID) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("snapshot", "trained_by", "activated_by", "training_job"), uuid=model_uuid
    )
    activations = ModelActivation.objects.filter(kind=version.kind).select_related("model_version", "previous", "by")
    target = rollback_target(version.kind) if version.is_active else None
    metrics = version.metrics or {}
    history = metrics.get("history") if isinstance(metrics.get("history"), list) else []
    history = [epoch for epoch in history if isinstance(epoch, dict)]
    history_columns = sorted({key for epoch in history for key in epoch}, key=_epoch_key)
    others = ModelVersion.objects.filter(kind=version.kind).exclude(pk=version.pk)
    return render(
        request,
        "inference/model_detail.html",
        {
            "version": version,
            "metric_rows": metric_rows(version),
            "plots": _plots(version),
            "confusion": confusion_table(version),
            "config": version.config or {},
            "activations": activations,
            "rollback_target": target,
            "history": [[_cell(epoch.get(column)) for column in history_columns] for epoch in history],
            "history_columns": history_columns,
            "other_versions": others,
            "class_names": SIX_CLASSES,
            "per_frame": _test_metrics(version).get("per_frame") or None,
            "loop_context": version.model_settings.get("loop_context_window"),
            "keyframe_threshold": model_keyframe_threshold(version),
            "peak_ratio": version.model_settings.get("keyframe_peak_ratio"),
        },
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _epoch_key(name: str) -> tuple[int, str]:
    # The epoch number first, the losses next, the rest in alphabetical order.
    order = {"epoch": 0, "train_loss": 1, "val_loss": 2}
    return order.get(name, 3), name


@require_GET
@role_required(Role.ADMIN)
def model_artifact(request: HttpRequest, model_uuid: UUID, name: str) -> FileResponse:
    """A stored plot (or other artifact) of a version. Content-addressed, so cached forever."""
    version = get_object_or_404(ModelVersion, uuid=model_uuid)
    path = (version.artifacts or {}).get(name)
    if not path or not default_storage.exists(path):
        raise Http404("No such artifact.")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(path, "rb"), content_type=content_type)
    response["Cache-Control"] = ARTIFACT_CACHE_CONTROL
    return response


@require_POST
@role_required(Role.ADMIN)
def model_activate(request: HttpRequest, model_uuid: UUID) -> HttpResponse:
    version = get_object_or_404(ModelVersion, uuid=model_uuid)
    was_active = version.is_active
    version = activate(version, request.user)
    if was_active:
        messages.info(request, f"{version.label} was already the active model.")
    else:
        messages.success(request, f"{version.label} is now the active {version.get_kind_display()}.")
    return redirect(version.get_absolute_url())


@require_POST
@role_required(Role.ADMIN)
def model_rollback(request: HttpRequest, model_uuid: UUID) -> HttpResponse:
    """Roll the kind of this version back to the version active before the current one."""
    version = get_object_or_404(ModelVersion, uuid=model_uuid)
    try:
        restored = rollback(version.kind, request.user)
    except RegistryError as exc:
        messages.error(request, str(exc))
        return redirect(version.get_absolute_url())
    messages.success(request, f"Rolled back: {restored.label} is the active {restored.get_kind_display()} again.")
    return redirect(restored.get_absolute_url())


@require_GET
@role_required(Role.ADMIN)
def model_compare(request: HttpRequest) -> HttpResponse:
    try:
        a, b = UUID(request.GET.get("a", "")), UUID(request.GET.get("b", ""))
    except ValueError:
        return HttpResponseBadRequest("Name two model versions: ?a=<uuid>&b=<uuid>.")
    found = {v.uuid: v for v in ModelVersion.objects.filter(uuid__in=[a, b]).select_related("snapshot")}
    if a not in found or b not in found:
        raise Http404("No such model version.")
    versions = [found[a], found[b]]
    return render(
        request,
        "inference/model_compare.html",
        {
            "versions": versions,
            "metric_rows": metric_rows(*versions),
            "columns": [
                {"version": v, "confusion": confusion_table(v), "has_plot": "confusion_matrix" in (v.artifacts or {})}
                for v in versions
            ],
            "class_names": SIX_CLASSES,
        },
    )


# --- dataset snapshots ------------------------------------------------------------------------


def _render_snapshot_list(request: HttpRequest, form: SnapshotForm, status: int = 200) -> HttpResponse:
    snapshots = DatasetSnapshot.objects.select_related("created_by")
    return render(request, "inference/snapshot_list.html", {"snapshots": snapshots, "form": form}, status=status)


@require_GET
@role_required(Role.ADMIN)
def snapshot_list(request: HttpRequest) -> HttpResponse:
    return _render_snapshot_list(request, SnapshotForm(initial={"name": "Snapshot"}))


@require_POST
@role_required(Role.ADMIN)
def snapshot_create(request: HttpRequest) -> HttpResponse:
    form = SnapshotForm(request.POST)
    if not form.is_valid():
        return _render_snapshot_list(request, form, status=400)
    try:
        snapshot = build_snapshot(**form.cleaned_data, user=request.user)
    except SnapshotError as exc:
        form.add_error(None, str(exc))
        return _render_snapshot_list(request, form, status=409)
    messages.success(request, f"Snapshot {snapshot.name} built: {snapshot.frame_count} frames.")
    return redirect(snapshot.get_absolute_url())


@require_GET
@role_required(Role.ADMIN)
def snapshot_detail(request: HttpRequest, snapshot_uuid: UUID) -> HttpResponse:
    snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("created_by"), uuid=snapshot_uuid)
    integrity_error = ""
    groups: dict[str, dict[str, int]] = {}
    try:
        groups = group_counts(load_manifest(snapshot))
    except SnapshotIntegrityError as exc:
        integrity_error = str(exc)
    counts = snapshot.counts or {}
    rows = [{"class": name, "counts": [counts.get(split, {}).get(name, 0) for split in SPLITS]} for name in SIX_CLASSES]
    totals = [sum(counts.get(split, {}).values()) for split in SPLITS]
    return render(
        request,
        "inference/snapshot_detail.html",
        {
            "snapshot": snapshot,
            "splits": SPLITS,
            "rows": rows,
            "totals": totals,
            "groups": [groups.get(split, {}) for split in SPLITS],
            "integrity_error": integrity_error,
            "models": snapshot.model_versions.select_related("trained_by"),
        },
    )
