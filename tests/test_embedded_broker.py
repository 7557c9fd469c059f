"""The embedded broker's promises, through kombu directly: priority order, no message lost
when its consumer dies, and event queues whose reader is gone expire."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kombu import Connection, Exchange, Queue

import app.embedded_broker as embedded


def _publish(url: str, queue: Queue, bodies: list[dict], priorities: list[int] | None = None) -> None:
    with Connection(url) as conn:
        producer = conn.Producer()
        for index, body in enumerate(bodies):
            producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue],
                             priority=priorities[index] if priorities else None)


def _drain(url: str, queue: Queue, count: int, ack: bool = True) -> list[dict]:
    got: list[dict] = []
    with Connection(url) as conn, conn.Consumer(queue, callbacks=[
            lambda body, message: (got.append(body), message.ack() if ack else None)]):
        while len(got) < count:
            conn.drain_events(timeout=5)
    return got


def test_higher_priority_first_then_arrival_order(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": i} for i in range(6)], priorities=[1, 10, 5, 10, 1, 5])
    assert [b["n"] for b in _drain(url, queue, 6)] == [1, 3, 2, 5, 0, 4]


def test_message_taken_by_a_killed_consumer_comes_back(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 1}])
    script = (
        "import os, app.embedded_broker\n"
        "from kombu import Connection, Exchange, Queue\n"
        f"q = Queue('jobs', Exchange('jobs'), 'jobs')\n"
        f"with Connection({url!r}) as c, c.Consumer(q, callbacks=[lambda b, m: os.kill(os.getpid(), 9)]):\n"
        "    c.drain_events(timeout=5)\n"
    )
    child = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert child.returncode == -9
    assert os.listdir(tmp_path / "unacked")  # the message waits there, not lost
    assert _drain(url, queue, 1) == [{"n": 1}]
    assert os.listdir(tmp_path / "unacked") == []


def test_event_queue_of_a_gone_reader_expires(tmp_path: Path, monkeypatch) -> None:
    url = f"embedded://{tmp_path}"
    events = Exchange("celeryev", type="topic")
    reader = Queue("celeryev.gone-reader", events, "#")
    with Connection(url) as conn:
        reader(conn.default_channel).declare()
    _publish(url, Queue("celeryev.other", events, "nothing"), [{"e": 1}])
    queued = [n for n in os.listdir(tmp_path / "queue") if "gone-reader" in n]
    assert len(queued) == 1  # a live binding receives events
    monkeypatch.setattr(embedded, "EVENT_QUEUE_EXPIRES", 0.0)
    time.sleep(0.01)  # the alive mark must be older than the (zero) expiry
    _publish(url, Queue("celeryev.other", events, "nothing"), [{"e": 2}])
    assert [n for n in os.listdir(tmp_path / "queue") if "gone-reader" in n] == []


def test_running_consumer_recovers_what_a_dead_unreaped_consumer_took(tmp_path: Path) -> None:
    """The process that took the message is killed and left unreaped (a zombie); a channel that
    was open before gets the message back without a restart."""
    import psutil

    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 7}])
    script = (
        "import os, app.embedded_broker\n"
        "from kombu import Connection, Exchange, Queue\n"
        "q = Queue('jobs', Exchange('jobs'), 'jobs')\n"
        f"with Connection({url!r}) as c, c.Consumer(q, callbacks=[lambda b, m: os.kill(os.getpid(), 9)]):\n"
        "    c.drain_events(timeout=30)\n"
    )
    got: list[dict] = []
    with Connection(url) as conn:
        assert conn.default_channel is not None  # opened (and swept) before the taker dies
        taker = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.monotonic() + 30
        while psutil.Process(taker.pid).status() != psutil.STATUS_ZOMBIE:  # dead, deliberately not reaped
            assert time.monotonic() < deadline, "the taker never took the message"
            time.sleep(0.01)
        assert os.listdir(tmp_path / "unacked")
        with conn.Consumer(queue, callbacks=[lambda body, message: (got.append(body), message.ack())]):
            conn.drain_events(timeout=10)
        taker.wait()
    assert got == [{"n": 7}]
