"""Finished jobs' time-limit timers do not pile up in the worker's event loop (issue 8: memory flat).

With Redis or RabbitMQ every job arms a timer on the loop's kombu timer for its time limit; kombu only
flags a cancelled timer and keeps it until its due time (the job's timeout). ``app.run.timer_heap``
drops them; time limits themselves are covered by the timeout tests of ``tests/test_execution.py``.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from kombu.asynchronous import Hub

from app.celery import app as celery_app
from app.intake import api
from app.run.timer_heap import INTERVAL, TimerHeapCompactor, compact, heap_stats
from tests.conftest import make_job, routed, wait_for


def test_compaction_drops_cancelled_timers_and_keeps_the_live_ones() -> None:
    hub = Hub()
    fired: list[object] = []
    # as AsynPool.on_timeout_set / on_timeout_cancel do: a timer per job, cancelled when the job ends
    finished = [hub.call_later(60, fired.append, i) for i in range(1000)]
    for tref in finished:
        tref.cancel()
    hub.call_later(0, fired.append, "due")
    hub.call_later(60, fired.append, "not yet")
    heap = hub.timer._queue
    assert len(heap) == 1002

    assert compact(hub.timer) == 1000
    assert hub.timer._queue is heap  # in place: the loop holds this list
    assert heap_stats(hub.timer) == {"entries": 2, "cancelled": 0}
    hub.fire_timers()
    assert fired == ["due"]
    assert compact(hub.timer) == 0


def test_the_bootstep_compacts_on_the_loop_while_other_timers_fire() -> None:
    hub = Hub()
    fired: list[int] = []
    step = TimerHeapCompactor(SimpleNamespace(app=celery_app))
    step.start(SimpleNamespace(hub=hub))
    for i in range(500):
        hub.call_later(60, fired.append, -1).cancel()
        hub.call_later(INTERVAL, fired.append, i)  # due together with the compaction

    def loop_turn() -> bool:
        hub.fire_timers(max_timers=1000)
        return len(fired) == 500 and heap_stats(hub.timer) == {"entries": 1, "cancelled": 0}  # the step's own

    wait_for(loop_turn, 10 * INTERVAL, "the due timers to fire and the cancelled ones to be dropped")
    assert fired == list(range(500))
    step.stop(None)
    assert heap_stats(hub.timer)["cancelled"] == 1
    hub.close()


def test_without_an_event_loop_the_step_does_nothing() -> None:
    step = TimerHeapCompactor(SimpleNamespace(app=celery_app))
    step.start(SimpleNamespace(hub=None))
    assert step.tref is None
    step.stop(None)


@pytest.mark.broker
def test_a_worker_keeps_no_finished_jobs_timers(request: pytest.FixtureRequest, start_worker,
                                                pool_name: str) -> None:
    worker = start_worker(env={"GUESTKIT_POOLS": pool_name})
    handles = [api.submit(routed(make_job(timeout_seconds=60), pool_name)) for _ in range(300)]
    for handle in handles:
        assert handle.result(timeout=60)["status"] == "completed"
    destination = f"{worker.name}@{socket.gethostname()}"

    def heap() -> dict:
        replies = celery_app.control.broadcast("timer_heap", destination=[destination], reply=True, timeout=2)
        return next((reply[destination] for reply in replies if destination in reply), {})

    if request.config.getoption("--broker") == "embedded":
        # no event loop, so no heap to keep timers in: billiard's timeout thread keeps the time limits
        assert wait_for(heap, 10, "the worker's reply") == {"event_loop": False}
        return
    # without the compaction all 300 timers would stay, cancelled, for the jobs' 60 s timeout
    stats = wait_for(lambda: (s := heap()) and s["cancelled"] == 0 and s, 10, "the cancelled timers to go")
    assert stats["event_loop"] is True and stats["entries"] < 50
