"""Pages of the labelling: the worklist, the cine viewer, adjudication, agreement, the audit
trail, and import/export with the project settings.

Kept apart from ``annotation.views`` (the exam pages): each file stays one reader's worth.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from itertools import product
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from annotation.agreement import DIMENSION_TITLES, DIMENSIONS, agreement_report, confusion_matrix_png
from annotation.forms import (
    AdjudicationForm,
    AuditFilterForm,
    AuditTrail,
    ExamAssignmentForm,
    LabelImportForm,
    NewProjectForm,
    ProjectForm,
)
from annotation.label_io import ImportFileError, import_labels
from annotation.labels import NotDisputed, adjudicate, adjudication_queue, move_exams, reapply_agreement, worklist_for
from annotation.models import (
    CATEGORY_DEFINITIONS,
    AnnotationProject,
    CineLoop,
    Exam,
    FinalLabel,
    FinalLabelEvent,
    Frame,
    FrameLabel,
    KeyFrameCategory,
    LabelEvent,
    Laterality,
)
from cagvlm_site.roles import Role, adjudicator_required, has_role, role_required

if TYPE_CHECKING:
    from django.http import HttpRequest

LOOPS_PER_PAGE = 50
QUEUE_PER_PAGE = 50
EVENTS_PER_PAGE = 50
EXAMS_PER_PAGE = 50
# Frames either side of a disputed frame shown on the decision page.
NEIGHBOUR_FRAMES = 2


def _label_definitions() -> list[tuple[str, str, str]]:
    return [(category.value, category.label, CATEGORY_DEFINITIONS[category]) for category in KeyFrameCategory]


@require_GET
@role_required(Role.PHYSICIAN)
def worklist(request: HttpRequest) -> HttpResponse:
    page = Paginator(worklist_for(request.user), LOOPS_PER_PAGE).get_page(request.GET.get("page"))
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/worklist.html#worklist-table" if fragment else "annotation/worklist.html"
    # The model's uncertainty column, once loops on the page are ranked by it.
    show_uncertainty = any(loop.uncertainty is not None for loop in page)
    context = {"page": page, "definitions": _label_definitions(), "show_uncertainty": show_uncertainty}
    return render(request, template, context)


@require_GET
@role_required(Role.PHYSICIAN, Role.ADMIN)
def viewer(request: HttpRequest, loop_uuid: UUID) -> HttpResponse:
    """The cine viewer of one loop. The page is the frame around the player: the frames, the
    user's own labels and the pre-labels come from the workspace API (``static/js/viewer.js``),
    so the page costs the same few queries for a loop of 10 frames or 2,000.

    Physicians label; admins may look (the label endpoints admit physicians only)."""
    loop = get_object_or_404(CineLoop.objects.select_related("exam__project"), uuid=loop_uuid)
    project = loop.exam.project or AnnotationProject.default()
    labeller = has_role(request.user, Role.PHYSICIAN)
    next_loop = worklist_for(request.user).exclude(pk=loop.pk).first() if labeller else None
    next_loop_url = reverse("annotation:viewer", kwargs={"loop_uuid": next_loop.uuid}) if next_loop else ""
    # One key per class, in reading order: left then right, better, bad, other (1-6).
    classes = [
        {
            "key": str(number),
            "laterality": laterality.value,
            "category": category.value,
            "category_label": category.label,
            "definition": CATEGORY_DEFINITIONS[category],
        }
        for number, (laterality, category) in enumerate(product(Laterality, KeyFrameCategory), start=1)
    ]
    # The API paths of frames and loops the page learns later, with this UUID to replace.
    placeholder = UUID(int=0)
    config = {
        "loop": str(loop.uuid),
        "frame_size": {"columns": loop.columns, "rows": loop.rows},
        "can_label": labeller,
        "placeholder_uuid": str(placeholder),
        "urls": {
            "workspace": reverse("api:loop-workspace", kwargs={"uuid": loop.uuid}),
            "workspace_template": reverse("api:loop-workspace", kwargs={"uuid": placeholder}),
            "frame_state_template": reverse("api:frame-state", kwargs={"uuid": placeholder}),
            "my_label_template": reverse("api:frame-my-label", kwargs={"uuid": placeholder}),
            "undo": reverse("api:label-undo"),
        },
        "classes": classes,
        "next_loop": {"uuid": str(next_loop.uuid), "url": next_loop_url} if next_loop else None,
    }
    context = {
        "loop": loop,
        "exam": loop.exam,
        "loop_short": str(loop.uuid)[:8],
        "last_index": max(loop.frame_count - 1, 0),
        "mode": project.mode,
        "can_label": labeller,
        "lateralities": [
            {
                "value": laterality.value,
                "label": laterality.label,
                "classes": [c for c in classes if c["laterality"] == laterality],
            }
            for laterality in Laterality
        ],
        "categories": [
            {"value": category.value, "label": category.label, "definition": CATEGORY_DEFINITIONS[category]}
            for category in KeyFrameCategory
        ],
        "next_loop_url": next_loop_url,
        "worklist_url": reverse("annotation:worklist") if labeller else "",
        "viewer_config": config,
    }
    return render(request, "annotation/viewer.html", context)


# --- adjudication ----------------------------------------------------------------------------


def _with_active_labels(frames: Any) -> Any:
    return frames.prefetch_related(
        Prefetch(
            "labels",
            queryset=FrameLabel.objects.filter(withdrawn_at=None)
            .select_related("physician")
            .order_by("physician__username"),
            to_attr="active_labels",
        )
    )


@require_GET
@adjudicator_required
def adjudication_queue_page(request: HttpRequest) -> HttpResponse:
    frames = _with_active_labels(adjudication_queue().select_related("loop__exam"))
    page = Paginator(frames, QUEUE_PER_PAGE).get_page(request.GET.get("page"))
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/adjudication_queue.html#queue-table" if fragment else "annotation/adjudication_queue.html"
    return render(request, template, {"page": page})


@require_http_methods(["GET", "POST"])
@adjudicator_required
def adjudication_decide(request: HttpRequest, frame_uuid: UUID) -> HttpResponse:
    frame = get_object_or_404(_with_active_labels(Frame.objects.select_related("loop__exam")), uuid=frame_uuid)
    final = FinalLabel.objects.filter(frame=frame).select_related("decided_by").first()
    error = ""
    if request.method == "POST":
        form = AdjudicationForm(request.POST)
        if form.is_valid():
            try:
                adjudicate(frame, request.user, **form.cleaned_data)
            except NotDisputed as exc:
                error = str(exc)
            else:
                following = adjudication_queue().exclude(pk=frame.pk).first()
                if following is not None:
                    return redirect("annotation:adjudication-decide", frame_uuid=following.uuid)
                return redirect("annotation:adjudication")
    else:
        initial = {"laterality": final.laterality, "category": final.category, "note": final.note} if final else {}
        form = AdjudicationForm(initial=initial)
    neighbours = frame.loop.frames.filter(
        index__gte=frame.index - NEIGHBOUR_FRAMES, index__lte=frame.index + NEIGHBOUR_FRAMES
    ).order_by("index")
    context = {
        "frame": frame,
        "loop": frame.loop,
        "labels": frame.active_labels,
        "final": final,
        "final_history_count": FinalLabelEvent.objects.filter(frame=frame).count() if final else 0,
        "neighbours": neighbours,
        "form": form,
        "error": error,
        "definitions": _label_definitions(),
    }
    return render(request, "annotation/adjudication_decide.html", context, status=409 if error else 200)


# --- agreement -------------------------------------------------------------------------------


def _exam_param(request: HttpRequest) -> Exam | None:
    raw = request.GET.get("exam") or ""
    try:
        exam_uuid = UUID(raw)
    except ValueError:  # none given, or not a UUID: all exams
        return None
    return Exam.objects.filter(uuid=exam_uuid).first()


@require_GET
@role_required(Role.ADMIN)
def agreement(request: HttpRequest) -> HttpResponse:
    exam = _exam_param(request)
    report = agreement_report(exam)
    context = {
        "report": report,
        "exam": exam,
        "dimensions": [(name, report["dimensions"][name]) for name in DIMENSIONS],
        "dimension_titles": DIMENSION_TITLES,
    }
    return render(request, "annotation/agreement.html", context)


@require_GET
@role_required(Role.ADMIN)
def agreement_confusion(request: HttpRequest) -> HttpResponse:
    dimension = request.GET.get("dimension", "class")
    first, second = request.GET.get("a", ""), request.GET.get("b", "")
    if dimension not in DIMENSIONS or not first or not second:
        return HttpResponseBadRequest("Give a, b (usernames) and dimension (laterality, category or class).")
    png = confusion_matrix_png(first, second, dimension, _exam_param(request))
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, no-cache"
    return response


# --- audit trail -----------------------------------------------------------------------------


@require_GET
@role_required(Role.ADMIN)
def audit(request: HttpRequest) -> HttpResponse:
    """The audit trail of physicians' labels, or (``trail=final``) of final labels."""
    form = AuditFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    trail = AuditTrail(data.get("trail") or AuditTrail.LABELS)
    events: QuerySet[LabelEvent] | QuerySet[FinalLabelEvent]
    if trail == AuditTrail.FINAL:
        events = FinalLabelEvent.objects.select_related("actor", "frame__loop__exam")
        person = "actor"
    else:
        events = LabelEvent.objects.select_related("actor", "label__physician", "frame__loop__exam")
        person = "label__physician"
    if data.get("physician"):
        events = events.filter(**{person: data["physician"]})
    if data.get("exam"):
        events = events.filter(frame__loop__exam__uuid=data["exam"])
    zone = timezone.get_current_timezone()
    if data.get("date_from"):
        events = events.filter(created_at__gte=datetime.combine(data["date_from"], time.min, tzinfo=zone))
    if data.get("date_to"):
        end = datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=zone)
        events = events.filter(created_at__lt=end)
    if form.is_bound and not form.is_valid():
        events = events.none()
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "annotation/audit.html#audit-table" if fragment else "annotation/audit.html"
    context = {"form": form, "page": page, "query": query.urlencode(), "final_trail": trail == AuditTrail.FINAL}
    return render(request, template, context)


