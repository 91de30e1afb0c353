"""Site-wide views: the home page per role, the health check and the media files."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import secrets
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from annotation.labels import adjudication_queue
from annotation.models import CineLoop
from cagvlm_site.roles import ALL_ROLES, Role, has_role, is_adjudicator, role_required

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

# Content-addressed folders: a name there never points at other bytes (annotation.derivatives),
# so browsers may keep these files for a year without asking again.
IMMUTABLE_MEDIA_PREFIXES = ("frames/", "dicom/")
# Model weights and dataset manifests (the registry's files) are for admins only: a manifest
# lists every labelled frame, and weights are the hospital's trained artifact.
ADMIN_ONLY_MEDIA_PREFIXES = ("models/", "datasets/")
IMMUTABLE_CACHE_CONTROL = "private, max-age=31536000, immutable"
# Types Python's mimetypes table does not know, or knows inconsistently across platforms.
MEDIA_CONTENT_TYPES = {".webp": "image/webp", ".dcm": "application/dicom"}
HEALTH_CHANNEL_TIMEOUT_S = 2.0
FLAGGED_LOOPS_SHOWN = 10


@require_GET
@role_required(*ALL_ROLES)
def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {}
    if is_adjudicator(request.user):
        context["adjudication_count"] = adjudication_queue().count()
    if has_role(request.user, Role.ADMIN):
        flagged = CineLoop.objects.filter(needs_burned_in_review=True)
        context["burned_in_review_count"] = flagged.count()
        context["burned_in_review_loops"] = flagged.select_related("exam").order_by("created_at")[:FLAGGED_LOOPS_SHOWN]
    return render(request, "home.html", context)


# --- health ---------------------------------------------------------------------------------


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone() != (1,):
            raise RuntimeError("SELECT 1 returned something else")


def _check_storage() -> None:
    payload = secrets.token_bytes(16)
    name = default_storage.save(f"healthz/probe-{secrets.token_hex(8)}.bin", ContentFile(payload))
    try:
        with default_storage.open(name, "rb") as probe:
            if probe.read() != payload:
                raise RuntimeError("the probe file read back different bytes")
    finally:
        default_storage.delete(name)


async def _channel_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    channel = await layer.new_channel()
    nonce = secrets.token_hex(8)
    await layer.send(channel, {"type": "health.probe", "nonce": nonce})
    # A Redis layer that accepted the send but never delivers must not hang the check.
    message = await asyncio.wait_for(layer.receive(channel), timeout=HEALTH_CHANNEL_TIMEOUT_S)
    if message.get("nonce") != nonce:
        raise RuntimeError("the channel layer returned another message")


def _check_channel_layer() -> None:
    async_to_sync(_channel_round_trip)()


HEALTH_CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "storage": _check_storage,
    "channel_layer": _check_channel_layer,
}


@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness of the three things every page depends on; 503 names the part that failed.

    Open to anyone (load balancers do not log in), so a failure is reported by its exception
    class only; the details go to the log.
    """
    results: dict[str, str] = {}
    for part, check in HEALTH_CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.exception("health check of %s failed", part)
            results[part] = f"error: {type(exc).__name__}"
        else:
            results[part] = "ok"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(results, status=200 if healthy else 503)


# --- media ----------------------------------------------------------------------------------


@require_GET
@role_required(*ALL_ROLES)
def media(request: HttpRequest, name: str) -> FileResponse:
    """Files from the default storage, to clinical staff only (they are patient images even
    when de-identified)."""
    if ".." in name or name.startswith(("/", "\\")) or "\x00" in name:
        raise Http404("No such file.")
    if name.startswith(ADMIN_ONLY_MEDIA_PREFIXES) and not has_role(request.user, Role.ADMIN):
        raise PermissionDenied("Model weights and dataset manifests are for admins.")
    if not default_storage.exists(name):
        raise Http404("No such file.")
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, IsADirectoryError):
        # exists() is true for a folder on the file system storage.
        raise Http404("No such file.") from None
    suffix = PurePosixPath(name).suffix.lower()
    content_type = MEDIA_CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    if name.startswith(IMMUTABLE_MEDIA_PREFIXES):
        response["Cache-Control"] = IMMUTABLE_CACHE_CONTROL
    else:
        response["Cache-Control"] = "private, no-cache"
    return response
