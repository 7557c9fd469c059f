"""The Python API: submit jobs, follow them, cancel them.

    from app.api import submit
    handle = submit("jobs/test-echo-001.json")
    print(handle.result(timeout=30))
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kombu import Queue

from app.errors import ErrorCode, JobError
from app.protocol import JobDocument
from app.results import ErrorInfo, failure_result
from app.states import InvalidTransition, JobState, JobStatus, utc_now
from app.validation import validate
from app.workers import unmet_constraints

MAX_PRIORITY = 10
#: how much of a job Flower shows as the task's arguments (``_argsrepr``)
ARGSREPR_CHARS = 256


class CancelRefused(Exception):
    """The job cannot be cancelled (not cancellable, or already ended)."""


class SubmitFailed(Exception):
    """The job was valid but could not be handed to the broker."""


def _platform():
    from app.celery import app, registry

    return app, registry


def _backend():
    app, _ = _platform()
    return app.backend


@dataclass(frozen=True)
class JobHandle:
    job_id: str

    def status(self) -> JobStatus | None:
        return status(self.job_id)

    def progress(self) -> list[dict[str, Any]]:
        return _backend().store.progress(self.job_id)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The result document once the job has ended (completed or not).

        Raises ``TimeoutError`` if it has not ended within ``timeout`` seconds. The result file
        is written just before the terminal state; this returns once both are there.
        """
        backend = _backend()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        doc = None
        while True:
            doc = doc or backend.read_result(self.job_id)
            if doc is not None:
                current = backend.store.get(self.job_id)
                if current is None or current.terminal:
                    return doc
            if deadline is not None and time.monotonic() >= deadline:
                if doc is not None:
                    return doc  # the state lags (its worker died in between); the result stands
                current = self.status()
                raise TimeoutError(f"job {self.job_id} has not ended after {timeout} s "
                                   f"(state: {current.state if current else 'unknown'})")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.01)

    def cancel(self) -> JobStatus:
        return cancel(self.job_id)


def submit(source: JobDocument | Mapping[str, Any] | str | bytes | os.PathLike[str], *,
           wait: bool = False, timeout: float | None = None,
           keep_queued_on_broker_error: bool = False) -> JobHandle:
    """Validate and queue a job; with ``wait``, return once it has ended.

    Raises ``ValidationFailed`` for an invalid document (nothing is queued then) and
    ``SubmitFailed`` when the broker cannot be reached: the job is then recorded failed, or,
    with ``keep_queued_on_broker_error``, left queued for the caller to ``publish`` again (the
    file-drop bridge does). Submitting a job_id that exists returns the existing job's handle:
    it is executed once.
    """
    app, registry = _platform()
    backend = app.backend
    store = backend.store
    settings = backend.settings
    document = source.to_dict() if isinstance(source, JobDocument) else source
    job = validate(document, timeout_ceiling=settings.timeout_ceiling, payload_models=registry.payload_models)
    handle = JobHandle(job.job_id)
    fresh = JobStatus(job_id=job.job_id, operation=job.operation, attempt=job.execution.attempt,
                      max_attempts=job.execution.max_attempts, idempotency_key=job.idempotency_key,
                      cancellable=job.execution.cancellable)
    queued = fresh.advance(JobState.QUEUED)
    admission = store.admit(queued, job.to_dict())
    if not admission.created:
        return handle
    claim = admission.claim
    if claim is not None and not claim.won_by(job.job_id) and claim.holder_state is not JobState.COMPLETED:
        _fail_duplicate(job, claim.holder)
        return handle
    if not any(not unmet_constraints(job, advert) for advert in _live_workers(store)):
        store.mark_unmatched(job.job_id, job.to_dict())  # the heartbeats fail it if none turns up
    try:
        publish(job, queued)
    except Exception as exc:  # the broker is down or refuses: say so, do not leave a queued ghost
        if keep_queued_on_broker_error:
            raise SubmitFailed(f"could not queue the job: {type(exc).__name__}: {exc}") from exc
        error = JobError(ErrorCode.EXECUTION_ERROR, f"could not queue the job: {type(exc).__name__}: {exc}",
                         details={"broker": app.connection_for_write().as_uri()}, recoverable=True)
        backend.save_final(failure_result(job.job_id, ErrorInfo.from_job_error(error, "submission"),
                                          finished_at=utc_now(), attempt=job.execution.attempt,
                                          idempotency_key=job.idempotency_key))
        raise SubmitFailed(error.message) from exc
    if wait:
        handle.result(timeout)
    return handle


_WORKERS_CACHE_SECONDS = 1.0
_workers_seen: tuple[float, list[dict[str, Any]]] = (float("-inf"), [])