# --- import, export, projects ----------------------------------------------------------------


def _exams_of(project: AnnotationProject) -> QuerySet[Exam]:
    """The project's exams; the default project also has the exams that name no project."""
    if project.is_default:
        return Exam.objects.filter(Q(project=project) | Q(project__isnull=True))
    return Exam.objects.filter(project=project)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def label_data(request: HttpRequest) -> HttpResponse:
    """Export links, the import form, the projects' labelling settings and which exams each
    project holds."""
    import_form = LabelImportForm()
    new_project_form = NewProjectForm(prefix="new")
    assignment_form = ExamAssignmentForm()
    report = None
    import_error = ""
    default = AnnotationProject.default()
    projects = list(AnnotationProject.objects.annotate(exam_count=Count("exams")))
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "import":
        import_form = LabelImportForm(request.POST, request.FILES)
        if import_form.is_valid():
            upload = import_form.cleaned_data["file"]
            try:
                report = import_labels(
                    upload.read(),
                    upload.name or "",
                    request.user,
                    dry_run=import_form.cleaned_data["dry_run"],
                    final=import_form.cleaned_data["final"],
                )
            except ImportFileError as exc:
                import_error = str(exc)
    elif action == "project":
        project = next((p for p in projects if str(p.uuid) == request.POST.get("project")), None)
        if project is None:
            raise Http404("No such project.")
        required_before = project.labels_required
        project_form = ProjectForm(request.POST, instance=project)
        if project_form.is_valid():
            with transaction.atomic():
                project_form.save()
                if project.labels_required != required_before:
                    reapply_agreement(_exams_of(project), request.user)
            return redirect(reverse("annotation:label-data") + "#projects")
        project.form = project_form
    elif action == "new-project":
        new_project_form = NewProjectForm(request.POST, prefix="new")
        if new_project_form.is_valid():
            new_project_form.save()
            return redirect(reverse("annotation:label-data") + "#projects")
    elif action == "assign":
        assignment_form = ExamAssignmentForm(request.POST)
        if assignment_form.is_valid():
            target = assignment_form.cleaned_data["project"]
            moved = move_exams(assignment_form.cleaned_data["exams"], target, request.user)
            messages.success(request, f"{moved} exam{pluralize(moved)} moved to {target.name}.")
            return redirect(reverse("annotation:label-data") + "#exams")
    elif request.method == "POST":
        return HttpResponseBadRequest("Unknown action.")
    for project in projects:
        if not hasattr(project, "form"):
            project.form = ProjectForm(instance=project)
        if project.is_default:
            project.exam_count += Exam.objects.filter(project__isnull=True).count()
    exams = Exam.objects.select_related("project").annotate(loop_count=Count("loops")).order_by("-created_at")
    exam_page = Paginator(exams, EXAMS_PER_PAGE).get_page(request.GET.get("exams_page"))
    context = {
        "import_form": import_form,
        "report": report,
        "import_error": import_error,
        "projects": projects,
        "default_project": default,
        "new_project_form": new_project_form,
        "assignment_form": assignment_form,
        "exam_page": exam_page,
        "final_label_count": FinalLabel.objects.count(),
    }
    status = 400 if request.method == "POST" and (new_project_form.errors or assignment_form.errors) else 200
    return render(request, "annotation/label_data.html", context, status=status)
