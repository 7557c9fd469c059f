"""Helpers of the monitoring tests: real ``celery -A app flower`` / ``celery -A app metrics``
processes on a free port (the port is read from their log), and a small HTTP client."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import CELERY, ROOT, wait_for


class ServiceProcess:
    """A Celery sub-command serving HTTP on 127.0.0.1, port 0 (any free one); ``url`` is its base URL,
    read from the line of its log that ``url_pattern`` matches (one group: the port)."""

    def __init__(self, name: str, args: list[str], log: Path, url_pattern: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = [CELERY, "-A", "app", *args]
        self.log = log
        self.pattern = re.compile(url_pattern.encode())
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=handle,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc
        match = wait_for(lambda: self.pattern.search(self.log.read_bytes()) or proc.poll() is not None,
                         timeout, f"{self.name} to listen")
        assert proc.poll() is None, f"{self.name} exited:\n{self.text()[-3000:]}"
        self.url = f"http://127.0.0.1:{int(match.group(1))}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def flower(log_dir: Path, *extra: str) -> ServiceProcess:
    """Flower against the configured broker, as the README starts it (loopback, given port)."""
    return ServiceProcess("flower", ["flower", "--address=127.0.0.1", "--port=0", *extra], log_dir / "flower.log",
                          r"Visit me at http://127\.0\.0\.1:(\d+)").start()


def metrics(log_dir: Path, *extra: str, env: dict[str, str] | None = None, name: str = "metrics") -> ServiceProcess:
    return ServiceProcess(name, ["metrics", "--port=0", *extra], log_dir / f"{name}.log",
                          r"serving http://127\.0\.0\.1:(\d+)/metrics", env).start()


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def http_get(url: str, credentials: tuple[str, str] | None = None, timeout: float = 10.0) -> Response:
    """GET ``url``; an HTTP error status is a Response too, not an exception."""
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, dict(reply.headers), reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers), error.read())
