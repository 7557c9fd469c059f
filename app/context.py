"""The context a handler runs in: progress, cancellation, paths, work directory, logging."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from app.paths import resolve_allowed
from app.protocol import JobDocument, ProgressEvent
from app.states import utc_now
from app.store import JobStore

logger = logging.getLogger("guestkit.job")


class JobLogger(logging.LoggerAdapter):
    """Prefixes every line with ``[job_id]``."""

    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        return f"[{self.extra['job_id']}] {msg}", kwargs


class JobContext:
    def __init__(
        self, job: JobDocument, attempt: int, store: JobStore, *, allowed_dirs: list[Path],
        work_root: Path, send_event: Callable[..., Any] | None = None,
    ) -> None:
        self.job = job
        self.job_id = job.job_id
        self.attempt = attempt
        self.store = store
        self.allowed_dirs = allowed_dirs
        self.max_disk_size_gb = job.constraints.maximum_disk_size_gb if job.constraints else None
        self.logger = JobLogger(logger, {"job_id": job.job_id})
        self._work_root = work_root
        self._send_event = send_event
        self._sequence = len(store.progress(job.job_id))

    @cached_property
    def work_dir(self) -> Path:
        path = self._work_root / self.job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

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
        try:
            self.store.append_progress(self.job_id, event)
        except self.store.unavailable as exc:  # progress is best effort while the store is away
            self.logger.warning("progress event %d not stored: %s", event["sequence"], exc)
        if self._send_event is not None:
            self._send_event("task-progress", progress=event)
        self.logger.info("%s - %s (%d%%)", phase, message, event["progress_percent"])

    def cancel_requested(self) -> bool:
        try:
            return self.store.cancel_requested(self.job_id)
        except self.store.unavailable:
            return False  # cannot know: keep going; the request is seen once the store is back

    def allowed_path(self, path: str | Path, *, must_exist: bool = True) -> Path:
        return resolve_allowed(path, self.allowed_dirs, must_exist=must_exist)
