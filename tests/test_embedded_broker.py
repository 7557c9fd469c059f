"""The embedded broker's promises, through kombu directly: priority order, no message lost
when its consumer dies, event queues whose reader is gone expire; and what keeps them cheap: the
listing kept from inotify, waits that end when a message comes or a slot frees, the publish path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

import app.brokers.embedded as embedded


def _consumer_script(url: str, on_message: str, then: str = "pass") -> str:
    """A Python program that takes one message from the ``jobs`` queue, runs ``on_message`` in its
    callback, then ``then``."""
    return (
        "import os, sys, app.brokers.embedded\n"
        "from kombu import Connection, Exchange, Queue\n"
        "q = Queue('jobs', Exchange('jobs'), 'jobs')\n"
        f"with Connection({url!r}) as c, c.Consumer(q, callbacks=[lambda b, m: {on_message}]):\n"
        "    c.drain_events(timeout=30)\n"
        f"    {then}\n"
    )


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
        "import os, app.brokers.embedded\n"
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


@pytest.mark.slow
def test_running_consumer_recovers_what_a_dead_unreaped_consumer_took(tmp_path: Path) -> None:
    """The process that took the message is killed and left unreaped (a zombie); a channel that
    was open before gets the message back without a restart."""
    import psutil

    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 7}])
    script = _consumer_script(url, "os.kill(os.getpid(), 9)")
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


# --- the cached listing, the waits, the publish path ---------------------------------------------
def _publish_elsewhere(url: str, bodies: list[dict], priorities: list[int]) -> None:
    """Publish to queue ``jobs`` from another process."""
    script = (
        "import sys, json, app.brokers.embedded\n"
        "from kombu import Connection, Exchange, Queue\n"
        "q = Queue('jobs', Exchange('jobs'), 'jobs')\n"
        f"with Connection({url!r}) as c:\n"
        "    p = c.Producer()\n"
        f"    for body, priority in zip({bodies!r}, {priorities!r}):\n"
        "        p.publish(body, exchange=q.exchange, routing_key='jobs', declare=[q], priority=priority)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def _hook_pause(monkeypatch) -> threading.Event:
    """An event set each time a transport starts to wait in drain_events."""
    waiting = threading.Event()
    original = embedded.Transport._pause

    def pause(self, limit: float) -> None:
        waiting.set()
        original(self, limit)

    monkeypatch.setattr(embedded.Transport, "_pause", pause)
    return waiting


needs_inotify = pytest.mark.skipif(embedded._INOTIFY is None, reason="no inotify on this system")


@needs_inotify
def test_a_message_that_arrives_after_the_listing_was_read_keeps_priority_order(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_RESYNC", 3600.0)  # only inotify can tell the consumer
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 0}, {"n": 1}], priorities=[1, 1])
    got: list[int] = []
    with Connection(url) as conn, conn.Consumer(queue, callbacks=[
            lambda body, message: (got.append(body["n"]), message.ack())]):
        conn.drain_events(timeout=5)  # the folder is read: n=0 delivered, n=1 listed
        _publish_elsewhere(url, [{"n": 2}, {"n": 3}], [10, 5])
        while len(got) < 4:
            conn.drain_events(timeout=5)
    assert got == [0, 2, 3, 1]


@needs_inotify
def test_an_idle_consumer_wakes_for_a_message_from_another_process(tmp_path: Path, monkeypatch) -> None:
    """Waits of 30 s: the message arrives early only through inotify's wake-up and listing."""
    monkeypatch.setattr(embedded, "_STEP", 30.0)
    monkeypatch.setattr(embedded, "_RESYNC", 3600.0)
    waiting = _hook_pause(monkeypatch)
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    got: list[dict] = []
    with Connection(url, transport_options={"polling_interval": 30}) as conn, conn.Consumer(
            queue, callbacks=[lambda body, message: (got.append(body), message.ack())]):
        publisher = threading.Thread(target=lambda: waiting.wait(10) and _publish_elsewhere(url, [{"n": 1}], [0]))
        publisher.start()
        started = time.monotonic()
        conn.drain_events(timeout=25)  # without the wake-up: after 25 s, at the deadline's last look
        waited = time.monotonic() - started
        publisher.join()
    assert got == [{"n": 1}]
    assert waited < 15


def test_an_acknowledgement_ends_the_wait_of_a_full_consumer(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_STEP", 30.0)
    waiting = _hook_pause(monkeypatch)
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 1}, {"n": 2}])
    got: list = []
    with Connection(url, transport_options={"polling_interval": 30}) as conn, conn.Consumer(
            queue, callbacks=[lambda body, message: got.append((body, message))], prefetch_count=1):
        conn.drain_events(timeout=5)  # n=1, not acknowledged: the consumer has no room
        waiting.clear()
        acker = threading.Thread(target=lambda: waiting.wait(10) and got[0][1].ack())
        acker.start()
        started = time.monotonic()
        conn.drain_events(timeout=25)  # without the wake-up: after 25 s, at the deadline's last look
        waited = time.monotonic() - started
        acker.join()
        got[1][1].ack()
    assert [body for body, _ in got] == [{"n": 1}, {"n": 2}]
    assert waited < 15


