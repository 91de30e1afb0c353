"""ASGI entry point: HTTP through Django, websockets through Channels (authenticated).

Websocket routes join ``websocket_urlpatterns`` as the apps grow them (job progress first).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cagvlm_site.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from inference.consumers import JobConsumer  # noqa: E402

websocket_urlpatterns: list = [
    # Live progress: every job (the jobs list) and one job (its page).
    path("ws/jobs/", JobConsumer.as_asgi()),
    path("ws/jobs/<uuid:job_uuid>/", JobConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
