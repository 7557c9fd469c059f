"""The context a handler runs in: progress, cancellation, paths, work directory, logging."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from time import monotonic
from typing import Any

from app.plugin.limits import Limits
from app.plugin.paths import resolve_allowed
from app.protocol.models import JobDocument, ProgressEvent
from app.protocol.states import utc_now
from app.store.base import JobStore

logger = logging.getLogger("guestkit.job")
#: progress events reported closer together than this are written (and sent to Flower) together
PROGRESS_WRITE_INTERVAL = 0.1


class JobLogger(logging.LoggerAdapter):
    """Prefixes every line with ``[job_id]``."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        return f"[{self.extra['job_id']}] {msg}", kwargs


class JobContext:
    def __init__(
        self, job: JobDocument, attempt: int, store: JobStore, *, allowed_dirs: list[Path],
        work_root: Path, max_chain_depth: int = 0, send_event: Callable[..., Any] | None = None,
        progress_count: int | None = None, limits: Limits | None = None,
    ) -> None:
        self.job = job
        self.job_id = job.job_id
        self.attempt = attempt
        self.store = store
        self.allowed_dirs = allowed_dirs
        self.max_chain_depth = max_chain_depth
        self.limits = limits or Limits()
        self.max_disk_size_gb = job.constraints.maximum_disk_size_gb if job.constraints else None
        self.logger = JobLogger(logger, {"job_id": job.job_id})
        self._work_root = work_root
        self._send_event = send_event
        self._sequence = len(store.progress(job.job_id)) if progress_count is None else progress_count
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._written_at = monotonic()

    @cached_property
    def work_dir(self) -> Path:
        """This job's own directory (mode 0700, a new random name for each attempt): nothing planted
        beforehand at a guessable name (a symlink) is ever written through."""
        self._work_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{self.job_id}-", dir=self._work_root))

    def cleanup(self) -> None:
        if "work_dir" in self.__dict__:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def report_progress(self, phase: str, percent: int, message: str,
                        details: dict[str, Any] | None = None) -> None:
        event = ProgressEvent(
            job_id=self.job_id, timestamp=utc_now(), sequence=self._sequence, phase=phase,
            progress_percent=max(0, min(100, int(percent))), message=message, details=details or {},
            observability=self.job.observability_dict,
        ).model_dump(mode="json")
        self._sequence += 1
        with self._pending_lock:
            self._pending.append(event)
        self.write_due_progress()
        self.logger.info("%s - %s (%d%%)", phase, message, event["progress_percent"])

    def write_due_progress(self, *, wait: bool = True) -> None:
        """Write the pending events if the last write is ``PROGRESS_WRITE_INTERVAL`` old: on each
        report, and from the cancel watcher while the handler runs (there with ``wait=False``: a
        signal handler gives up at once if the code it interrupted is writing them)."""
        if monotonic() - self._written_at >= PROGRESS_WRITE_INTERVAL:
            self.flush_progress(wait=wait)

    def flush_progress(self, *, wait: bool = True, announce: bool = True) -> None:
        """Write the events reported since the last write, in one store write, and (``announce``)
        send the latest to Flower (not when the job ends: its end is announced)."""
        if not self._pending_lock.acquire(blocking=wait):
            return
        try:
            events, self._pending = self._pending, []
            if not events:
                return
            self._written_at = monotonic()
            try:
                self.store.append_progress(self.job_id, *events)
            except self.store.unavailable as exc:  # kept, and written with the next ones
                self._pending[:0] = events
                self.logger.warning("progress events %d-%d not stored yet: %s", events[0]["sequence"],
                                    events[-1]["sequence"], exc)
                return
        finally:
            self._pending_lock.release()
        if announce and self._send_event is not None:  # the job's end is announced by Celery
            self._send_event("task-progress", progress=events[-1])

    def take_progress(self) -> list[dict[str, Any]]:
        """The events not written yet, for the caller to write (with the job's end)."""
        with self._pending_lock:
            events, self._pending = self._pending, []
        return events

    def cancel_requested(self) -> bool:
        try:
            return self.store.cancel_requested(self.job_id)
        except self.store.unavailable:
            return False  # cannot know: keep going; the request is seen once the store is back

    def allowed_path(self, path: str | Path, *, must_exist: bool = True) -> Path:
        return resolve_allowed(path, self.allowed_dirs, must_exist=must_exist)
