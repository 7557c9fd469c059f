"""The Python API: submit jobs, follow them, cancel them.

    from app.intake.api import submit
    handle = submit("jobs/test-echo-001.json")
    print(handle.result(timeout=30))
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.intake import submission
from app.intake.submission import SubmitFailed
from app.plugin.errors import ErrorCode, JobError
from app.protocol.models import JobDocument
from app.protocol.results import ErrorInfo, failure_result
from app.protocol.states import InvalidTransition, JobState, JobStatus, utc_now

if TYPE_CHECKING:  # not imported here: celery's package is not safe to import from two threads at once
    from celery import Celery

    from app.run.backend import GuestkitBackend

__all__ = ["CancelRefused", "JobHandle", "SubmitFailed", "cancel", "list_jobs", "publish", "status", "submit"]


class CancelRefused(Exception):
    """The job cannot be cancelled (not cancellable, or already ended)."""


def _app() -> Celery:
    """The assembled guestkit app, imported on first use (not when ``celery`` loads its sub-commands)."""
    from app.celery import app

    return app


def _backend() -> GuestkitBackend:
    return _app().backend


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
    job = submission.submit(_app(), source, keep_queued_on_broker_error=keep_queued_on_broker_error)
    handle = JobHandle(job.job_id)
    if wait:
        handle.result(timeout)
    return handle


def publish(job: JobDocument, queued: JobStatus | None = None) -> None:
    """Send a stored job to the broker again (its message was lost; a duplicate never runs twice)."""
    submission.publish(_app(), job, queued)


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
    app = _app()
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
        try:  # (None: a worker took it meanwhile; it sees the request and stops)
            backend.end_unless_taken(failure_result(job_id, ErrorInfo.from_job_error(error, "queued"),
                                                    status="cancelled", finished_at=utc_now(),
                                                    attempt=current.attempt, idempotency_key=current.idempotency_key))
        except InvalidTransition:
            pass  # a worker ran it meanwhile and left it in a state a cancel cannot follow
    app.control.revoke(job_id)
    return store.get(job_id)  # type: ignore[return-value]
