"""Celery result backend over the job store: ``result_backend = "guestkit://"``.

Registered under the ``celery.result_backends`` entry point. Final results are the files
``<results_dir>/<job_id>-result.json`` (written atomically); every other state is read from
the job store, so ``AsyncResult(job_id)`` shows queued, assigned, running and PROGRESS too.

Celery states: completed → SUCCESS; failed and timeout → FAILURE; cancelled → REVOKED
(both raise ``JobFailed`` from ``get()``, carrying the result document).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from billiard.exceptions import WorkerLostError
from celery import states as celery_states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from app.plugin.atomic import write_atomic
from app.plugin.errors import ErrorCode, JobFailed
from app.protocol.results import ErrorInfo, ResultDocument, failure_result
from app.protocol.states import InvalidTransition, JobState, JobStatus, utc_now
from app.run import memory
from app.run.settings import Settings
from app.store.base import JobStore
from app.store.factory import open_store

#: our state → Celery state
CELERY_STATE = {
    JobState.PENDING: celery_states.PENDING,
    JobState.QUEUED: "QUEUED",
    JobState.ASSIGNED: "ASSIGNED",
    JobState.RUNNING: "RUNNING",
    JobState.COMPLETED: celery_states.SUCCESS,
    JobState.FAILED: celery_states.FAILURE,
    JobState.TIMEOUT: celery_states.FAILURE,
    JobState.CANCELLED: celery_states.REVOKED,
}
PROGRESS = "PROGRESS"


class GuestkitBackend(KeyValueStoreBackend):
    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app=app, url=url, **kwargs)
        self.url = url or "guestkit://"
        self.settings = Settings.from_conf(self.app.conf)
        self.store: JobStore = open_store(self.settings.store_url)
        self.settings.results_dir.mkdir(parents=True, exist_ok=True)
        self._kv = Path(self.settings.home) / "kv"

    def __reduce__(self, args: tuple = (), kwargs: dict | None = None):
        return super().__reduce__(args, dict(kwargs or {}, url=self.url))

    # --- final results --------------------------------------------------------------------
    def save_final(self, result: ResultDocument | dict[str, Any], *, current: JobStatus | None = None,
                   run_owner: str | None = None, progress: Sequence[dict[str, Any]] = (),
                   size: int | None = None) -> JobStatus:
        """Write the result file, then move the job to its terminal state (``size``: the document's
        ``compact_size`` when the caller has it).

        In that order: a worker that dies in between leaves a running job whose result exists,
        which the next delivery completes; the reverse order could lose the result. ``current``
        is the caller's running status when it holds the job's run lease: nobody else moves a
        running job on, so it need not be read again. ``run_owner``: the lease holder, whose
        lease ends with this write (and its last ``progress`` events with it).
        """
        doc = result.to_dict() if isinstance(result, ResultDocument) else result
        job_id = doc["job_id"]
        state = JobState(doc["status"])
        if current is None or current.state is not JobState.RUNNING:
            current = self.store.get(job_id)
        if current is not None and current.terminal:
            return current  # terminal states never change, whoever writes
        write_atomic(self.settings.result_path(job_id), encode_result(doc, size))

        def finish(stored: JobStatus) -> JobStatus:
            if stored.terminal:
                return stored  # ended meanwhile by someone else: that end stands
            return stored.model_copy(update={"error": doc.get("error")}).advance(
                state, reason=(doc.get("error") or {}).get("code"))

        if run_owner is not None:
            return self.store.end_run(job_id, run_owner, finish, expected=current, progress=progress)
        self.store.append_progress(job_id, *progress)
        return self.store.update(job_id, finish, expected=current)

    def end_unless_taken(self, result: ResultDocument) -> JobStatus | None:
        """End a job that has not started, from outside its run (a cancel, a job no worker can run):
        under its run lease, so no worker starts it meanwhile; None, writing nothing, when a worker
        holds the lease (it runs the job, or is starting it, and ends it itself). Without the lease,
        a worker that started the job between the caller's look and this write got its run ended
        here, then wrote its own result over this one: result file and state disagreed."""
        job_id = result.job_id
        owner = f"{socket.gethostname()}/{os.getpid()}/{threading.get_ident()}/outside"
        if not self.store.acquire_run(job_id, owner, ttl=self.settings.run_lease):
            return None
        try:
            return self.save_final(result)
        finally:
            self.store.release_run(job_id, owner)

    def read_result(self, job_id: str) -> dict[str, Any] | None:
        """The job's result file, read as itself: a symlink planted at its name is no result (the
        worker's write replaces it) and is never read through."""
        try:
            fd = os.open(self.settings.result_path(job_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise
        with open(fd, "rb") as handle:
            return json.loads(handle.read())

    # --- what Celery calls ----------------------------------------------------------------
    def _store_result(self, task_id: str, result: Any, state: str, traceback: Any = None,
                      request: Any = None, **kwargs: Any) -> Any:
        """Only failures Celery detects outside the task (hard time limit, revoke) land here;
        the task itself saves its results with ``save_final``."""
        if isinstance(result, JobFailed) or state not in (celery_states.FAILURE, celery_states.REVOKED):
            return result
        current = self.store.get(task_id)
        if current is None or current.terminal:
            return result
        if isinstance(result, (TimeLimitExceeded, SoftTimeLimitExceeded)):
            status, code = "timeout", ErrorCode.TIMEOUT
            message = f"the job ran past its time limit ({result}) and was killed"
        elif state == celery_states.REVOKED:
            status, code, message = "cancelled", ErrorCode.CANCELLED, "the job was revoked before it ran"
        elif isinstance(result, WorkerLostError):
            status, code = "failed", ErrorCode.WORKER_LOST
            message = f"the worker process running the job was lost: {result}"
        else:
            status, code = "failed", ErrorCode.EXECUTION_ERROR
            message = f"the job failed outside its handler: {type(result).__name__}: {result}"
        doc = failure_result(
            task_id, ErrorInfo(code=code, message=message, phase="execution",
                               recoverable=code in (ErrorCode.TIMEOUT, ErrorCode.WORKER_LOST),
                               retry_recommended=code in (ErrorCode.TIMEOUT, ErrorCode.WORKER_LOST)),
            status=status, worker_id=current.worker_id, started_at=current.started_at,
            finished_at=utc_now(), attempt=current.attempt, idempotency_key=current.idempotency_key,
        )
        try:
            self._finish_from_outside(current, doc)
        except InvalidTransition:
            pass  # e.g. queued → timeout is not a transition: the state machine has the last word
        return result

    def _finish_from_outside(self, current: JobStatus, doc: ResultDocument) -> None:
        if current.state is JobState.QUEUED and doc.status != "cancelled":
            self.store.update(current.job_id, lambda s: s.advance(JobState.ASSIGNED))
        self.save_final(doc)

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        doc = self.read_result(task_id)
        if doc is None:
            status = self.store.get(task_id)
            if status is None:
                return {"task_id": task_id, "status": celery_states.PENDING, "result": None}
            if not status.terminal:
                if status.state is JobState.RUNNING and (progress := self.store.latest_progress(task_id)):
                    return {"task_id": task_id, "status": PROGRESS, "result": progress}
                return {"task_id": task_id, "status": CELERY_STATE[status.state], "result": None}
            # it ended between the two reads: its result file is written before its terminal state
            doc = self.read_result(task_id) or _without_result_file(status)
        state = CELERY_STATE[JobState(doc["status"])]
        result: Any = doc
        if state != celery_states.SUCCESS:
            result = {"exc_type": "JobFailed", "exc_module": "app.plugin.errors", "exc_message": [doc]}
        return self.meta_from_decoded({"task_id": task_id, "status": state, "result": result, "traceback": None,
                                       "children": [], "date_done": doc.get("completed_at") or doc.get("failed_at")})

    # --- plain key/value, for Celery's own use (groups, chords) ---------------------------
    def _kv_path(self, key: bytes | str) -> Path:
        name = key.decode() if isinstance(key, bytes) else key
        return self._kv / name.replace("/", "_")

    def get(self, key: bytes | str) -> bytes | None:
        try:
            return self._kv_path(key).read_bytes()
        except FileNotFoundError:
            return None

    def mget(self, keys: list[bytes | str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(self, key: bytes | str, value: bytes | str) -> None:
        self._kv.mkdir(parents=True, exist_ok=True)
        write_atomic(self._kv_path(key), value.encode() if isinstance(value, str) else value)

    def delete(self, key: bytes | str) -> None:
        self._kv_path(key).unlink(missing_ok=True)


#: orjson reserves up to ~9 bytes of address space per byte of text it encodes with indentation,
#: and where an address-space limit refuses them it crashes the process (SIGSEGV) instead of
#: raising MemoryError; measured with orjson 3.13 (a 100 MB string needs 950 MB to 1 GB)
ORJSON_RESERVE_FACTOR = 12


def _without_result_file(status: JobStatus) -> dict[str, Any]:
    """What is known of a job that ended but whose result file is gone (removed by an operator or a
    clean-up): its status and error, said to be all there is."""
    error = dict(status.error or {})
    note = "its result file is missing (removed after the job ended)"
    error["message"] = f"{error['message']}; {note}" if error.get("message") else note
    return {"job_id": status.job_id, "status": status.state.value, "error": error,
            "result_file_missing": True}


def compact_size(doc: dict[str, Any]) -> int:
    """The document's size as compact JSON, in bytes (the C encoder: MemoryError, never a crash)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


def encode_result(doc: dict[str, Any], size: int | None = None) -> bytes:
    """The result file's text: indented JSON. orjson is ~10x faster than ``json`` with ``indent``
    (which runs in pure Python), and is used where the process has room for its worst case; ``json``
    otherwise, and for what orjson refuses (text with lone surrogates, e.g. undecodable file names
    read from a guest). ``size``: the document's ``compact_size``, if known."""
    if memory.address_space_limit() is not None:
        if not memory.room_for(ORJSON_RESERVE_FACTOR * (compact_size(doc) if size is None else size)):
            return json.dumps(doc, indent=2).encode() + b"\n"
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, indent=2).encode() + b"\n"
