"""Graceful shutdown with a deadline.

Celery's warm shutdown (SIGTERM) waits for in-flight tasks for ever. Here SIGTERM starts that
warm shutdown and arms a timer: after ``guestkit_shutdown_grace`` seconds the worker turns it
into a cold shutdown (SIGQUIT to itself). Unfinished jobs are then never acknowledged, so the
broker hands them to another worker, which runs them as their next attempt (or ends them
``failed / WORKER_LOST`` when ``max_attempts`` is spent, as the contract's retry path demands).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from celery.signals import worker_shutting_down

logger = logging.getLogger(__name__)
_grace_seconds: float | None = None


def _cold_shutdown(signum: int, frame: Any) -> None:
    logger.warning("shutdown grace of %s s is over: stopping the jobs still running; "
                   "their messages go back to the queue", _grace_seconds)
    os.kill(os.getpid(), signal.SIGQUIT)


def _arm(sig: str, how: str, exitcode: int, **kwargs: Any) -> None:
    if how != "Warm" or _grace_seconds is None:
        return
    signal.signal(signal.SIGALRM, _cold_shutdown)
    signal.setitimer(signal.ITIMER_REAL, max(_grace_seconds, 0.001))
    logger.info("warm shutdown: in-flight jobs have %s s to finish", _grace_seconds)


def enable(grace_seconds: float) -> None:
    global _grace_seconds
    _grace_seconds = grace_seconds
    worker_shutting_down.connect(_arm, weak=False)
