"""Django admin for the inference side, read-only: jobs, snapshots, model versions and their
activation history change only through ``inference.jobs``, ``inference.datasets`` and
``inference.registry``, which keep the files, hashes and the one-active-version rule
consistent."""

from __future__ import annotations

from django.contrib import admin

from annotation.admin import ReadOnlyAdmin
from inference.models import DatasetSnapshot, Job, KeyFrame, KeyFrameOverride, ModelActivation, ModelVersion


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("uuid", "kind", "status", "progress", "step", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    list_select_related = ("created_by",)


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "frame_count", "seed", "manifest_sha256", "created_by", "created_at")
    list_filter = ("kind",)
    list_select_related = ("created_by",)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("kind", "version", "architecture", "is_active", "snapshot", "trained_by", "created_at")
    list_filter = ("kind", "is_active", "architecture")
    list_select_related = ("snapshot", "trained_by")


@admin.register(ModelActivation)
class ModelActivationAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "action", "model_version", "previous", "by")
    list_filter = ("kind", "action")
    list_select_related = ("model_version", "previous", "by")


@admin.register(KeyFrame)
class KeyFrameAdmin(ReadOnlyAdmin):
    list_display = ("exam", "frame", "laterality", "score", "origin", "model_version", "excluded_at")
    list_filter = ("laterality", "origin")
    list_select_related = ("exam", "frame", "model_version")


@admin.register(KeyFrameOverride)
class KeyFrameOverrideAdmin(ReadOnlyAdmin):
    list_display = ("at", "exam", "frame", "action", "by")
    list_filter = ("action",)
    list_select_related = ("exam", "frame", "by")
