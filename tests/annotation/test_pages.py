"""Exam list, exam page and upload: every visitor for each, and what a user sees on them."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import CineLoop, DocumentKind, DocumentLanguage, Exam, Frame, Patient
from tests.conftest import visit_as
from tests.factories import CineLoopFactory, ClinicalDocumentFactory, ExamFactory

ALL_VISITORS = ["anonymous", "no_role", "physician", "cardiologist", "admin"]
EXAM_READERS = {"physician", "cardiologist", "admin"}
UPLOADERS = {"physician", "admin"}


def assert_access(response, visitor: str, allowed: set[str], path: str) -> None:
    if visitor == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(f"/login/?next={path}")
    elif visitor in allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "Access refused" in response.content.decode()


def random_bytes_upload(name: str = "noise.dcm") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, os.urandom(4096), content_type="application/octet-stream")


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()]


# --- access per visitor ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_exam_list_access(client, users_by_role, visitor):
    response = visit_as(client, users_by_role, visitor).get("/exams/")
    assert_access(response, visitor, EXAM_READERS, "/exams/")


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_exam_detail_access(client, users_by_role, visitor):
    exam = CineLoopFactory(frames=3).exam
    path = f"/exams/{exam.uuid}/"
    response = visit_as(client, users_by_role, visitor).get(path)
    assert_access(response, visitor, EXAM_READERS, path)


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_upload_form_access(client, users_by_role, visitor):
    response = visit_as(client, users_by_role, visitor).get("/exams/upload/")
    assert_access(response, visitor, UPLOADERS, "/exams/upload/")


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_upload_post_access(client, users_by_role, visitor, media_root):
    response = visit_as(client, users_by_role, visitor).post("/exams/upload/", {"files": [random_bytes_upload()]})
    assert_access(response, visitor, UPLOADERS, "/exams/upload/")
    if visitor in UPLOADERS:
        assert "rejected" in response.content.decode()
    assert CineLoop.objects.count() == 0
    assert stored_files(media_root) == []


def test_cardiologist_cannot_ingest_a_real_file(client, cardiologist, xa_dir):
    client.force_login(cardiologist)
    with (xa_dir / "0002.DCM").open("rb") as dicom:
        response = client.post("/exams/upload/", {"files": [dicom]})
    assert response.status_code == 403
    assert CineLoop.objects.count() == 0


def test_unknown_exam_is_404(client, physician):
    client.force_login(physician)
    response = client.get(f"/exams/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()


# --- exam list ------------------------------------------------------------------------------


def test_exam_list_shows_counts_newest_first_with_thumbnail(client, physician):
    older = ExamFactory(study_date=date(2021, 3, 1), patient_sex="F", patient_age_years=58)
    newer = ExamFactory(study_date=date(2023, 7, 9), patient_sex="M", patient_age_years=71)
    first = CineLoopFactory(exam=newer, series_number=1, frame_count=10)
    CineLoopFactory(exam=newer, series_number=2, frame_count=4)
    ClinicalDocumentFactory(exam=newer, language=DocumentLanguage.ENGLISH)
    ClinicalDocumentFactory(exam=newer, language=DocumentLanguage.JAPANESE, text="労作時胸痛。")
    client.force_login(physician)

    response = client.get("/exams/")

    page = response.content.decode()
    assert page.index(str(newer.uuid)[:8]) < page.index(str(older.uuid)[:8])
    assert newer.patient.pseudonym[:12] in page
    assert newer.patient.pseudonym[:13] not in page
    assert "2023-07-09" in page
    assert "M / 71 y" in page
    row = next(exam for exam in response.context["page"] if exam.pk == newer.pk)
    # 14 frames, of which indexes 0 and 5 of the first loop and 0 of the second are sampled.
    assert (row.loop_count, row.frame_total, row.sampled_total, row.document_count) == (2, 14, 3, 2)
    middle = first.frames.get(index=5)
    assert f'src="{middle.image.url}"' in page
    assert "no image" in page  # the older exam has no loop


def test_exam_list_pages_by_fifty(client, cardiologist):
    ExamFactory.create_batch(51)
    client.force_login(cardiologist)
    first_page = client.get("/exams/")
    assert len(first_page.context["page"].object_list) == 50
    assert 'href="?page=2"' in first_page.content.decode()
    second_page = client.get("/exams/?page=2")
    assert len(second_page.context["page"].object_list) == 1


def test_exam_list_htmx_page_change_returns_only_the_table(client, admin_user):
    ExamFactory.create_batch(51)
    client.force_login(admin_user)
    response = client.get("/exams/?page=2", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="exam-table">')
    assert "<html" not in page
    assert "Page 2 of 2" in page


def test_exam_list_queries_do_not_grow_with_exams_and_loops(client, physician, django_assert_max_num_queries):
    client.force_login(physician)
    for _ in range(2):
        CineLoopFactory(frames=3)
    with CaptureQueriesContext(connection) as small:
        client.get("/exams/")
    for _ in range(20):
        exam = ExamFactory()
        CineLoopFactory.create_batch(3, exam=exam, frames=3)
        ClinicalDocumentFactory(exam=exam)
    with django_assert_max_num_queries(len(small)):
        response = client.get("/exams/")
    assert len(response.context["page"].object_list) == 22


# --- exam page ------------------------------------------------------------------------------


def test_exam_page_shows_loops_with_projection_thumbnails_and_sampled_strip(client, cardiologist):
    exam = ExamFactory()
    rao = CineLoopFactory(
        exam=exam, series_number=1, frame_count=20, positioner_primary_angle=-32, positioner_secondary_angle=2
    )
    lao = CineLoopFactory(
        exam=exam,
        series_number=2,
        frame_count=12,
        positioner_primary_angle=77,
        positioner_secondary_angle=-45,
        transfer_syntax_uid="1.2.840.10008.1.2.4.70",
    )
    client.force_login(cardiologist)

    page = client.get(exam.get_absolute_url()).content.decode()

    assert "RAO 32 / CRA 2" in page
    assert "LAO 77 / CAU 45" in page
    assert page.index("RAO 32 / CRA 2") < page.index("LAO 77 / CAU 45")
    assert f'src="{rao.frames.get(index=10).image.url}"' in page
    assert f'src="{lao.frames.get(index=6).image.url}"' in page
    for frame in Frame.objects.filter(loop=rao, is_sampled=True):
        assert f'src="{frame.image.url}"' in page
    # Unsampled frames other than the middle one are not on the page.
    assert rao.frames.get(index=3).image.url not in page
    assert "Explicit VR Little Endian" in page
    assert "JPEG Lossless, Non-Hierarchical, First-Order Prediction" in page
    assert "15.0 fps" in page  # 66.7 ms per frame
    assert "Burned-in annotation" not in page


def test_exam_page_says_when_the_frame_rate_is_assumed(client, physician):
    exam = ExamFactory()
    CineLoopFactory(exam=exam, series_number=1, frames=1, frame_timing_source="FrameTime")
    client.force_login(physician)
    assert "(assumed)" not in client.get(exam.get_absolute_url()).content.decode()
    CineLoopFactory(exam=exam, series_number=2, frames=1, frame_timing_source="assumed")
    assert "(assumed)" in client.get(exam.get_absolute_url()).content.decode()


def test_exam_page_warns_about_burned_in_annotation(client, physician):
    loop = CineLoopFactory(frames=2, needs_burned_in_review=True, burned_in_annotation="YES")
    client.force_login(physician)
    page = client.get(loop.exam.get_absolute_url()).content.decode()
    assert '<span class="badge badge--warning"' in page
    assert "Burned-in annotation: check pixels" in page


def test_exam_page_shows_documents_side_by_side_with_validation(client, physician, admin_user):
    exam = ExamFactory()
    ClinicalDocumentFactory(
        exam=exam,
        kind=DocumentKind.DIAGNOSIS_SUMMARY,
        language=DocumentLanguage.JAPANESE,
        text="右冠動脈#2に90%狭窄。",
        validated_by=admin_user,
        validated_at=datetime(2025, 5, 2, 9, 30, tzinfo=UTC),
    )
    ClinicalDocumentFactory(
        exam=exam, kind=DocumentKind.DIAGNOSIS_SUMMARY, language=DocumentLanguage.ENGLISH, text="RCA #2 90% stenosis."
    )
    client.force_login(physician)

    page = client.get(exam.get_absolute_url()).content.decode()

    assert "Diagnosis summary" in page
    assert "Pre-procedure report" not in page
    assert page.index("右冠動脈#2に90%狭窄。") < page.index("RCA #2 90% stenosis.")
    assert f"Validated by {admin_user.username}, 2025-05-02 09:30" in page
    assert "Not validated" in page


def test_exam_page_queries_do_not_grow_with_loops_and_frames(client, physician, django_assert_max_num_queries):
    client.force_login(physician)
    small_exam = ExamFactory()
    CineLoopFactory.create_batch(2, exam=small_exam, frames=5)
    ClinicalDocumentFactory(exam=small_exam)
    with CaptureQueriesContext(connection) as small:
        client.get(small_exam.get_absolute_url())
    large_exam = ExamFactory()
    CineLoopFactory.create_batch(20, exam=large_exam, frame_count=40)
    ClinicalDocumentFactory(exam=large_exam, language=DocumentLanguage.JAPANESE)
    ClinicalDocumentFactory(exam=large_exam, language=DocumentLanguage.ENGLISH)
    with django_assert_max_num_queries(len(small)):
        response = client.get(large_exam.get_absolute_url())
    assert len(response.context["cards"]) == 20


# --- upload ---------------------------------------------------------------------------------


def test_upload_form_takes_many_files(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/exams/upload/").content.decode()
    assert 'type="file" name="files"' in page
    assert " multiple" in page
    assert 'hx-encoding="multipart/form-data"' in page
    assert 'enctype="multipart/form-data"' in page


def test_upload_real_cine_ingests_then_reports_duplicate(client, physician, xa_dir):
    client.force_login(physician)
    with (xa_dir / "0002.DCM").open("rb") as dicom:
        first = client.post("/exams/upload/", {"files": [dicom]})
    page = first.content.decode()
    assert first.status_code == 200
    assert '<span class="outcome outcome--ingested">ingested</span>' in page
    assert "1 ingested (96 frames)" in page
    loop = CineLoop.objects.get()
    assert loop.frames.count() == 96
    assert f'href="{loop.exam.get_absolute_url()}"' in page

    with (xa_dir / "0002.DCM").open("rb") as dicom:
        second = client.post("/exams/upload/", {"files": [dicom]})
    page = second.content.decode()
    assert '<span class="outcome outcome--duplicate">duplicate</span>' in page
    assert f'href="{loop.exam.get_absolute_url()}"' in page
    assert CineLoop.objects.count() == 1


def test_upload_of_random_bytes_is_rejected_and_stores_nothing(client, admin_user, media_root):
    client.force_login(admin_user)
    response = client.post("/exams/upload/", {"files": [random_bytes_upload("not-a-cine.dcm")]})
    page = response.content.decode()
    assert '<span class="outcome outcome--rejected">rejected</span>' in page
    assert "not-a-cine.dcm" in page
    assert "1 rejected" in page
    assert (Patient.objects.count(), Exam.objects.count(), CineLoop.objects.count()) == (0, 0, 0)
    assert stored_files(media_root) == []


def test_empty_upload_is_a_form_error(client, physician):
    client.force_login(physician)
    response = client.post("/exams/upload/", {})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Choose at least one file to upload." in page
    assert "Results" not in page
    assert CineLoop.objects.count() == 0


def test_htmx_upload_returns_only_the_results_fragment(client, physician):
    client.force_login(physician)
    response = client.post(
        "/exams/upload/",
        {"files": [random_bytes_upload(), random_bytes_upload("b.dcm")]},
        headers={"HX-Request": "true"},
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="upload-results"')
    assert "<html" not in page
    assert "<form" not in page
    assert page.count("outcome--rejected") == 2
    assert "2 rejected" in page


def test_upload_of_several_files_reports_each(client, physician, xa_dir):
    client.force_login(physician)
    with (xa_dir / "XA-MONO2-8-12x-catheter.dcm").open("rb") as dicom:
        response = client.post("/exams/upload/", {"files": [dicom, random_bytes_upload("junk.bin")]})
    page = response.content.decode()
    assert "outcome--ingested" in page
    assert "outcome--rejected" in page
    assert "XA-MONO2-8-12x-catheter.dcm" in page
    assert "junk.bin" in page
    assert CineLoop.objects.get().frame_count == 12


def test_exam_list_pages_through_many_exams(client, physician) -> None:
    from tests.factories import ExamFactory

    ExamFactory.create_batch(55)
    client.force_login(physician)

    first = client.get(reverse("annotation:exam-list")).content.decode()
    second = client.get(reverse("annotation:exam-list") + "?page=2").content.decode()

    assert 'href="?page=2"' in first
    assert "Page 1 of 2" in first
    assert 'href="?page=1"' in second
    assert "Newer" in second
