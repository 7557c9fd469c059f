"""Admitting a job and handing it to the broker, for every way a job arrives (the Python API,
the file-drop bridge, a worker publishing a queued job again). Each function is given the Celery
app to use; nothing here imports the assembled one."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kombu import Queue

from app.plugin.errors import ErrorCode, JobError
from app.plugin.registry import installed
from app.protocol.models import JobDocument
from app.protocol.results import ErrorInfo, failure_result
from app.protocol.states import JobState, JobStatus, utc_now
from app.protocol.validation import validate
from app.run.workers import unmet_constraints

if TYPE_CHECKING:  # not imported here: celery's package is not safe to import from two threads at once
    from celery import Celery

MAX_PRIORITY = 10
#: how much of a job Flower shows as the task's arguments (``_argsrepr``)
ARGSREPR_CHARS = 256


class SubmitFailed(Exception):
    """The job was valid but could not be handed to the broker."""


def submit(app: Celery, source: JobDocument | Mapping[str, Any] | str | bytes | os.PathLike[str], *,
           keep_queued_on_broker_error: bool = False, validated: bool = False) -> JobDocument:
    """Validate a job, admit it to the job store and publish it; return the validated job.

    Raises ``ValidationFailed`` for an invalid document (nothing is queued then) and
    ``SubmitFailed`` when the broker cannot be reached: the job is then recorded failed, or,
    with ``keep_queued_on_broker_error``, left queued for the caller to ``publish`` again (the
    file-drop bridge does). A job_id that exists is left as it is: it is executed once.
    ``validated``: ``source`` is a JobDocument this process validated with this app's settings (the
    bridge does): it is not validated again.
    """
    backend = app.backend
    store = backend.store
    settings = backend.settings
    registry = installed(app.conf.guestkit_extra_handlers)
    if validated and isinstance(source, JobDocument):
        job = source
    else:
        document = source.to_dict() if isinstance(source, JobDocument) else source
        job = validate(document, timeout_ceiling=settings.timeout_ceiling, payload_models=registry.payload_models)
    fresh = JobStatus(job_id=job.job_id, operation=job.operation, attempt=job.execution.attempt,
                      max_attempts=job.execution.max_attempts, idempotency_key=job.idempotency_key,
                      cancellable=job.execution.cancellable)
    queued = fresh.advance(JobState.QUEUED)
    admission = store.admit(queued, job.to_dict())
    if not admission.created:
        return job
    claim = admission.claim
    if claim is not None and not claim.won_by(job.job_id) and claim.holder_state is not JobState.COMPLETED:
        _fail_duplicate(app, job, claim.holder)
        return job
    if not any(not unmet_constraints(job, advert) for advert in _live_workers(store)):
        store.mark_unmatched(job.job_id, job.to_dict())  # the heartbeats fail it if none turns up
    try:
        publish(app, job, queued)
    except Exception as exc:  # the broker is down or refuses: say so, do not leave a queued ghost
        if keep_queued_on_broker_error:
            raise SubmitFailed(f"could not queue the job: {type(exc).__name__}: {exc}") from exc
        error = JobError(ErrorCode.EXECUTION_ERROR, f"could not queue the job: {type(exc).__name__}: {exc}",
                         details={"broker": app.connection_for_write().as_uri()}, recoverable=True)
        backend.save_final(failure_result(job.job_id, ErrorInfo.from_job_error(error, "submission"),
                                          finished_at=utc_now(), attempt=job.execution.attempt,
                                          idempotency_key=job.idempotency_key))
        raise SubmitFailed(error.message) from exc
    return job


_WORKERS_CACHE_SECONDS = 1.0
_workers_seen: tuple[float, list[dict[str, Any]]] = (float("-inf"), [])


def _live_workers(store: Any) -> list[dict[str, Any]]:
    """The live workers' adverts, read at most once a second per process (submit is hot)."""
    global _workers_seen
    if time.monotonic() - _workers_seen[0] > _WORKERS_CACHE_SECONDS:
        _workers_seen = (time.monotonic(), store.workers())
    return _workers_seen[1]


def publish(app: Celery, job: JobDocument, queued: JobStatus | None = None) -> None:
    """Send the job to the broker: task named after the operation, task id = job_id.

    ``queued``: the status just stored for it, which lets the worker start the job in the same
    round trip as its first look at the store (if the status is still that one then)."""
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


def _fail_duplicate(app: Celery, job: JobDocument, holder: str) -> None:
    error = JobError(ErrorCode.DUPLICATE_IN_PROGRESS,
                     f"job {holder} with the same idempotency key {job.idempotency_key!r} is still in progress",
                     details={"holder": holder, "idempotency_key": job.idempotency_key}, recoverable=True)
    app.backend.save_final(failure_result(
        job.job_id, ErrorInfo.from_job_error(error, "submission"), finished_at=utc_now(),
        attempt=job.execution.attempt, idempotency_key=job.idempotency_key,
        observability=job.observability_dict))
