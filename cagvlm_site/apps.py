from __future__ import annotations

from django.apps import AppConfig


class CagvlmSiteConfig(AppConfig):
    name = "cagvlm_site"
    verbose_name = "Site, roles and health"
    default_auto_field = "django.db.models.BigAutoField"
