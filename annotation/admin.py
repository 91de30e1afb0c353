"""Django admin for the labelling: projects are edited here and on the label data page;
labels, their audit trail and final labels are shown read-only (they change only through
``annotation.labels``, which keeps versions, audit events and final labels consistent)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from annotation.models import AnnotationProject, FinalLabel, FrameLabel, LabelEvent


@admin.register(AnnotationProject)
class AnnotationProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "mode", "labels_required", "is_default")
    readonly_fields = ("is_default",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or not obj.is_default


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FrameLabel)
class FrameLabelAdmin(ReadOnlyAdmin):
    list_display = ("frame", "physician", "laterality", "category", "version", "withdrawn_at", "updated_at")
    list_filter = ("laterality", "category")
    list_select_related = ("frame", "physician")


@admin.register(LabelEvent)
class LabelEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "label")
    list_filter = ("action",)
    list_select_related = ("actor", "label")


@admin.register(FinalLabel)
class FinalLabelAdmin(ReadOnlyAdmin):
    list_display = ("frame", "laterality", "category", "method", "decided_by", "decided_at")
    list_filter = ("method", "laterality", "category")
    list_select_related = ("frame", "decided_by")