def _live_workers(store: Any) -> list[dict[str, Any]]:
    """The live workers' adverts, read at most once a second per process (submit is hot)."""
    global _workers_seen
    if time.monotonic() - _workers_seen[0] > _WORKERS_CACHE_SECONDS:
        _workers_seen = (time.monotonic(), store.workers())
    return _workers_seen[1]


def publish(job: JobDocument, queued: JobStatus | None = None) -> None:
    """Send the job to the broker: task named after the operation, task id = job_id.

    ``queued``: the status just stored for it, which lets the worker start the job in the same
    round trip as its first look at the store (if the status is still that one then)."""
    app, _ = _platform()
    pool = pool_for(job, app.conf.guestkit_pools[0])
    timeout = job.execution.timeout_seconds
    app.send_task(
        job.operation, args=[job.to_dict()], task_id=job.job_id, queue=_queue(pool),
        # only what is set: the worker reads it back with the defaults
        kwargs={} if queued is None else {"queued": queued.model_dump(mode="json", exclude_none=True)},
        # what Flower shows as the task's arguments: Celery's own saferepr of a whole job document
        # costs more than the rest of the publish, and Celery sends these twice (headers and
        # properties), so a short summary
        argsrepr=_argsrepr(job), kwargsrepr="{}" if queued is None else
        f"{{'queued': {queued.updated_at.isoformat()!r}}}",
        priority=broker_priority(job.execution.priority, app.conf.broker_url),
        soft_time_limit=timeout, time_limit=timeout + app.conf.guestkit_timeout_grace,
    )


def _argsrepr(job: JobDocument) -> str:
    """The job as Flower lists it: its id, operation and payload data, in ``ARGSREPR_CHARS``."""
    summary = {"job_id": job.job_id, "operation": job.operation, "payload": job.payload.data}
    text = json.dumps(summary, separators=(",", ":"), default=str)
    return text if len(text) <= ARGSREPR_CHARS else text[:ARGSREPR_CHARS - 3] + "..."


@functools.cache
def _queue(pool: str) -> Queue:
    """One ``Queue`` per pool: kombu declares a queue once per object it has not seen."""
    return Queue(pool, routing_key=pool, queue_arguments={"x-max-priority": MAX_PRIORITY})


def broker_priority(priority: int, broker_url: str) -> int:
    """The contract's 1-10 (higher first) as the broker wants it: Redis sorts the other way."""
    return MAX_PRIORITY - priority if broker_url.startswith(("redis", "rediss")) else priority


def pool_for(job: JobDocument, default: str) -> str:
    if job.routing is not None and job.routing.worker_pool:
        return job.routing.worker_pool
    if job.constraints is not None and job.constraints.allowed_worker_pools:
        return job.constraints.allowed_worker_pools[0]
    return default


def _fail_duplicate(job: JobDocument, holder: str) -> None:
    error = JobError(ErrorCode.DUPLICATE_IN_PROGRESS,
                     f"job {holder} with the same idempotency key {job.idempotency_key!r} is still in progress",
                     details={"holder": holder, "idempotency_key": job.idempotency_key}, recoverable=True)
    _backend().save_final(failure_result(
        job.job_id, ErrorInfo.from_job_error(error, "submission"), finished_at=utc_now(),
        attempt=job.execution.attempt, idempotency_key=job.idempotency_key,
        observability=job.observability_dict))


def status(job_id: str) -> JobStatus | None:
    """The job's state, history and latest progress event; None for an unknown job."""
    store = _backend().store
    current = store.get(job_id)
    if current is None:
        return None
    return current.model_copy(update={"progress": store.latest_progress(job_id)})


def list_jobs(state: JobState | str | None = None) -> list[JobStatus]:
    return _backend().store.list(JobState(state) if state is not None else None)


def cancel(job_id: str) -> JobStatus:
    """Cancel a queued job (it will never start) or ask a running one to stop.

    Raises ``CancelRefused`` for a job that is not cancellable or has already ended.
    """
    app, _ = _platform()
    backend = app.backend
    store = backend.store
    current = store.get(job_id)
    if current is None:
        raise KeyError(f"no job {job_id}")
    if current.terminal:
        raise CancelRefused(f"job {job_id} has already ended ({current.state}); nothing to cancel")
    if not current.cancellable:
        raise CancelRefused(f"job {job_id} is not cancellable (execution.cancellable is false)")
    store.request_cancel(job_id)
    if current.state in (JobState.PENDING, JobState.QUEUED):
        error = JobError(ErrorCode.CANCELLED, "the job was cancelled before it started", recoverable=False)
        try:
            backend.save_final(failure_result(job_id, ErrorInfo.from_job_error(error, "queued"),
                                              status="cancelled", finished_at=utc_now(),
                                              attempt=current.attempt, idempotency_key=current.idempotency_key))
        except InvalidTransition:
            pass  # a worker took it meanwhile: it sees the request and stops
    app.control.revoke(job_id)
    return store.get(job_id)  # type: ignore[return-value]
