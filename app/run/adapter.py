"""The one Celery Task base class that runs every handler under the v1 contract.

Around ``handler.execute`` it re-checks the job on the worker, drives the state machine
(queued → assigned → running → terminal), enforces the time limit, watches for cancellation,
retries recoverable failures, settles idempotency keys, measures cpu and memory, and turns
every outcome into a result document saved through the result backend.
"""

from __future__ import annotations

import logging
import os
import resource
import traceback
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from time import monotonic
from typing import Any, ClassVar, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded

from app.plugin.errors import ErrorCode, JobError, JobFailed, ValidationFailed
from app.plugin.handler import Handler, HandlerResult
from app.plugin.limits import ResourceLimitExceeded
from app.plugin.registry import installed
from app.protocol.models import JobDocument
from app.protocol.results import ErrorInfo, Metrics, ResultDocument, failure_result, replayed_result, success_result
from app.protocol.states import InvalidTransition, JobState, JobStatus, utc_now
from app.protocol.validation import validate
from app.run import memory
from app.run.backend import GuestkitBackend, compact_size
from app.run.context import JobContext
from app.run.interrupts import CancelRequested, cancel_watch, kill_children
from app.run.settings import Settings
from app.run.workers import WorkerAdvert, build_advert, unmet_constraints
from app.store.base import RunView

logger = logging.getLogger(__name__)
#: seconds before a job whose store could not be reached is looked at again
STORE_RETRY_SECONDS = 5.0
_STATUS_FOR_CODE = {ErrorCode.TIMEOUT: "timeout", ErrorCode.CANCELLED: "cancelled"}


