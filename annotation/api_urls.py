"""REST API URLs, mounted at /api/ (namespace ``api``); objects are addressed by UUID."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from annotation import api

app_name = "api"

# Path converters rather than regexes: the viewsets' ``lookup_value_converter = "uuid"`` makes
# a malformed UUID a 404 before any query runs.
router = SimpleRouter(use_regex_path=False)
router.register("exams", api.ExamViewSet, basename="exam")
router.register("loops", api.LoopViewSet, basename="loop")
router.register("documents", api.ClinicalDocumentViewSet, basename="document")

urlpatterns = [
    path("ingest/", api.IngestView.as_view(), name="ingest"),
    *router.urls,
]
