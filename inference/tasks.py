"""Django tasks of the inference side: thin wrappers over plain functions that a management
command and a test can call directly (``inference.jobs.run_job_here``)."""

from __future__ import annotations

from django.tasks import task

from inference.jobs import execute_job, load_runners


@task
def run_job(job_uuid: str) -> str:
    """Run one queued Job in the worker; the Job row records the outcome (the task itself
    succeeds whatever the runner does, so the task table does not duplicate the Job's status).
    Returns the job's final status."""
    # The runners' modules are imported here, in the worker, not at Django start-up: they pull
    # in the training and pre-labelling code, which imports torch lazily but is still heavy.
    load_runners()
    return execute_job(job_uuid).status
