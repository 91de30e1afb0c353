"""Pages of exams and their ingest, mounted at /exams/."""

from __future__ import annotations

from django.urls import path

from annotation import views

app_name = "annotation"

urlpatterns = [
    path("", views.exam_list, name="exam-list"),
    path("upload/", views.upload, name="upload"),
    path("<uuid:exam_uuid>/", views.exam_detail, name="exam-detail"),
]
