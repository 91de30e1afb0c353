"""Pages of exams: the list, one exam with its loops and documents, and the upload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_http_methods
from pydicom.uid import UID

from annotation.forms import UploadForm
from annotation.ingest import IngestReport, ingest_uploads
from annotation.models import CineLoop, ClinicalDocument, DocumentKind, DocumentLanguage, Exam, Frame
from cagvlm_site.roles import ALL_ROLES, Role, has_role, role_required
from inference.keyframes import key_frame_section
from inference.prelabel import start_prelabel_after_ingest

if TYPE_CHECKING:
    from uuid import UUID

    from django.http import HttpRequest, HttpResponse

EXAMS_PER_PAGE = 50


def _count_per_exam(rows: QuerySet, exam_path: str, **conditions: object) -> Coalesce:
    """A correlated COUNT of ``rows`` belonging to the outer exam.

    Subqueries rather than joined ``Count``s: joining loops, frames and documents at once
    multiplies the rows by each other before counting.
    """
    counted = (
        rows.filter(**{exam_path: OuterRef("pk")}, **conditions)
        .order_by()
        .values(exam_path)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _middle_frame_of_first_loop() -> Subquery:
    """The storage name of the middle frame of the exam's first loop: the list's thumbnail."""
    # order_by() drops Frame's default ordering, which would join the loop and exam tables.
    middle_image = (
        Frame.objects.filter(loop=OuterRef("pk"), index=OuterRef("frame_count") / 2).order_by().values("image")[:1]
    )
    first_loop = (
        CineLoop.objects.filter(exam=OuterRef("pk"))
        .order_by("series_number", "instance_number", "created_at")
        .annotate(middle_image=Subquery(middle_image))
        .values("middle_image")[:1]
    )
    return Subquery(first_loop)


@require_GET
@role_required(*ALL_ROLES)
def exam_list(request: HttpRequest) -> HttpResponse:
    exams = Exam.objects.select_related("patient").annotate(
        loop_count=_count_per_exam(CineLoop.objects.all(), "exam"),
        frame_total=_count_per_exam(Frame.objects.all(), "loop__exam"),
        sampled_total=_count_per_exam(Frame.objects.all(), "loop__exam", is_sampled=True),
        document_count=_count_per_exam(ClinicalDocument.objects.all(), "exam"),
        thumbnail_name=_middle_frame_of_first_loop(),
    )
    page = Paginator(exams, EXAMS_PER_PAGE).get_page(request.GET.get("page"))
    for exam in page:
        exam.thumbnail_url = default_storage.url(exam.thumbnail_name) if exam.thumbnail_name else ""
    # A history restore after a page change asks for the whole page, not the fragment.
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/exam_list.html#exam-table" if fragment else "annotation/exam_list.html"
    return render(request, template, {"page": page})


@dataclass(frozen=True)
class LoopCard:
    loop: CineLoop
    middle_frame: Frame | None
    sampled_frames: list[Frame]
    transfer_syntax_name: str


@dataclass(frozen=True)
class DocumentPair:
    """One kind of document in both languages, read side by side."""

    kind_label: str
    japanese: ClinicalDocument | None
    english: ClinicalDocument | None


@require_GET
@role_required(*ALL_ROLES)
def exam_detail(request: HttpRequest, exam_uuid: UUID) -> HttpResponse:
    exam = get_object_or_404(Exam.objects.select_related("patient"), uuid=exam_uuid)
    loops = exam.loops.prefetch_related(
        Prefetch("frames", queryset=Frame.objects.filter(is_sampled=True).order_by("index"), to_attr="sampled"),
        Prefetch(
            "frames", queryset=Frame.objects.filter(index=F("loop__frame_count") / 2).order_by(), to_attr="middle"
        ),
    )
    cards = [
        LoopCard(
            loop=loop,
            middle_frame=loop.middle[0] if loop.middle else None,
            sampled_frames=loop.sampled,
            transfer_syntax_name=UID(loop.transfer_syntax_uid).name,
        )
        for loop in loops
    ]
    documents = {(doc.kind, doc.language): doc for doc in exam.documents.select_related("validated_by")}
    document_pairs = [
        DocumentPair(
            kind_label=kind.label,
            japanese=documents.get((kind.value, DocumentLanguage.JAPANESE.value)),
            english=documents.get((kind.value, DocumentLanguage.ENGLISH.value)),
        )
        for kind in DocumentKind
        if (kind.value, DocumentLanguage.JAPANESE.value) in documents
        or (kind.value, DocumentLanguage.ENGLISH.value) in documents
    ]
    context = {
        "exam": exam,
        "cards": cards,
        "document_pairs": document_pairs,
        "frame_total": sum(card.loop.frame_count for card in cards),
        "sampled_total": sum(len(card.sampled_frames) for card in cards),
        "flagged_count": sum(card.loop.needs_burned_in_review for card in cards),
        "key_frames": key_frame_section(exam),
        "can_edit_key_frames": has_role(request.user, Role.PHYSICIAN, Role.ADMIN),
    }
    return render(request, "annotation/exam_detail.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN, Role.PHYSICIAN)
def upload(request: HttpRequest) -> HttpResponse:
    report: IngestReport | None = None
    prelabel_job = None
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            report = ingest_uploads(form.cleaned_data["files"])
            # New exams go to the active key-frame model, when there is one.
            prelabel_job = start_prelabel_after_ingest(report, request.user)
    else:
        form = UploadForm()
    template = "annotation/upload.html#results" if request.htmx else "annotation/upload.html"
    return render(request, template, {"form": form, "report": report, "prelabel_job": prelabel_job})