@needs_inotify
def test_a_message_put_back_from_unacked_reaches_a_consumer_that_listed_the_folder(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_RESYNC", 3600.0)
    monkeypatch.setattr(embedded, "_ORPHAN_SWEEP", 3600.0)
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    got: list[dict] = []
    taker = (
        "import os, app.brokers.embedded\n"
        "from kombu import Connection, Exchange, Queue\n"
        "q = Queue('jobs', Exchange('jobs'), 'jobs')\n"
        f"with Connection({url!r}) as c, c.Consumer(q, callbacks=[lambda b, m: os.kill(os.getpid(), 9)]):\n"
        "    c.drain_events(timeout=30)\n"
    )
    with Connection(url) as conn, conn.Consumer(queue, callbacks=[
            lambda body, message: (got.append(body), message.ack())]):
        _publish(url, queue, [{"n": 7}])
        assert subprocess.run([sys.executable, "-c", taker], timeout=60).returncode == -9
        assert os.listdir(tmp_path / "unacked")
        with pytest.raises(TimeoutError):  # the listing learns the name, but the message is taken
            conn.drain_events(timeout=0.1)
        monkeypatch.setattr(embedded, "_ORPHAN_SWEEP", 0.05)
        conn.drain_events(timeout=10)  # swept back into the folder: only inotify tells the listing
    assert got == [{"n": 7}]


@needs_inotify
def test_the_listing_is_read_again_when_the_kernel_dropped_events(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_RESYNC", 3600.0)
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    with Connection(url) as conn:
        assert conn.default_channel is not None
        listing = conn.transport.listing
        assert listing.pop("jobs") is None  # the folder is read
        _publish(url, queue, [{"n": 1}, {"n": 2}], priorities=[1, 9])
        listing._take_events(push=False)  # the events are lost...
        assert listing.pop("jobs") is None  # ...and the listing does not know the messages
        assert listing._parse(embedded._EVENT.pack(-1, embedded._IN_Q_OVERFLOW, 0, 0), push=True)
        names = [listing.pop("jobs"), listing.pop("jobs"), listing.pop("jobs")]
    assert [name[:3] if name else name for name in names] == ["01_", "09_", None]


@needs_inotify
def test_a_consumer_follows_a_queue_folder_that_was_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_RESYNC", 3600.0)
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    got: list[int] = []
    with Connection(url) as conn, conn.Consumer(queue, callbacks=[
            lambda body, message: (got.append(body["n"]), message.ack())]):
        _publish(url, queue, [{"n": 1}])
        conn.drain_events(timeout=5)
        shutil.rmtree(tmp_path / "queue")
        _publish(url, queue, [{"n": 2}])  # the publisher makes the folder again
        conn.drain_events(timeout=5)
    assert got == [1, 2]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "rename"])
def test_publishing_leaves_only_complete_messages(tmp_path: Path, monkeypatch, unnamed: bool) -> None:
    if not unnamed:
        monkeypatch.setattr(embedded, "_LINKAT", None)
    elif embedded._LINKAT is None:
        pytest.skip("no O_TMPFILE here")
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": i} for i in range(3)])
    assert sorted(n[-9:] for n in os.listdir(tmp_path / "queue")) == [".jobs.msg"] * 3
    assert [b["n"] for b in _drain(url, queue, 3)] == [0, 1, 2]


def test_a_message_held_under_a_reused_pid_comes_back(tmp_path: Path) -> None:
    """A process that had this pid before (a restarted container's worker is often pid 1 again)
    took two messages and died; a bare pid (as older versions wrote) of a gone process too. What
    this very process holds stays."""
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": i} for i in range(3)])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    me = embedded._owner()
    pid, _, start = me.partition(".")
    first, second, third = sorted(os.listdir(tmp_path / "queue"))
    os.rename(tmp_path / "queue" / first, tmp_path / "unacked" / f"{pid}.{int(start) - 1000}-{first}")
    os.rename(tmp_path / "queue" / second, tmp_path / "unacked" / f"{gone}-{second}")
    os.rename(tmp_path / "queue" / third, tmp_path / "unacked" / f"{me}-{third}")
    assert [b["n"] for b in _drain(url, queue, 2)] == [0, 1]
    assert os.listdir(tmp_path / "unacked") == [f"{me}-{third}"]


def test_a_message_held_by_a_live_process_stays_until_that_process_dies(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_ORPHAN_SWEEP", 0.0)  # every look sweeps
    url = f"embedded://{tmp_path}"
    queue = Queue("jobs", Exchange("jobs"), "jobs")
    _publish(url, queue, [{"n": 3}])
    holder_script = _consumer_script(url, "print('taken', flush=True)", then="sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", holder_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "taken"
        got: list[dict] = []
        with Connection(url) as conn, conn.Consumer(queue, callbacks=[
                lambda body, message: (got.append(body), message.ack())]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.3)  # swept on each look: the holder lives, the message stays
            assert got == [] and len(os.listdir(tmp_path / "unacked")) == 1
            holder.kill()
            holder.wait()
            conn.drain_events(timeout=10)
        assert got == [{"n": 3}]
    finally:
        holder.kill()
        holder.wait()
