"""Pages of the job system (admins only): the jobs list, a job's page with live progress, its
state as JSON for pages that cannot hold a websocket, and cancel and resume.

The pages render the Job rows; ``static/js/jobs.js`` keeps them current over the websocket
(``inference.consumers``) or, failing that, by polling the state endpoints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from uuid import UUID

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cagvlm_site.roles import Role, role_required
from inference.jobs import (
    JobConflict,
    JobNotResumable,
    cancel_job,
    job_state,
    reap_stale_jobs,
    resume_job,
)
from inference.models import Job, JobKind, JobStatus

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

JOBS_PER_PAGE = 25


def _filtered_jobs(request: HttpRequest) -> tuple[QuerySet[Job], dict[str, str], str]:
    """The jobs matching the list's filters (unknown values are ignored), the filters, and
    their query string for the pager and the state endpoint."""
    filters = {
        "kind": request.GET.get("kind", "") if request.GET.get("kind") in JobKind.values else "",
        "status": request.GET.get("status", "") if request.GET.get("status") in JobStatus.values else "",
    }
    jobs = Job.objects.select_related("created_by")
    if filters["kind"]:
        jobs = jobs.filter(kind=filters["kind"])
    if filters["status"]:
        jobs = jobs.filter(status=filters["status"])
    return jobs, filters, urlencode({name: value for name, value in filters.items() if value})


@require_GET
@role_required(Role.ADMIN)
def job_list(request: HttpRequest) -> HttpResponse:
    reap_stale_jobs()
    jobs, filters, query = _filtered_jobs(request)
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    # The page polls the state endpoint with its own query string (filters and page).
    config = {"socket_path": "/ws/jobs/", "state_url": reverse("inference:job-list-state")}
    context = {
        "page": page,
        "rows": [{"job": job, "state": job_state(job, full=False)} for job in page],
        "filters": filters,
        "query": query,
        "kinds": JobKind.choices,
        "statuses": JobStatus.choices,
        "jobs_config": config,
    }
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "inference/job_list.html#job-table" if fragment else "inference/job_list.html"
    return render(request, template, context)


@require_GET
@role_required(Role.ADMIN)
def job_list_state(request: HttpRequest) -> JsonResponse:
    """The states of the jobs on one page of the list (same filters), for polling."""
    reap_stale_jobs()
    jobs, _, _ = _filtered_jobs(request)
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return JsonResponse({"jobs": [job_state(job, full=False) for job in page]})


def _detail_context(job: Job) -> dict[str, Any]:
    state = job_state(job)
    return {
        "job": job,
        "short": str(job.uuid)[:8],
        "state": state,
        "parameters": [(name, _display_value(value)) for name, value in job.parameters.items()],
        "metric_rows": metric_rows(job.metrics),
        "resumptions": job.resumptions.all(),
        "jobs_config": {
            "job": str(job.uuid),
            "socket_path": f"/ws/jobs/{job.uuid}/",
            "state_url": reverse("inference:job-state", kwargs={"job_uuid": job.uuid}),
        },
    }


@require_GET
@role_required(Role.ADMIN)
def job_detail(request: HttpRequest, job_uuid: UUID) -> HttpResponse:
    reap_stale_jobs()
    job = get_object_or_404(Job.objects.select_related("created_by", "resumed_from"), uuid=job_uuid)
    return render(request, "inference/job_detail.html", _detail_context(job))


@require_GET
@role_required(Role.ADMIN)
def job_state_json(request: HttpRequest, job_uuid: UUID) -> JsonResponse:
    reap_stale_jobs()
    return JsonResponse(job_state(get_object_or_404(Job, uuid=job_uuid)))


@require_POST
@role_required(Role.ADMIN)
def job_cancel(request: HttpRequest, job_uuid: UUID) -> HttpResponse:
    job = get_object_or_404(Job, uuid=job_uuid)
    cancel_job(job, request.user)
    return redirect(job)


@require_POST
@role_required(Role.ADMIN)
def job_resume(request: HttpRequest, job_uuid: UUID) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("created_by", "resumed_from"), uuid=job_uuid)
    try:
        resumed = resume_job(job, request.user)
    except JobConflict as exc:
        refusal = {"message": str(exc), "url": exc.holder.get_absolute_url() if exc.holder else ""}
    except JobNotResumable as exc:
        refusal = {"message": str(exc), "url": ""}
    else:
        return redirect(resumed)
    return render(request, "inference/job_detail.html", {**_detail_context(job), "refusal": refusal}, status=409)


# --- showing parameters and metrics ---------------------------------------------------------


def _display_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "—"
    return str(value)


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Scalars first as a table, then structured values (confusion matrix, history) as JSON.
    ``static/js/jobs.js`` renders the same from the live state."""
    scalars = [
        {"name": name, "value": _display_value(value), "structured": False}
        for name, value in metrics.items()
        if not isinstance(value, dict | list)
    ]
    structured = [
        {"name": name, "value": json.dumps(value, ensure_ascii=False), "structured": True}
        for name, value in metrics.items()
        if isinstance(value, dict | list)
    ]
    return scalars + structured
