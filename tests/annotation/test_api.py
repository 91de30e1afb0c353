"""REST API: access per role for every endpoint and method, and what each endpoint does."""

from __future__ import annotations

import io
import random
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import CineLoop, ClinicalDocument, DocumentKind, DocumentLanguage, Exam
from tests.factories import CineLoopFactory, ClinicalDocumentFactory, ExamFactory

ROLES = ["anonymous", "no_role", "physician", "cardiologist", "admin"]
REFUSED = {"anonymous": (401, 403), "no_role": (403,)}


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def assert_status(response, expected: int | tuple[int, ...]) -> None:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert response.status_code in allowed, (response.status_code, getattr(response, "data", response.content))


def upload(name: str, payload: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, payload, content_type="application/octet-stream")


def junk_bytes(size: int = 4096) -> bytes:
    return random.Random(7).randbytes(size)


@pytest.fixture
def loop(db) -> CineLoop:
    loop = CineLoopFactory(frame_count=12, frames=12)
    ClinicalDocumentFactory(exam=loop.exam)
    return loop


# --- access per role -------------------------------------------------------------------------

READ_ENDPOINTS = {
    "exam list": lambda loop: reverse("api:exam-list"),
    "exam detail": lambda loop: reverse("api:exam-detail", kwargs={"uuid": loop.exam.uuid}),
    "loop list": lambda loop: reverse("api:loop-list"),
    "loop detail": lambda loop: reverse("api:loop-detail", kwargs={"uuid": loop.uuid}),
    "loop frames": lambda loop: reverse("api:loop-frames", kwargs={"uuid": loop.uuid}),
    "document list": lambda loop: reverse("api:document-list"),
    "document detail": lambda loop: reverse("api:document-detail", kwargs={"uuid": loop.exam.documents.get().uuid}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(READ_ENDPOINTS))
def test_reading_is_for_the_three_roles(users_by_role, loop, role, endpoint):
    response = client_for(users_by_role[role]).get(READ_ENDPOINTS[endpoint](loop))

    assert_status(response, REFUSED.get(role, 200))
    if role in REFUSED:
        assert "results" not in response.data
        assert "uuid" not in response.data


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", (401, 403)), ("no_role", 403), ("physician", 201), ("cardiologist", 403), ("admin", 201)],
)
def test_documents_are_written_by_admins_and_physicians(users_by_role, role, expected):
    exam = ExamFactory()

    response = client_for(users_by_role[role]).post(
        reverse("api:document-list"),
        {"exam": str(exam.uuid), "kind": "diagnosis_summary", "language": "en", "text": "Single-vessel disease."},
        format="json",
    )

    assert_status(response, expected)
    assert ClinicalDocument.objects.filter(exam=exam).exists() == (expected == 201)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", (401, 403)), ("no_role", 403), ("physician", 403), ("cardiologist", 200), ("admin", 200)],
)
def test_documents_are_validated_by_admins_and_cardiologists(users_by_role, role, expected):
    document = ClinicalDocumentFactory()

    response = client_for(users_by_role[role]).post(reverse("api:document-validate", kwargs={"uuid": document.uuid}))

    assert_status(response, expected)
    document.refresh_from_db()
    assert document.is_validated == (expected == 200)
    if expected == 200:
        assert document.validated_by == users_by_role[role]
        assert response.data["validated_by"] == users_by_role[role].username


@pytest.mark.parametrize(
    ("role", "expected"),
    # A file that is not DICOM: the admitted roles get its per-file report (422), the others
    # are refused before anything is read.
    [("anonymous", (401, 403)), ("no_role", 403), ("physician", 422), ("cardiologist", 403), ("admin", 422)],
)
def test_ingest_is_for_admins_and_physicians(users_by_role, role, expected):
    response = client_for(users_by_role[role]).post(
        reverse("api:ingest"), {"files": [upload("noise.dcm", junk_bytes())]}, format="multipart"
    )

    assert_status(response, expected)
    if expected == 422:
        assert response.data["results"][0]["outcome"] == "rejected"
    else:
        assert "results" not in response.data


UNSUPPORTED = [
    ("put", "exam detail"),
    ("patch", "exam detail"),
    ("delete", "exam detail"),
    ("post", "exam list"),
    ("put", "loop detail"),
    ("delete", "loop detail"),
    ("post", "loop list"),
    ("post", "loop frames"),
    ("put", "document detail"),
    ("patch", "document detail"),
    ("delete", "document detail"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "endpoint"), UNSUPPORTED)
