"""A task worker in a process of its own, for the killed-worker test.

    CAGVLM_TEST_DATABASE='{...settings dict...}' python -m tests.inference.slow_job_worker JOB_UUID

Runs the queued job through ``inference.jobs.run_job_here`` (the worker's code path, heartbeat
thread included) with a runner that works until the test kills the process. The database
settings come from the test process, so that this process writes to the test database.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(job_uuid: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cagvlm_site.settings")
    import django
    from django.conf import settings

    settings.DATABASES = {"default": json.loads(os.environ["CAGVLM_TEST_DATABASE"])}
    django.setup()

    from pydantic import BaseModel, ConfigDict

    from inference.jobs import JobContext, register_runner, run_job_here
    from inference.models import Job, JobKind

    class AnyParameters(BaseModel):
        model_config = ConfigDict(extra="allow")

    @register_runner(JobKind.PRELABEL, AnyParameters, replace=True)
    def work_until_killed(ctx: JobContext) -> dict:
        ctx.log(f"worker {os.getpid()} started")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.05)
        raise RuntimeError("the test never killed this worker")

    run_job_here(Job.objects.get(uuid=job_uuid))


if __name__ == "__main__":
    main(sys.argv[1])
