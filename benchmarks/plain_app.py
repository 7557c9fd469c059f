"""The plain Celery baseline: one no-op task, configured only from ``BENCH_*`` environment variables.

    celery -A benchmarks.plain_app worker ...

Nothing of the platform is imported here. The task returns the wall-clock time it started at, so the
client can measure submit -> running without turning on ``task_track_started``.
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery
from kombu import Queue


def make_app(broker_url: str, backend_url: str, queue: str, transport_options: dict | None = None,
             matched: bool = True) -> Celery:
    app = Celery("plainbench")
    app.conf.update(
        broker_url=broker_url,
        result_backend=backend_url,
        task_default_queue=queue,
        task_queues=[Queue(queue, routing_key=queue)],
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options or {},
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
    )
    if matched:  # the platform's delivery guarantees (celeryconfig.py): same Celery, same contract
        app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1)
    app.task(name="bench.noop")(noop)
    return app


def noop() -> float:
    return time.time()


app = make_app(
    os.environ.get("BENCH_BROKER_URL", "memory://"),
    os.environ.get("BENCH_RESULT_BACKEND", "cache+memory://"),
    os.environ.get("BENCH_QUEUE", "bench"),
    json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS", "{}")),
    matched=os.environ.get("BENCH_MATCHED", "1") == "1",
)
