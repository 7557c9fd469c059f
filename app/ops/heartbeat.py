"""The worker's heartbeat: a consumer bootstep on the worker's own timer (no thread) that

- publishes this worker's advertisement (contract section 7) to the job store, lapsing after
  three missed beats, so ``celery -A app workers`` and submitters see who can run what;
- fails ``CAPABILITY_MISMATCH`` the queued jobs that no live worker could run when they were
  submitted and that still find none after ``guestkit_capability_wait`` seconds;
- on one worker at a time, publishes again the jobs that have been queued for longer than
  ``guestkit_requeue_after`` seconds: a broker can lose a message (kombu's Redis transport, when
  a worker dies between taking a message and recording it as unacknowledged); and the jobs left
  assigned or running that long while no live process holds their run lease: their run died and
  its message is not coming back (Celery's prefork pool can keep a message reserved, neither run
  nor acknowledged, when the pool child it was given to is killed before it starts it). A
  duplicate never runs a job twice (the run lease), so this errs on the side of sending.
"""

from __future__ import annotations

import logging
import os
from time import monotonic
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state

from app.intake.submission import publish
from app.plugin.errors import ErrorCode, JobError
from app.plugin.registry import installed
from app.protocol.models import JobDocument
from app.protocol.results import ErrorInfo, failure_result
from app.protocol.states import InvalidTransition, JobState, utc_now
from app.run.workers import build_advert, unmet_constraints

logger = logging.getLogger(__name__)
REQUEUE_LEASE = "__requeue__"
#: states a job can be left in with its message lost
_MAY_BE_STUCK = frozenset({JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING})


class Heartbeat(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry = None
        self.next_requeue_check = 0.0
        self.requeued_at: dict[str, float] = {}

    def start(self, consumer: Any) -> None:
        self.consumer = consumer
        self.registry = installed(consumer.app.conf.guestkit_extra_handlers)
        self.backend = consumer.app.backend
        self.settings = self.backend.settings
        self.beat()
        self.timer_entry = consumer.timer.call_repeatedly(self.settings.heartbeat_interval, self.beat)

    def stop(self, consumer: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        try:
            self.backend.store.put_worker(self._advert("offline").model_dump(mode="json"), ttl=0.001)
        except Exception:  # noqa: BLE001 - the store may be gone at shutdown; the advert lapses anyway
            logger.debug("could not withdraw the advertisement", exc_info=True)

    def _advert(self, state: str = "online"):
        return build_advert(self.settings, self.registry, self.consumer.hostname,
                            self.consumer.pool.num_processes if self.consumer.pool else 1,
                            len(worker_state.active_requests), state)

    def beat(self) -> None:
        try:
            store = self.backend.store
            store.put_worker(self._advert().model_dump(mode="json"), ttl=3 * self.settings.heartbeat_interval)
            self.sweep_unmatched()
            if monotonic() >= self.next_requeue_check:
                self.next_requeue_check = monotonic() + self.settings.requeue_after / 4
                self.requeue_stale()
        except Exception:  # noqa: BLE001 - a failed beat must not stop the worker; the next one retries
            logger.warning("heartbeat failed", exc_info=True)

    def sweep_unmatched(self) -> None:
        store = self.backend.store
        waiting = store.unmatched()
        if not waiting:
            return
        adverts = store.workers()
        now = utc_now()
        for job_id, document in waiting.items():
            status = store.get(job_id)
            if status is None or status.state is not JobState.QUEUED:
                store.mark_unmatched(job_id, None)
                continue
            job = JobDocument.from_json_object(document, timeout_ceiling=self.settings.timeout_ceiling)
            reasons = {a["worker_id"]: unmet_constraints(job, a) for a in adverts}
            if any(not unmet for unmet in reasons.values()):
                store.mark_unmatched(job_id, None)
                continue
            queued_at = status.history[-1].at if status.history else status.created_at
            if (now - queued_at).total_seconds() < self.settings.capability_wait:
                continue
            self._fail_unmatched(job, reasons)

    def requeue_stale(self) -> None:
        store = self.backend.store
        owner = f"{self.consumer.hostname}/{os.getpid()}"
        ttl = self.settings.requeue_after
        if not store.acquire_run(REQUEUE_LEASE, owner, ttl=ttl):
            return  # another worker does it
        store.refresh_run(REQUEUE_LEASE, owner, ttl)
        now, clock = utc_now(), monotonic()
        for status in store.list():  # one pass over the store: the three states below are read together
            if status.state not in _MAY_BE_STUCK:
                continue
            queued_at = status.history[-1].at if status.history else status.created_at
            if (now - queued_at).total_seconds() < ttl or clock - self.requeued_at.get(status.job_id, -ttl) < ttl:
                continue
            if status.state is not JobState.QUEUED and not self._run_abandoned(store, status.job_id, owner):
                continue  # a live process runs it
            document = store.document(status.job_id)
            if document is None:
                continue
            job = JobDocument.from_json_object(document, timeout_ceiling=self.settings.timeout_ceiling)
            publish(self.consumer.app, job)
            self.requeued_at[status.job_id] = clock
            logger.warning("[%s] %s for %.0f s%s: published again in case its message was lost", status.job_id,
                           status.state.value, (now - queued_at).total_seconds(),
                           "" if status.state is JobState.QUEUED else " and nobody runs it")

    @staticmethod
    def _run_abandoned(store: Any, job_id: str, owner: str) -> bool:  # noqa: ANN401
        """True when no live process holds the job's run lease (taken for a moment to know)."""
        if not store.acquire_run(job_id, owner, ttl=5):
            return False
        store.release_run(job_id, owner)
        return True

    def _fail_unmatched(self, job: JobDocument, reasons: dict[str, list[str]]) -> None:
        store = self.backend.store
        summary = "; ".join(f"{worker}: {', '.join(unmet)}" for worker, unmet in reasons.items()) or "no live workers"
        error = JobError(ErrorCode.CAPABILITY_MISMATCH,
                         f"no live worker can run this job after waiting {self.settings.capability_wait:g} s "
                         f"({summary})", details={"workers": reasons}, recoverable=False)
        doc = failure_result(job.job_id, ErrorInfo.from_job_error(error, "queued"), finished_at=utc_now(),
                             attempt=job.execution.attempt, idempotency_key=job.idempotency_key,
                             observability=job.observability_dict)
        try:
            ended = self.backend.end_unless_taken(doc)
        except InvalidTransition:
            ended = None
        store.mark_unmatched(job.job_id, None)
        if ended is not None and ended.state is JobState.FAILED:
            logger.warning("[%s] failed: %s", job.job_id, error.message)
        # else a worker took it meanwhile: that worker can run it
