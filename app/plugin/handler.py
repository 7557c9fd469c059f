"""What a handler is and what it is given. No Celery here: handlers import nothing of ``app`` but
``app.plugin`` (this module, ``errors``, ``paths``, ``outputs``, ``atomic``).

A handler is a class with an ``operation`` name, one pydantic payload model per payload
version, the features it brings, and ``execute(ctx, payload)``. It is registered under the
``guestkit_worker.handlers`` entry-point group, exactly as a third-party package would do::

    [project.entry-points."guestkit_worker.handlers"]
    "system.echo" = "handlers.echo:EchoHandler"
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from app.plugin.limits import Limits


@dataclass
class HandlerResult:
    """What a handler returns: its output data, and files it produced."""

    data: dict[str, Any] = field(default_factory=dict)
    primary: str | None = None
    artifacts: list[str] = field(default_factory=list)
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None


class HandlerContext(Protocol):
    """Everything a handler may use while it runs a job."""

    job_id: str
    attempt: int
    logger: logging.LoggerAdapter
    work_dir: Path
    allowed_dirs: list[Path]
    #: backing files an image may have below it (``GUESTKIT_MAX_CHAIN_DEPTH``); 0 = none
    max_chain_depth: int
    max_disk_size_gb: int | None
    #: what the job may consume (``app.plugin.limits``): guest reads and walks take theirs from here
    limits: Limits

    def report_progress(
        self, phase: str, percent: int, message: str, details: dict[str, Any] | None = None
    ) -> None:
        """Record a progress event (0-100) in one of the standard phases."""

    def cancel_requested(self) -> bool:
        """True once somebody asked to cancel this job; a handler should stop soon after."""

    def allowed_path(self, path: str | Path, *, must_exist: bool = True) -> Path:
        """Resolve ``path`` and raise ``JobError(PATH_NOT_ALLOWED)`` if it leaves the allowed dirs."""


class Handler(ABC):
    """Base class of every operation handler."""

    operation: ClassVar[str]
    #: payload version number -> pydantic model of ``payload.data``
    payload_models: ClassVar[dict[int, type[BaseModel]]]
    #: features this handler brings (advertised by the worker, matched against constraints)
    features: ClassVar[tuple[str, ...]] = ()
    #: disk image formats it reads (advertised; informational)
    disk_formats: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        """Run the operation. Raise ``app.plugin.errors.JobError`` for failures with a contract code."""
