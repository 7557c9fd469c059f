"""A warning when the worker (or the bridge) runs as root: nothing it does needs root, and an image or
a job document that got past a check would act with root's rights. README: "Running without root"."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_ready

logger = logging.getLogger("guestkit.worker")

ROOT_WARNING = ("running as root, which nothing guestkit-worker does needs: run it as an unprivileged user "
                "that owns its directories (README: Running without root)")


def warn_if_root(who: str = "worker") -> bool:
    """Log the warning when this process runs as root; True if it did."""
    if os.geteuid() != 0:
        return False
    logger.warning("%s %s", who, ROOT_WARNING)
    return True


def _on_ready(**_: Any) -> None:
    warn_if_root()


def enable() -> None:
    worker_ready.connect(_on_ready, weak=False)