def test_nothing_is_changed_through_unsupported_methods(users_by_role, loop, role, method, endpoint):
    document = loop.exam.documents.get()
    url = READ_ENDPOINTS[endpoint](loop)

    response = getattr(client_for(users_by_role[role]), method)(url, {"text": "changed"}, format="json")

    assert_status(response, REFUSED.get(role, 405))
    assert CineLoop.objects.filter(pk=loop.pk).exists()
    assert ClinicalDocument.objects.get(pk=document.pk).text == document.text


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "url_name"), [("get", "api:ingest"), ("get", "api:document-validate"), ("get", "api:document-list")]
)
def test_unsupported_methods_on_write_endpoints(users_by_role, role, method, url_name):
    document = ClinicalDocumentFactory()
    kwargs = {"uuid": document.uuid} if url_name == "api:document-validate" else {}
    url = reverse(url_name, kwargs=kwargs)
    expected: dict[str, int | tuple[int, ...]] = {
        # Listing documents is a read: every role may.
        "api:document-list": 200,
        "api:ingest": 405 if role in ("physician", "admin") else 403,
        # The role check of validation belongs to POST; any other method is simply not there.
        "api:document-validate": 405,
    }

    response = getattr(client_for(users_by_role[role]), method)(url)

    assert_status(response, REFUSED.get(role, expected[url_name]))


def test_malformed_uuid_in_path_is_not_found(physician):
    response = client_for(physician).get("/api/loops/not-a-uuid/")

    assert response.status_code == 404


# --- exams -----------------------------------------------------------------------------------


def test_exam_list_shows_pseudonym_and_loop_count(physician):
    exam = ExamFactory()
    CineLoopFactory.create_batch(2, exam=exam, frames=0)

    response = client_for(physician).get(reverse("api:exam-list"))

    assert response.status_code == 200
    [row] = response.data["results"]
    assert row["uuid"] == str(exam.uuid)
    assert row["patient"] == exam.patient.pseudonym[:12]
    assert row["loop_count"] == 2
    assert row["url"].endswith(reverse("api:exam-detail", kwargs={"uuid": exam.uuid}))
    assert "id" not in row


def test_exam_detail_lists_its_loops_and_documents(cardiologist, loop):
    response = client_for(cardiologist).get(reverse("api:exam-detail", kwargs={"uuid": loop.exam.uuid}))

    assert response.status_code == 200
    assert [item["uuid"] for item in response.data["loops"]] == [str(loop.uuid)]
    assert response.data["loops"][0]["projection_label"] == "RAO 30 / CRA 20"
    assert [item["kind"] for item in response.data["documents"]] == ["pre_procedure_report"]


# --- loops and frames ------------------------------------------------------------------------


def test_loop_detail_describes_acquisition(physician, loop):
    response = client_for(physician).get(reverse("api:loop-detail", kwargs={"uuid": loop.uuid}))

    data = response.json()
    assert data["exam"] == str(loop.exam.uuid)
    assert data["frame_count"] == 12
    assert data["frame_rate"] == pytest.approx(1000 / 66.7)
    assert data["transfer_syntax_name"] == "Explicit VR Little Endian"
    assert data["projection_label"] == "RAO 30 / CRA 20"


def test_loop_list_filters_by_exam(physician):
    wanted, other = CineLoopFactory(frames=0), CineLoopFactory(frames=0)
    client = client_for(physician)

    filtered = client.get(reverse("api:loop-list"), {"exam": str(wanted.exam.uuid)})
    everything = client.get(reverse("api:loop-list"))
    malformed = client.get(reverse("api:loop-list"), {"exam": "RCA"})

    assert [row["uuid"] for row in filtered.data["results"]] == [str(wanted.uuid)]
    assert {row["uuid"] for row in everything.data["results"]} == {str(wanted.uuid), str(other.uuid)}
    assert malformed.status_code == 400
    assert "exam" in malformed.data


@pytest.mark.parametrize("role", ["physician", "cardiologist", "admin"])
def test_dicom_url_is_given_to_admins_only(users_by_role, loop, role):
    client = client_for(users_by_role[role])

    detail = client.get(reverse("api:loop-detail", kwargs={"uuid": loop.uuid})).data
    listed = client.get(reverse("api:loop-list")).data["results"][0]

    for data in (detail, listed):
        if role == "admin":
            assert data["dicom_url"] == "http://testserver" + loop.dicom_file.url
        else:
            assert "dicom_url" not in data


