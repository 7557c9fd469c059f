"""Real worker processes for the tests and the benchmarks. No side effects on import (unlike
``tests.conftest``, which configures the session's environment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CELERY = str(Path(sys.executable).with_name("celery"))
ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)


class WorkerProcess:
    def __init__(self, name: str, log: Path, env: dict[str, str], args: list[str]) -> None:
        self.name = name
        self.log = log
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> WorkerProcess:
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        wait_for(lambda: b" ready." in self.log.read_bytes()[offset:] or self.proc.poll() is not None,
                 ready_timeout, f"worker {self.name} to be ready")
        assert self.proc.poll() is None, f"worker {self.name} exited:\n{self.log.read_text()[-3000:]}"
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and every child."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")
