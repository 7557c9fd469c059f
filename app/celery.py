"""The Celery application: ``celery -A app worker``.

One task per registered handler, named after its operation, all built on ``JobTask``.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

import app.brokers.embedded  # noqa: F401 - registers the embedded:// transport
import app.brokers.redis  # noqa: F401 - kombu's Redis transport with one client per channel
from app.intake.bridge_step import BridgeStep
from app.ops.heartbeat import Heartbeat
from app.plugin.registry import installed
from app.run import gc_freeze, memory, privileges, shutdown
from app.run.adapter import JobTask
from app.run.timer_heap import TimerHeapCompactor

MAX_PRIORITY = 10

# Flower (``celery -A app flower``) listens on every interface unless told otherwise; its pages
# control workers and its /metrics is unauthenticated: loopback unless FLOWER_ADDRESS says so
os.environ.setdefault("FLOWER_ADDRESS", "127.0.0.1")

app = Celery("guestkit")
app.config_from_object("celeryconfig")
app.conf.task_queues = [
    Queue(pool, routing_key=pool, queue_arguments={"x-max-priority": MAX_PRIORITY})
    for pool in app.conf.guestkit_pools
]
shutdown.enable(app.conf.guestkit_shutdown_grace)
gc_freeze.enable()
privileges.enable()
memory.enable(app.conf.guestkit_child_memory_mb)
for _operation, _handler in installed(app.conf.guestkit_extra_handlers).handlers.items():
    app.register_task(type(f"{_handler.__name__}Task", (JobTask,),
                           {"name": _operation, "handler_class": _handler, "__module__": __name__})())
app.steps["consumer"].add(Heartbeat)
# finished jobs' time-limit timers would stay in the event loop's heap for their whole timeout
app.steps["consumer"].add(TimerHeapCompactor)
# the file-drop bridge runs on the worker's timer
app.steps["consumer"].add(BridgeStep)