def test_frames_come_in_index_order_and_filter_by_sampling(physician, loop):
    client = client_for(physician)
    url = reverse("api:loop-frames", kwargs={"uuid": loop.uuid})

    every = client.get(url)
    sampled = client.get(url, {"sampled": "true"})
    not_sampled = client.get(url, {"sampled": "false"})
    bad = client.get(url, {"sampled": "maybe"})

    assert [frame["index"] for frame in every.data] == list(range(12))
    assert every.data[3]["image_url"] == "http://testserver" + loop.frames.get(index=3).image.url
    assert [frame["index"] for frame in sampled.data] == [0, 5, 10]
    assert all(frame["is_sampled"] for frame in sampled.data)
    assert len(not_sampled.data) == 9
    assert bad.status_code == 400


def test_frame_list_queries_do_not_grow_with_frame_count(physician, django_assert_max_num_queries):
    short = CineLoopFactory(frame_count=10, frames=10)
    long = CineLoopFactory(frame_count=200, frames=200)
    client = client_for(physician)

    with CaptureQueriesContext(connection) as for_short:
        assert len(client.get(reverse("api:loop-frames", kwargs={"uuid": short.uuid})).data) == 10
    with django_assert_max_num_queries(len(for_short)):
        assert len(client.get(reverse("api:loop-frames", kwargs={"uuid": long.uuid})).data) == 200


def test_frames_of_unknown_loop_are_not_found(physician):
    response = client_for(physician).get("/api/loops/00000000-0000-0000-0000-000000000000/frames/")

    assert response.status_code == 404


# --- documents -------------------------------------------------------------------------------


def test_document_list_filters_by_exam_kind_and_language(cardiologist):
    exam = ExamFactory()
    japanese = ClinicalDocumentFactory(exam=exam, language=DocumentLanguage.JAPANESE)
    english = ClinicalDocumentFactory(exam=exam, language=DocumentLanguage.ENGLISH)
    summary = ClinicalDocumentFactory(exam=exam, kind=DocumentKind.DIAGNOSIS_SUMMARY)
    elsewhere = ClinicalDocumentFactory()
    client = client_for(cardiologist)

    def listed(**params: str) -> set[str]:
        response = client.get(reverse("api:document-list"), params)
        assert response.status_code == 200
        return {row["uuid"] for row in response.data["results"]}

    assert listed() == {str(d.uuid) for d in (japanese, english, summary, elsewhere)}
    assert listed(exam=str(exam.uuid)) == {str(d.uuid) for d in (japanese, english, summary)}
    assert listed(exam=str(exam.uuid), kind="pre_procedure_report", language="en") == {str(english.uuid)}
    assert listed(language="ja") == {str(japanese.uuid)}


@pytest.mark.parametrize("params", [{"kind": "letter"}, {"language": "fr"}, {"exam": "123"}])
def test_document_list_refuses_unknown_filter_values(cardiologist, params):
    response = client_for(cardiologist).get(reverse("api:document-list"), params)

    assert response.status_code == 400
    assert list(params) == list(response.data)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"kind": "discharge_letter"}, "kind", "not a document kind"),
        ({"language": "de"}, "language", "not a language"),
        ({"exam": "00000000-0000-0000-0000-000000000000"}, "exam", "No exam with UUID"),
        ({"exam": "exam-1"}, "exam", "Give the exam as its UUID"),
        ({"text": ""}, "text", "blank"),
    ],
)
def test_invalid_document_is_refused_with_a_clear_message(physician, change, field, message):
    exam = ExamFactory()
    body = {"exam": str(exam.uuid), "kind": "pre_procedure_report", "language": "en", "text": "Stable angina."}

    response = client_for(physician).post(reverse("api:document-list"), {**body, **change}, format="json")

    assert response.status_code == 400
    assert message in str(response.data[field][0])
    assert not ClinicalDocument.objects.exists()


def test_duplicate_document_is_refused_with_a_clear_message(physician):
    existing = ClinicalDocumentFactory(kind=DocumentKind.TREATMENT_PLAN, language=DocumentLanguage.JAPANESE)
    body = {"exam": str(existing.exam.uuid), "kind": "treatment_plan", "language": "ja", "text": "PCI予定。"}

    response = client_for(physician).post(reverse("api:document-list"), body, format="json")

    assert response.status_code == 400
    assert "already has a treatment plan" in str(response.data)
    assert ClinicalDocument.objects.get().text == existing.text


# --- ingest ----------------------------------------------------------------------------------


