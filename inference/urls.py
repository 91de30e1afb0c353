"""Pages of the inference side: jobs, datasets, the model registry, key frames."""

from __future__ import annotations

from django.urls import path

from inference import job_views, keyframe_views, model_views

app_name = "inference"

urlpatterns: list = [
    # --- jobs (inference/job_views.py) ---
    path("jobs/", job_views.job_list, name="job-list"),
    path("jobs/state.json", job_views.job_list_state, name="job-list-state"),
    path("jobs/<uuid:job_uuid>/", job_views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_uuid>/state.json", job_views.job_state_json, name="job-state"),
    path("jobs/<uuid:job_uuid>/cancel/", job_views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:job_uuid>/resume/", job_views.job_resume, name="job-resume"),
    # --- datasets and the model registry (inference/model_views.py) ---
    path("models/", model_views.model_list, name="model-list"),
    path("models/train/", model_views.model_train, name="model-train"),
    path("models/compare/", model_views.model_compare, name="model-compare"),
    path("models/<uuid:model_uuid>/", model_views.model_detail, name="model-detail"),
    path("models/<uuid:model_uuid>/artifacts/<str:name>", model_views.model_artifact, name="model-artifact"),
    path("models/<uuid:model_uuid>/activate/", model_views.model_activate, name="model-activate"),
    path("models/<uuid:model_uuid>/rollback/", model_views.model_rollback, name="model-rollback"),
    path("datasets/", model_views.snapshot_list, name="snapshot-list"),
    path("datasets/new/", model_views.snapshot_create, name="snapshot-create"),
    path("datasets/<uuid:snapshot_uuid>/", model_views.snapshot_detail, name="snapshot-detail"),
    # --- key frames (inference/keyframe_views.py) ---
    path("exams/<uuid:exam_uuid>/key-frames/add/", keyframe_views.key_frame_add, name="key-frame-add"),
    path("exams/<uuid:exam_uuid>/key-frames/remove/", keyframe_views.key_frame_remove, name="key-frame-remove"),
]
