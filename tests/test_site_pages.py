"""Site pages: home per role, login and logout, health, media; every visitor for each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

from cagvlm_site import views as site_views
from tests.conftest import visit_as
from tests.factories import CineLoopFactory

ROLE_VISITORS = ["physician", "cardiologist", "admin"]
ALL_VISITORS = ["anonymous", "no_role", *ROLE_VISITORS]


def assert_sent_to_login(response, path: str) -> None:
    assert response.status_code == 302
    assert response["Location"].startswith(f"/login/?next={path}")


def assert_refused_for_no_role(response) -> None:
    assert response.status_code == 403
    assert "holds no role" in response.content.decode()


# --- home -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_home_access_per_visitor(client, users_by_role, visitor):
    response = visit_as(client, users_by_role, visitor).get("/")
    if visitor == "anonymous":
        assert_sent_to_login(response, "/")
    elif visitor == "no_role":
        assert_refused_for_no_role(response)
    else:
        assert response.status_code == 200
        page = response.content.decode()
        assert "CAG-VLM" in page
        assert users_by_role[visitor].username in page


def test_home_header_shows_role_badge_and_logout_as_post_form(client, physician):
    client.force_login(physician)
    page = client.get("/").content.decode()
    assert '<span class="role-badge">Physician</span>' in page
    assert '<form method="post" action="/logout/"' in page


def test_physician_home_offers_labelling_and_upload_but_no_admin_tools(client, physician):
    client.force_login(physician)
    page = client.get("/").content.decode()
    assert "Label frames" in page
    assert 'href="/exams/"' in page
    assert 'href="/exams/upload/"' in page
    assert "Burned-in annotation check" not in page
    assert 'href="/django-admin/"' not in page


def test_cardiologist_home_says_reviews_are_not_there_yet_and_offers_no_upload(client, cardiologist):
    client.force_login(cardiologist)
    page = client.get("/").content.decode()
    assert "Review AI drafts" in page
    assert "not available yet" in page
    assert 'href="/exams/"' in page
    assert 'href="/exams/upload/"' not in page
    assert 'href="/api/docs/"' not in page


def test_admin_home_counts_loops_awaiting_burned_in_check_and_links_tools(client, admin_user):
    CineLoopFactory(frames=0, needs_burned_in_review=True, burned_in_annotation="YES")
    CineLoopFactory(frames=0, needs_burned_in_review=True, burned_in_annotation="YES")
    CineLoopFactory(frames=0)
    client.force_login(admin_user)
    response = client.get("/")
    page = response.content.decode()
    assert response.context["burned_in_review_count"] == 2
    assert '<p class="big-number big-number--warning">2</p>' in page
    for href in ("/exams/upload/", "/exams/", "/api/docs/", "/django-admin/"):
        assert f'href="{href}"' in page


# --- login and logout -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_login_page_is_open_to_every_visitor(client, users_by_role, visitor):
    response = visit_as(client, users_by_role, visitor).get("/login/")
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_login_with_right_password_lands_on_home(client, physician):
    response = client.post("/login/", {"username": physician.username, "password": "pw-" + physician.username})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_with_wrong_password_stays_on_login_page_with_error(client, physician):
    response = client.post("/login/", {"username": physician.username, "password": "wrong"})
    assert response.status_code == 200
    assert 'class="alert alert--error"' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_logout_by_post_ends_the_session(client, users_by_role, visitor):
    visit_as(client, users_by_role, visitor)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert_sent_to_login(client.get("/"), "/")


def test_logout_by_get_is_refused(client, physician):
    client.force_login(physician)
    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200


# --- health ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_health_reports_all_parts_ok_to_every_visitor(client, users_by_role, visitor):
    response = visit_as(client, users_by_role, visitor).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "storage": "ok", "channel_layer": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_health_leaves_no_probe_file_behind(client, media_root: Path):
    assert client.get("/healthz").status_code == 200
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


@pytest.mark.django_db
def test_health_names_failing_storage_with_503(client, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(FileSystemStorage, "save", broken_save)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "storage": "error: OSError", "channel_layer": "ok"}


@pytest.mark.django_db
def test_health_names_failing_channel_layer_with_503(client, settings, monkeypatch):
    # A layer whose receive never returns: the check must time out rather than hang.
    monkeypatch.setattr(site_views, "HEALTH_CHANNEL_TIMEOUT_S", 0.05)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_site_pages.SilentChannelLayer"}}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["channel_layer"] == "error: TimeoutError"
    assert response.json()["database"] == "ok"


class SilentChannelLayer:
    """Accepts every message and delivers none."""

    def __init__(self, **kwargs: object) -> None:
        pass

    async def new_channel(self) -> str:
        return "specific.silent!probe"

    async def send(self, channel: str, message: dict) -> None:
        pass

    async def receive(self, channel: str) -> dict:
        await asyncio.Event().wait()
        return {}


# --- media ----------------------------------------------------------------------------------


def store(name: str, payload: bytes) -> str:
    saved = default_storage.save(name, ContentFile(payload))
    assert saved == name
    return saved


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_media_access_per_visitor(client, users_by_role, visitor):
    name = store("frames/ab/cd/abcd.webp", b"RIFF-not-really-webp")
    response = visit_as(client, users_by_role, visitor).get(f"/media/{name}")
    if visitor == "anonymous":
        assert_sent_to_login(response, f"/media/{name}")
    elif visitor == "no_role":
        assert_refused_for_no_role(response)
    else:
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"RIFF-not-really-webp"


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
@pytest.mark.parametrize("name", ["models/keyframe_cnn/ab/cd/abcd.safetensors", "datasets/ab/cd/abcd.json"])
def test_model_weights_and_dataset_manifests_are_for_admins_only(client, users_by_role, visitor, name):
    store(name, b"registry file")
    response = visit_as(client, users_by_role, visitor).get(f"/media/{name}")
    if visitor == "anonymous":
        assert_sent_to_login(response, f"/media/{name}")
    elif visitor == "admin":
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"registry file"
    else:
        assert response.status_code == 403


def test_media_serves_a_frame_as_immutable_webp(client, physician):
    loop = CineLoopFactory(frames=1)
    frame = loop.frames.get()
    client.force_login(physician)
    response = client.get(frame.image.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"
    with default_storage.open(frame.image.name, "rb") as stored:
        assert b"".join(response.streaming_content) == stored.read()


def test_media_serves_dicom_with_its_content_type(client, cardiologist):
    loop = CineLoopFactory(frames=0)
    client.force_login(cardiologist)
    response = client.get(loop.dicom_file.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom"
    assert "immutable" in response["Cache-Control"]


def test_media_outside_content_addressed_folders_is_not_cached_forever(client, admin_user):
    store("exports/snapshot.json", b"{}")
    client.force_login(admin_user)
    response = client.get("/media/exports/snapshot.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "immutable" not in response["Cache-Control"]


def test_media_refuses_dot_dot_even_when_the_target_exists(client, physician, media_root: Path):
    store("secret.txt", b"inside the storage root")
    (media_root.parent / "outside.txt").write_bytes(b"outside the storage root")
    client.force_login(physician)
    assert client.get("/media/secret.txt").status_code == 200
    assert client.get("/media/frames/../secret.txt").status_code == 404
    assert client.get("/media/frames/%2e%2e/secret.txt").status_code == 404
    assert client.get("/media/../outside.txt").status_code == 404


def test_media_refuses_absolute_names(client, physician):
    client.force_login(physician)
    assert client.get("/media//etc/passwd").status_code == 404


def test_media_missing_file_or_folder_is_404(client, physician):
    store("frames/ab/cd/abcd.webp", b"RIFF")
    client.force_login(physician)
    assert client.get("/media/frames/ab").status_code == 404
    response = client.get("/media/frames/00/00/missing.webp")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()
