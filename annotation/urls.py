"""Pages of the annotation app: exams and their ingest under /exams/, labelling under /label/."""

from __future__ import annotations

from django.urls import path

from annotation import label_views, views

app_name = "annotation"

urlpatterns = [
    path("exams/", views.exam_list, name="exam-list"),
    path("exams/upload/", views.upload, name="upload"),
    path("exams/<uuid:exam_uuid>/", views.exam_detail, name="exam-detail"),
    path("label/", label_views.worklist, name="worklist"),
    path("label/loops/<uuid:loop_uuid>/", label_views.viewer, name="viewer"),
    path("label/adjudication/", label_views.adjudication_queue_page, name="adjudication"),
    path("label/adjudication/<uuid:frame_uuid>/", label_views.adjudication_decide, name="adjudication-decide"),
    path("label/agreement/", label_views.agreement, name="agreement"),
    path("label/agreement/confusion.png", label_views.agreement_confusion, name="agreement-confusion"),
    path("label/audit/", label_views.audit, name="audit"),
    path("label/data/", label_views.label_data, name="label-data"),
]
