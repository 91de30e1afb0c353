"""Root URLs: pages per app, the REST API with its schema and offline docs, health.

The API docs are Swagger UI from the installed sidecar package. (drf-spectacular's ReDoc page
is left out: its template loads web fonts from the internet, which a hospital browser must not.)
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cagvlm_site import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.health, name="health"),
    path("media/<path:name>", views.media, name="media"),
    # Exams at /exams/, labelling at /label/ (one app, one URL namespace).
    path("", include("annotation.urls")),
    path("", include("inference.urls")),
    path("api/", include("annotation.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("django-admin/", admin.site.urls),
]
