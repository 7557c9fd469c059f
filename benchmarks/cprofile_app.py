"""The platform's Celery app with cProfile on the CPU clock in every worker process, for
``benchmarks.profile_job --cprofile``:

    BENCH_CPROFILE_DIR=... celery -A benchmarks.cprofile_app worker ...

The main process is profiled from ``worker_ready`` to ``worker_shutdown``, each prefork child from
its start to its end; each writes ``<role>-<pid>.pstats`` into ``BENCH_CPROFILE_DIR``. The clock is
``time.process_time``: time spent waiting (for Redis, for a busy CPU) is not counted, which is what
sampling profilers get wrong on a saturated machine.
"""

from __future__ import annotations

import cProfile
import os
import time
from pathlib import Path
from typing import Any

from celery import signals

from app.celery import app  # noqa: F401 - the app this module stands for

_profiles: dict[str, cProfile.Profile] = {}


def _start(role: str) -> None:
    profile = cProfile.Profile(time.process_time)
    _profiles[role] = profile
    profile.enable()


def _dump(role: str) -> None:
    profile = _profiles.pop(role, None)
    if profile is not None:
        profile.disable()
        out = Path(os.environ["BENCH_CPROFILE_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(out / f"{role}-{os.getpid()}.pstats")


def _main_ready(**_: Any) -> None:
    _start("main")


def _main_done(**_: Any) -> None:
    _dump("main")


def _child_started(**_: Any) -> None:
    _start("child")


def _child_done(**_: Any) -> None:
    _dump("child")


signals.worker_ready.connect(_main_ready, weak=False)
signals.worker_shutdown.connect(_main_done, weak=False)
signals.worker_process_init.connect(_child_started, weak=False)
signals.worker_process_shutdown.connect(_child_done, weak=False)
