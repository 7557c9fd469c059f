"""``celery -A app metrics``: the metrics endpoint as a process of its own.

    celery -A app metrics [--address 127.0.0.1] [--port 9808] [--cache-seconds 5]

Serves ``/metrics`` (Prometheus text format) and ``/healthz`` (JSON; HTTP 200 when the broker and
the job store can be reached, 503 otherwise). One request at a time, in the main thread: a scrape
is never run twice at once. Unauthenticated: it binds to the loopback address unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlsplit

import click
from celery.bin.base import CeleryCommand
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from app.ops.metrics import Monitor

logger = logging.getLogger("guestkit.metrics")
DEFAULT_PORT = 9808


class MetricsServer(HTTPServer):
    def __init__(self, address: tuple[str, int], monitor: Monitor) -> None:
        super().__init__(address, MetricsHandler)
        self.monitor = monitor


class MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = 10  # seconds a client may take to send its request: a slow one cannot hold the server

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_PLAIN_0_0_4, self.server.monitor.metrics_text())
        elif path == "/healthz":
            report = self.server.monitor.health()
            self._send(200 if report["ok"] else 503, "application/json",
                       json.dumps(report, indent=2).encode() + b"\n")
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", b"guestkit metrics: /metrics /healthz\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug("%s %s", self.address_string(), format % args)


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(0)


@click.command(cls=CeleryCommand)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes unauthenticated data.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port (0: any free port).")
@click.option("--cache-seconds", type=float, default=5.0, show_default=True,
              help="Scrapes sooner than this after the previous one get its answer again.")
@click.option("--heartbeat-max-age", type=float, default=None,
              help="A worker whose last heartbeat is older is reported down (default: two heartbeats).")
@click.option("-l", "--loglevel", default="INFO", help="Logging level.")
@click.pass_context
def metrics(ctx: click.Context, address: str, port: int, cache_seconds: float, heartbeat_max_age: float | None,
            loglevel: str) -> None:
    """Serve Prometheus metrics (/metrics) and a health report (/healthz) of the platform."""
    logging.basicConfig(level=loglevel.upper(), stream=sys.stderr,
                        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
    monitor = Monitor(ctx.obj.app, cache_seconds=cache_seconds, heartbeat_max_age=heartbeat_max_age)
    server = MetricsServer((address, port), monitor)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    host, bound = server.server_address[:2]
    logger.info("metrics: serving http://%s:%s/metrics and /healthz", host, bound)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        logger.info("metrics: stopped")
