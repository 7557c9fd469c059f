"""Keep the event loop's timer heap free of cancelled time-limit timers.

Why: every job is published with ``soft_time_limit``/``time_limit`` (``app.intake.api.publish``). With an
event loop (Redis, RabbitMQ) the prefork pool arms one timer per job on the loop's kombu timer
(``celery/concurrency/asynpool.py``, ``AsynPool._create_timelimit_handlers``: ``on_timeout_set``
calls ``hub.call_later(soft, ...)``) and, when the job finishes, ``on_timeout_cancel`` only calls
``Entry.cancel()``, which sets a flag. kombu's ``Timer`` (``kombu/asynchronous/timer.py``) keeps a
cancelled entry in its heap until its due time, when ``Timer.__iter__`` pops and skips it. So the
main process holds every finished job's timer (entry, weak proxy, args and heap tuple: about 0.5 KB)
for the job's whole timeout: at a few hundred jobs a second and 60 s timeouts, tens of thousands of
dead entries and several MiB that look like a leak. asyncio avoids the same problem by rebuilding its
heap once cancelled handles dominate (``BaseEventLoop._run_once``); kombu does not, so this bootstep
does it: every ``INTERVAL`` seconds, on the loop itself (no locking needed), it drops the cancelled
entries and heapifies what is left, in place (the hub and the timer's iterator hold that list).

Without an event loop (the embedded broker) the pool enforces time limits with billiard's own
timeout thread, the consumer's timer is Celery's timer thread, and there is nothing to do.

``celery -A app inspect timer_heap`` reports the heap's size and how many entries are cancelled.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

from celery import bootsteps
from celery.worker.control import inspect_command

logger = logging.getLogger(__name__)

#: seconds between compactions: the heap holds at most this long's worth of finished jobs' timers
INTERVAL = 1.0


def compact(timer: Any) -> int:
    """Drop the cancelled entries from a kombu ``Timer``'s heap, in place; return how many."""
    queue = timer._queue
    live = [event for event in queue if not event.entry.canceled]
    dropped = len(queue) - len(live)
    if dropped:
        heapq.heapify(live)
        queue[:] = live  # the same list object: Hub.create_loop and Timer.__iter__ keep references to it
    return dropped


def heap_stats(timer: Any) -> dict[str, int]:
    queue = list(timer._queue)
    return {"entries": len(queue), "cancelled": sum(1 for event in queue if event.entry.canceled)}


class TimerHeapCompactor(bootsteps.StartStopStep):
    """A consumer bootstep: compacts the event loop's timer heap every ``INTERVAL`` seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, consumer: Any) -> None:
        hub = getattr(consumer, "hub", None)
        if hub is None:  # no event loop: no per-job timers on it
            return
        self.tref = hub.call_repeatedly(INTERVAL, self._compact, hub.timer)

    def stop(self, consumer: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    @staticmethod
    def _compact(timer: Any) -> None:
        dropped = compact(timer)
        if dropped:
            logger.debug("timer heap: dropped %d cancelled entries, %d left", dropped, len(timer._queue))


@inspect_command()
def timer_heap(state: Any) -> dict[str, Any]:
    """The event loop's timer heap: entries, and how many of them are cancelled (none without a loop)."""
    hub = getattr(state.consumer, "hub", None)
    if hub is None:
        return {"event_loop": False}
    return {"event_loop": True, **heap_stats(hub.timer)}