class JobTask(Task):
    """Base of the task made for each handler; the task is named after the operation."""

    handler_class: ClassVar[type[Handler]]
    typing = False
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True  # the task saves its own result (save_final), once
    store_errors_even_if_ignored = True  # but hard time limits and revokes reach the backend
    throws = (JobFailed,)  # an expected outcome, logged without a traceback
    max_retries = None  # attempts are counted (and bounded by max_attempts) in the job store

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_conf(self.app.conf)

    @property
    def results(self) -> GuestkitBackend:
        backend = self.backend
        assert isinstance(backend, GuestkitBackend), "result_backend must be guestkit://"
        return backend

    def run(self, document: dict[str, Any], queued: dict[str, Any] | None = None) -> str:
        """Run the job; return its status and where its result document is, as one short string
        (the task's return value is logged, pickled to the worker's main process and put into the
        task-succeeded event: a whole result document would cost each of them on every job).
        ``queued``: the status the job was queued with, as ``app.intake.api.submit`` stored it."""
        try:
            doc = self._run(document, queued)
            return f"{doc['status']}: {self.settings.result_path(doc['job_id'])}"
        except self.results.store.unavailable as exc:
            # nothing can be recorded now: keep the job, and look at it again once the store is back
            logger.warning("[%s] job store unavailable (%s): trying again in %s s", self.request.id, exc,
                           STORE_RETRY_SECONDS)
            self._later(STORE_RETRY_SECONDS, exc)

    def _run(self, document: dict[str, Any], queued: dict[str, Any] | None = None) -> dict[str, Any]:
        job_id = self.request.id
        store = self.results.store
        try:
            job = validate(document, timeout_ceiling=self.settings.timeout_ceiling,
                           payload_models={self.name: self.handler_class.payload_models})
        except ValidationFailed as exc:
            self._ensure_known(job_id, document)
            return self._fail(job_id, exc, phase="validation")
        if job.job_id != job_id:
            raise Ignore()  # not published by us: task id and job_id always agree
        owner = self._run_owner
        # the run lease, the status, the cancel flag, the progress count and the key's holder, read
        # at once; and, where nothing can stand in the way, the start (queued → running) with them
        view = store.open_run(job_id, owner, ttl=self.settings.run_lease, key=job.idempotency_key,
                              start=self._start_at_once(job, queued))
        if not view.leased:
            # another live process runs this very job (a duplicate delivery, e.g. after a Redis
            # visibility timeout): keep the message, and look again once that run may be over
            self._later(max(1.0, self.settings.run_lease / 2))
        try:
            if view.started:
                return self._execute(job, view.status, view)  # type: ignore[arg-type]
            status = view.status or self._ensure_known(job_id, document)
            if status.terminal:
                raise Ignore()  # a redelivery of a job that already ended: nothing to do
            return self._run_leased(job, status, view)
        finally:
            store.release_run(job_id, owner)

    def _run_leased(self, job: JobDocument, status: JobStatus, view: RunView) -> dict[str, Any]:
        """Everything after the run lease is ours: nobody else moves this job on once it runs."""
        store = self.results.store
        job_id = job.job_id
        status = self._recover_interrupted(job, status)
        if status.terminal:
            raise Ignore()
        try:
            if status.state is JobState.QUEUED:
                self._check_constraints(job, status)
            self._precheck(job, view.cancel_requested)
            replay = None if view.key_holder == job_id else self._settle_key(job)
        except JobError as exc:
            return self._fail(job_id, exc, phase="validation", status=status)
        worker = self._worker_id
        try:
            status = store.update(job_id, lambda current: _start(current, worker), expected=status)
        except InvalidTransition:
            raise Ignore() from None  # it ended meanwhile (cancelled while queued)
        if replay is not None:
            self.results.save_final(replay, current=status)
            return replay
        return self._execute(job, status, view)

    # --- steps ------------------------------------------------------------------------------
    def _start_at_once(self, job: JobDocument, queued: dict[str, Any] | None) -> tuple[JobStatus, JobStatus] | None:
        """(the status the job was queued with, the same started) when the job may start without
        another look: its deadline has not passed and this worker meets its constraints. The store
        starts it only if its status is still that one (not retried, cancelled or run before), no
        cancel was asked for and the job holds its idempotency key; otherwise the run goes the
        long way (``_run_leased``), which reads and decides each of these."""
        if queued is None or unmet_constraints(job, self._advert):
            return None
        if job.execution.deadline is not None and utc_now() > job.execution.deadline:
            return None
        try:
            expected = JobStatus.model_validate(queued)
            return expected, _start(expected, self._worker_id)
        except (ValueError, InvalidTransition):  # not a queued status of ours: the long way
            return None

    @property
    def _worker_id(self) -> str:
        return self.request.hostname or self.settings.worker_id

    @property
    def _run_owner(self) -> str:
        """Who holds a run lease: this worker process."""
        return f"{self._worker_id}/{os.getpid()}"

    def _ensure_known(self, job_id: str, document: dict[str, Any]) -> JobStatus:
        """The job's status, created as queued if it was published without our API."""
        store = self.results.store
        status = store.get(job_id)
        if status is None:
            execution = document.get("execution") if isinstance(document.get("execution"), dict) else {}
            fresh = JobStatus(job_id=job_id, operation=self.name,
                              max_attempts=_int(execution.get("max_attempts"), 1),
                              attempt=_int(execution.get("attempt"), 1),
                              idempotency_key=execution.get("idempotency_key"))
            store.create(fresh.advance(JobState.QUEUED, reason="published without the platform API"))
            status = store.get(job_id)
            assert status is not None
        return status

    def _recover_interrupted(self, job: JobDocument, status: JobStatus) -> JobStatus:
        """A delivery that finds its job assigned or running: the previous worker died."""
        store = self.results.store
        if status.state is JobState.RUNNING:
            earlier = self.results.read_result(job.job_id)
            if earlier is not None:  # died after writing the result, before the state
                return self.results.save_final(earlier)
            if status.attempt >= job.execution.max_attempts:
                error = JobError(ErrorCode.WORKER_LOST,
                                 f"the worker running attempt {status.attempt} of {job.execution.max_attempts} "
                                 "was lost (killed or crashed); no attempts left",
                                 details={"attempts": status.attempt}, recoverable=False)
                self._fail(job.job_id, error, phase="execution", status=status, raise_=False)
                return store.get(job.job_id)  # type: ignore[return-value]
            status = store.update(job.job_id, lambda s: s.retry(reason="worker lost"))
        return status

    def _precheck(self, job: JobDocument, cancel_requested: bool) -> None:
        now = utc_now()
        if job.execution.deadline is not None and now > job.execution.deadline:
            raise JobError(ErrorCode.DEADLINE_EXCEEDED,
                           f"the job was not started before its deadline {job.execution.deadline.isoformat()}",
                           details={"deadline": job.execution.deadline.isoformat(), "now": now.isoformat()})
        if cancel_requested:
            raise JobError(ErrorCode.CANCELLED, "the job was cancelled before it started")

    @cached_property
    def _advert(self) -> WorkerAdvert:
        """What this worker offers, as it advertises it."""
        return build_advert(self.settings, installed(self.app.conf.guestkit_extra_handlers), self._worker_id, 1, 0)

    def _check_constraints(self, job: JobDocument, status: JobStatus) -> None:
        """Run only where every constraint is met. Elsewhere the job goes back to the queue for
        another worker, for up to ``guestkit_capability_wait`` seconds, then fails."""
        unmet = unmet_constraints(job, self._advert)
        if not unmet:
            return
        queued_at = status.history[-1].at if status.history else status.created_at
        waited = (utc_now() - queued_at).total_seconds()
        if waited < self.settings.capability_wait:
            self._later(min(5.0, max(0.5, self.settings.capability_wait / 10)))
        raise JobError(ErrorCode.CAPABILITY_MISMATCH,
                       f"worker {self._worker_id} cannot run this job, and none could in {waited:.0f} s: "
                       f"{'; '.join(unmet)}", details={"unmet": unmet, "worker_id": self._worker_id})

    def _settle_key(self, job: JobDocument) -> dict[str, Any] | None:
        """Hold the job's idempotency key; return the replayed result if an earlier job completed.
        (Not called when the job holds its key already: a key changes hands only once its holder
        ended, and a job that ended does not run again.)"""
        key = job.idempotency_key
        if key is None:
            return None
        claim = self.results.store.claim_key(key, job.job_id)
        if claim.won_by(job.job_id):
            return None
        if claim.holder_state is JobState.COMPLETED:
            earlier = self.results.read_result(claim.holder)
            if earlier is not None:
                return replayed_result(earlier, job.job_id)
        raise JobError(ErrorCode.DUPLICATE_IN_PROGRESS,
                       f"job {claim.holder} with the same idempotency key {key!r} is still in progress",
                       details={"holder": claim.holder, "idempotency_key": key}, recoverable=True)

    def _execute(self, job: JobDocument, status: JobStatus, view: RunView) -> dict[str, Any]:
        handler = self.handler_class()
        model = self.handler_class.payload_models[job.payload.version]
        ctx = JobContext(job, status.attempt, self.results.store, allowed_dirs=self.settings.allowed_dirs,
                         work_root=self.settings.work_dir, max_chain_depth=self.settings.max_chain_depth,
                         send_event=self._send_progress_event,
                         progress_count=view.progress_count, limits=self.settings.limits)
        started = status.started_at or utc_now()
        before, peak = _usage(), memory.JobPeak()
        phase = "execution"
        try:
            payload = model.model_validate(job.payload.data)
            with cancel_watch(self._watcher(ctx, self._run_owner)):
                outcome = handler.execute(ctx, payload)
            doc, size = self._completed(job, status, started, outcome, before, peak)
            # the last progress events, the terminal state and the end of the run lease in one write
            self.results.save_final(doc, current=status, run_owner=self._run_owner, progress=ctx.take_progress(),
                                    size=size)
        except SoftTimeLimitExceeded:
            kill_children()
            error = JobError(ErrorCode.TIMEOUT, f"the job ran longer than its timeout of "
                             f"{job.execution.timeout_seconds} s and was stopped",
                             details={"timeout_seconds": job.execution.timeout_seconds})
        except CancelRequested:
            kill_children()
            error = JobError(ErrorCode.CANCELLED, "the job was cancelled while it ran", recoverable=False)
        except MemoryError:
            memory.give_back()
            limit = self.settings.limits.child_memory_mb
            error = ResourceLimitExceeded(f"the job (peak {peak.mb():.0f} MiB resident when memory ran out)",
                                          "child_memory_mb", limit, None, "MiB")
        except JobError as exc:
            error = exc
        except self.results.store.unavailable:
            raise  # nothing can be recorded now: ``run`` keeps the job for later
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result, never a bare traceback
            error = JobError(ErrorCode.EXECUTION_ERROR, f"{type(exc).__name__}: {exc}",
                             details={"exception": type(exc).__name__,
                                      "traceback": traceback.format_exc(limit=-8).splitlines()[-12:]})
        else:
            ctx.cleanup()
            return doc.to_dict()
        ctx.flush_progress(announce=False)
        ctx.cleanup()
        if error.recoverable and error.code is not ErrorCode.TIMEOUT and status.attempt < job.execution.max_attempts:
            self._retry(job, status, error)
        return self._fail(job.job_id, error, phase=error.phase or phase, status=status, started=started,
                          metrics=_metrics(before, peak), job=job)

    def _completed(self, job: JobDocument, status: JobStatus, started: datetime, outcome: HandlerResult,
                   before: tuple[float, float], peak: memory.JobPeak) -> tuple[ResultDocument, int]:
        """The result document of a job whose handler returned, with its metrics, and its compact
        size: the memory peak is read once the document has been serialised (and found within
        ``max_result_bytes``)."""
        doc = success_result(
            job.job_id, worker_id=self._worker_id, started_at=started, finished_at=utc_now(),
            attempt=status.attempt, idempotency_key=job.idempotency_key, data=outcome.data,
            primary=outcome.primary, artifacts=outcome.artifacts, observability=job.observability_dict,
        )
        size, limit = compact_size(doc.to_dict()), self.settings.limits.max_result_bytes
        if size > limit:
            raise ResourceLimitExceeded("the result document", "max_result_bytes", limit, size)
        doc.metrics = _metrics(before, peak, outcome.disk_read_bytes, outcome.disk_write_bytes)
        return doc, size

    def _watcher(self, ctx: JobContext, owner: str) -> Callable[[], bool]:
        """Called every quarter second while the handler runs: writes progress events that wait,
        keeps the run lease fresh and says whether the job was cancelled."""
        store, lease = self.results.store, self.settings.run_lease
        refreshed = monotonic()

        def tick() -> bool:
            nonlocal refreshed
            ctx.write_due_progress(wait=False)
            if monotonic() - refreshed > lease / 3:
                try:
                    store.refresh_run(ctx.job_id, owner, lease)
                    refreshed = monotonic()
                except store.unavailable:
                    pass  # tried again next tick; the handler is not disturbed by a store outage
            return ctx.cancel_requested()

        return tick

    def _retry(self, job: JobDocument, status: JobStatus, error: JobError) -> None:
        self.results.store.update(job.job_id, lambda s: s.retry(reason=f"{error.code}: {error.message}"),
                                  expected=status)
        self._later(self.settings.retry_backoff * 2 ** (status.attempt - 1), error)

    def _later(self, countdown: float, exc: BaseException | None = None) -> NoReturn:
        """Deliver this job's message again in ``countdown`` seconds (Celery's retry; not an
        attempt of ours). If the new message cannot be published, this one goes back instead of
        being dropped, as Celery would otherwise do."""
        try:
            raise self.retry(countdown=countdown, max_retries=None, exc=exc)
        except Reject as rejected:
            raise Reject(rejected.reason, requeue=True) from None

    def _fail(self, job_id: str, error: JobError, *, phase: str, status: JobStatus | None = None,
              started: datetime | None = None, metrics: Metrics | None = None, job: JobDocument | None = None,
              raise_: bool = True) -> dict[str, Any]:
        status = status or self.results.store.get(job_id)
        doc: ResultDocument = failure_result(
            job_id, ErrorInfo.from_job_error(error, phase), status=_STATUS_FOR_CODE.get(error.code, "failed"),
            worker_id=self._worker_id, started_at=started or (status.started_at if status else None),
            finished_at=utc_now(), attempt=status.attempt if status else 1,
            idempotency_key=status.idempotency_key if status else None, metrics=metrics,
            observability=job.observability_dict if job else {},
        )
        self.results.save_final(doc, current=status)
        if raise_:
            raise JobFailed(doc.to_dict())
        return doc.to_dict()

    def _send_progress_event(self, type_: str, **fields: Any) -> None:
        """A ``task-progress`` event for Flower, through one dispatcher per worker process
        (``Task.send_event`` builds a dispatcher, and takes a connection, for every event). Sent
        whether or not the worker sends task events (as ``Task.send_event`` does): a worker process
        cannot know whether Flower turned them on; at most one per ``PROGRESS_WRITE_INTERVAL``."""
        try:
            self._events.send(type_, uuid=self.request.id, retry=False, **fields)
        except Exception:  # noqa: BLE001 - a lost progress event must not fail the job; the store has it
            logger.debug("[%s] progress event not sent", self.request.id, exc_info=True)
            self.__dict__.pop("_events", None)  # a fresh connection next time

    @cached_property
    def _events(self) -> Any:
        return self.app.events.Dispatcher(self.app.connection_for_write(), hostname=self._worker_id, enabled=True)


def _start(current: JobStatus, worker: str) -> JobStatus:
    """queued → assigned → running (or assigned → running), written as one change."""
    if current.state is JobState.QUEUED:
        current = current.advance(JobState.ASSIGNED, worker_id=worker)
    return current.advance(JobState.RUNNING, worker_id=worker)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _usage() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _metrics(before: tuple[float, float], peak: memory.JobPeak, read: int | None = None,
             written: int | None = None) -> Metrics:
    after = _usage()
    return Metrics(cpu_seconds=round(sum(after) - sum(before), 6), peak_memory_mb=peak.mb(),
                   disk_read_bytes=read, disk_write_bytes=written)