def ingest(client: APIClient, *files: SimpleUploadedFile):
    return client.post(reverse("api:ingest"), {"files": list(files)}, format="multipart")


def test_ingest_of_a_real_cine_loop_and_its_duplicate(physician, xa_dir: Path):
    client = client_for(physician)
    payload = (xa_dir / "0002.DCM").read_bytes()

    first = ingest(client, upload("0002.DCM", payload))

    assert first.status_code == 200, first.data
    assert first.data["ok"] is True
    [result] = first.data["results"]
    assert result["outcome"] == "ingested"
    assert result["name"] == "0002.DCM"
    loop = client.get(reverse("api:loop-detail", kwargs={"uuid": result["loop"]})).json()
    assert loop["frame_count"] == 96
    assert loop["projection_label"] == "RAO 32 / CRA 2"
    assert loop["exam"] == result["exam"]
    frames = client.get(reverse("api:loop-frames", kwargs={"uuid": result["loop"]})).data
    assert len(frames) == 96

    again = ingest(client, upload("0002.DCM", payload))

    assert again.status_code == 200
    assert again.data["results"][0]["outcome"] == "duplicate"
    assert again.data["results"][0]["loop"] == result["loop"]
    assert CineLoop.objects.count() == 1


def test_zip_with_a_bad_member_is_reported_and_the_good_one_kept(admin_user, xa_dir: Path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("run1/0002.DCM", (xa_dir / "0002.DCM").read_bytes())
        bundle.writestr("run1/broken.dcm", junk_bytes())

    response = ingest(client_for(admin_user), upload("cath-lab.zip", archive.getvalue()))

    assert response.status_code == 422
    assert response.data["ok"] is False
    assert "1 ingested" in response.data["summary"]
    assert "1 rejected" in response.data["summary"]
    by_name = {result["name"]: result for result in response.data["results"]}
    good, bad = by_name["cath-lab.zip!run1/0002.DCM"], by_name["cath-lab.zip!run1/broken.dcm"]
    assert good["outcome"] == "ingested"
    assert bad["outcome"] == "rejected"
    assert bad["message"]
    assert bad["loop"] is None
    assert bad["exam"] is None
    assert list(CineLoop.objects.values_list("uuid", flat=True)) == [UUID(good["loop"])]


def test_ingest_without_files_is_refused(physician):
    response = client_for(physician).post(reverse("api:ingest"), {}, format="multipart")

    assert response.status_code == 400
    assert "files" in response.data["detail"]


def test_document_posted_for_an_ingested_exam_is_scrubbed(physician, xa_dir: Path):
    client = client_for(physician)
    ingested = ingest(client, upload("0002.DCM", (xa_dir / "0002.DCM").read_bytes()))
    exam_uuid = ingested.data["results"][0]["exam"]
    text = "Rubo DEMO (ID 556342B), 65-year-old man with exertional angina. Mr Demo is referred for CAG."

    response = client.post(
        reverse("api:document-list"),
        {"exam": exam_uuid, "kind": "pre_procedure_report", "language": "en", "text": text},
        format="json",
    )

    assert response.status_code == 201, response.data
    stored = Exam.objects.get(uuid=exam_uuid).documents.get()
    for document_text in (stored.text, response.data["text"]):
        assert "rubo" not in document_text.lower()
        assert "demo" not in document_text.lower()
        assert "556342B" not in document_text
        assert "exertional angina" in document_text
    assert stored.text.count("[REDACTED]") == 4
    assert stored.author == physician
    assert response.data["author"] == physician.username


# --- schema and docs -------------------------------------------------------------------------


def test_openapi_schema_is_served(physician):
    response = client_for(physician).get(reverse("api-schema"), {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    for expected in (
        "/api/exams/",
        "/api/exams/{uuid}/",
        "/api/loops/",
        "/api/loops/{uuid}/",
        "/api/loops/{uuid}/frames/",
        "/api/documents/",
        "/api/documents/{uuid}/",
        "/api/documents/{uuid}/validate/",
        "/api/ingest/",
    ):
        assert expected in paths


def test_api_docs_page_loads_with_local_assets_only(physician):
    response = client_for(physician).get(reverse("api-docs"))

    assert response.status_code == 200
    html = response.content.decode()
    external = [url for url in re.findall(r"https?://[^\s\"'<>)]+", html) if urlsplit(url).hostname != "testserver"]
    assert external == []
    assets = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"([^\"]+)\"", html)
    assert len(assets) >= 3  # the Swagger UI stylesheet and its two scripts
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of this install"
