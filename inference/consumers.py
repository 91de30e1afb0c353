"""Websockets of the job pages: live progress of one job, or of every job for the list.

``/ws/jobs/<uuid>/`` joins the job's channel-layer group, ``/ws/jobs/`` the jobs list group;
workers push every change there (``inference.jobs.push_job_update``). Only admins may connect.

The in-memory channel layer (the single-machine default) does not cross processes, so a worker
process's pushes never reach the web process. With it, the consumer also reads the Job rows
every second and sends what changed: the page updates live in both deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from cagvlm_site.roles import Role, has_role
from inference.jobs import JOBS_GROUP, job_state
from inference.models import Job

#: Close codes: the page tells "not allowed" and "no such job" apart from a network failure.
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

#: Jobs whose state the list socket sends on connect (the newest).
LIST_SNAPSHOT_SIZE = 50
POLL_OVERLAP = timedelta(seconds=5)


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Sends ``{"type": "job", "job": state}`` for each change (``job_state``); the list
    socket starts with ``{"type": "jobs", "jobs": [states]}``."""

    #: Seconds between reads of the Job rows when the channel layer does not cross processes.
    poll_interval_s = 1.0

    async def connect(self) -> None:
        self.group: str | None = None
        self.poller: asyncio.Task[None] | None = None
        # uuid -> updated_at of the state last sent, so that polling sends each change once.
        self.sent: dict[str, str] = {}
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(has_role)(user, Role.ADMIN):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        job_uuid = self.scope["url_route"]["kwargs"].get("job_uuid")
        self.job_uuid = str(job_uuid) if job_uuid else None
        if self.job_uuid is not None:
            state = await database_sync_to_async(self._job_state)()
            if state is None:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            self.group = Job(uuid=job_uuid).group_name
        else:
            self.group = JOBS_GROUP
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.job_uuid is not None:
            await self._send_state(state)
        else:
            states = await database_sync_to_async(self._list_snapshot)()
            for item in states:
                self.sent[item["uuid"]] = item["updated_at"]
            await self.send_json({"type": "jobs", "jobs": states})
        if self.needs_polling():
            self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        if self.group is not None and self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that matters; ignore it."""

    async def job_update(self, event: dict[str, Any]) -> None:
        """A worker's push through the channel layer."""
        await self._send_state(event["job"])

    def needs_polling(self) -> bool:
        """True where pushes from a worker process cannot arrive: no channel layer, or one
        that lives in this process only."""
        return self.channel_layer is None or isinstance(self.channel_layer, InMemoryChannelLayer)

    # -- internals --

    async def _send_state(self, state: dict[str, Any]) -> None:
        """Send a state unless the page has it, or a newer one (a push and a poll can cross)."""
        previous = self.sent.get(state["uuid"])
        if previous and datetime.fromisoformat(previous) >= datetime.fromisoformat(state["updated_at"]):
            return
        self.sent[state["uuid"]] = state["updated_at"]
        await self.send_json({"type": "job", "job": state})

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            if self.job_uuid is not None:
                state = await database_sync_to_async(self._job_state_if_changed)()
                states = [state] if state is not None else []
            else:
                states = await database_sync_to_async(self._changed_list_states)()
            for item in states:
                await self._send_state(item)

    def _job_state(self) -> dict[str, Any] | None:
        job = Job.objects.filter(uuid=self.job_uuid).first()
        return job_state(job) if job is not None else None

    def _job_state_if_changed(self) -> dict[str, Any] | None:
        updated_at = Job.objects.filter(uuid=self.job_uuid).values_list("updated_at", flat=True).first()
        if updated_at is None or self.sent.get(self.job_uuid or "") == updated_at.isoformat():
            return None
        return self._job_state()

    def _list_snapshot(self) -> list[dict[str, Any]]:
        return [job_state(job, full=False) for job in Job.objects.all()[:LIST_SNAPSHOT_SIZE]]

    def _changed_list_states(self) -> list[dict[str, Any]]:
        """States of the jobs changed since the last poll: one query when nothing changed."""
        jobs = Job.objects.order_by("-updated_at")
        if newest := max(self.sent.values(), key=datetime.fromisoformat, default=""):
            # A little overlap: a worker's clock and commit order may put a change a moment
            # before the newest one seen; ``_send_state`` drops what was sent already.
            jobs = jobs.filter(updated_at__gte=datetime.fromisoformat(newest) - POLL_OVERLAP)
        return [
            job_state(job, full=False)
            for job in jobs[:LIST_SNAPSHOT_SIZE]
            if self.sent.get(str(job.uuid)) != job.updated_at.isoformat()
        ]
