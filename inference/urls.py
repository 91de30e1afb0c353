"""Pages of the inference side: jobs, datasets, the model registry, key frames."""

from __future__ import annotations

from django.urls import path  # noqa: F401  (each section below adds its routes)

app_name = "inference"

urlpatterns: list = [
    # --- jobs (inference/job_views.py) ---
    # --- datasets and the model registry (inference/model_views.py) ---
    # --- key frames (inference/keyframe_views.py) ---
]
