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
    # Labelling
    path("worklist/", api.WorklistView.as_view(), name="worklist"),
    path("loops/<uuid:uuid>/workspace/", api.WorkspaceView.as_view(), name="loop-workspace"),
    path("frames/<uuid:uuid>/state/", api.FrameStateView.as_view(), name="frame-state"),
    path("frames/<uuid:uuid>/my-label/", api.MyLabelView.as_view(), name="frame-my-label"),
    path("frames/<uuid:uuid>/adjudicate/", api.AdjudicateView.as_view(), name="frame-adjudicate"),
    path("labels/", api.LabelListView.as_view(), name="label-list"),
    path("labels/undo/", api.UndoView.as_view(), name="label-undo"),
    path("labels/import/", api.LabelImportView.as_view(), name="label-import"),
    path("final-labels/", api.FinalLabelListView.as_view(), name="final-label-list"),
    path("final-labels/export.csv", api.FinalLabelCsvExportView.as_view(), name="final-label-export-csv"),
    path("final-labels/export.json", api.FinalLabelJsonExportView.as_view(), name="final-label-export-json"),
    path("adjudication/", api.AdjudicationQueueView.as_view(), name="adjudication-queue"),
    path("agreement/", api.AgreementView.as_view(), name="agreement"),
    *router.urls,
]
