"""The embedded default broker: kombu's filesystem transport, made safe and priority-aware.

Selected by a ``embedded:///path`` broker URL; needs no server. Compared with kombu's plain
``filesystem://`` transport it:

- orders each queue by priority (10 first) and then by arrival, as the contract wants;
- writes a message under a temporary name and renames it in, so no reader sees half a message;
- keeps a message it handed to a consumer in ``unacked/`` until it is acknowledged, and puts
  it back in the queue when it is rejected, restored, or when the process that took it died
  (kill -9 included): delivery is at least once, as with Redis and RabbitMQ;
- expires event queues (``celeryev.*``, Flower's and ``celery events``') whose reader has been
  gone for ``EVENT_QUEUE_EXPIRES`` seconds, as a real broker does with the queue's ``expires``,
  instead of filling them with event files for ever.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic, time_ns
from typing import Any

import psutil
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.json import dumps, loads

_MAX_PRIORITY = 10
_EVENT_QUEUE_PREFIX = "celeryev."
#: seconds after which an event queue nobody reads is dropped (Celery's event_queue_expires)
EVENT_QUEUE_EXPIRES = 60.0
_STEP = 0.25
#: seconds between looks for messages taken by processes that died
_ORPHAN_SWEEP = 2.0


_STATES: dict[Path, virtual.BrokerState] = {}


def _root_of(client: Any) -> Path:
    """The broker folder named by the connection's ``embedded:///path`` URL."""
    url = client.hostname or ""
    return Path(url.removeprefix("embedded://") or ".guestkit/broker").absolute()


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a killed process its parent has not reaped yet counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_folder.mkdir(parents=True, exist_ok=True)
        self._taken: dict[str, Path] = {}
        self._marked_alive: dict[str, float] = {}
        self._swept_at = 0.0
        self.unacked_folder.mkdir(parents=True, exist_ok=True)
        self._recover_orphans()

    @property
    def root(self) -> Path:
        return _root_of(self.connection.client)

    @property
    def queue_folder(self) -> Path:
        return self.root / "queue"

    @property
    def unacked_folder(self) -> Path:
        return self.root / "unacked"

    # kombu's filesystem channel reads these three from the transport options
    @property
    def data_folder_in(self) -> str:  # type: ignore[override]
        return str(self.queue_folder)

    @property
    def data_folder_out(self) -> str:  # type: ignore[override]
        return str(self.queue_folder)

    @property
    def control_folder(self) -> Path:  # type: ignore[override]
        return self.root / "control"

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:
        priority = payload.get("properties", {}).get("priority") or 0
        rank = _MAX_PRIORITY - max(0, min(_MAX_PRIORITY, int(priority)))
        name = f"{rank:02d}_{time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        self.queue_folder.mkdir(parents=True, exist_ok=True)
        tmp = self.queue_folder / f".{name}.tmp"
        tmp.write_bytes(dumps(payload).encode())
        os.rename(tmp, self.queue_folder / name)

    def _get(self, queue: str) -> dict[str, Any]:
        if monotonic() - self._swept_at > _ORPHAN_SWEEP:
            self._recover_orphans()
        if queue.startswith(_EVENT_QUEUE_PREFIX):
            self._mark_alive(queue)
        suffix = f"{queue}.msg"
        names = sorted(n for n in os.listdir(self.queue_folder) if n.partition(".")[2] == suffix)
        for name in names:
            taken = self.unacked_folder / f"{os.getpid()}-{name}"
            try:
                os.rename(self.queue_folder / name, taken)  # atomic: one consumer wins
            except FileNotFoundError:
                continue
            payload = loads(taken.read_bytes())
            tag = payload.get("properties", {}).get("delivery_tag")
            if tag is None:
                taken.unlink(missing_ok=True)
            else:
                self._taken[tag] = taken
            return payload
        raise Empty()

    # --- event queues whose reader has gone ---------------------------------------------------
    def _alive_file(self, queue: str) -> Path:
        return self.control_folder / f"{queue}.alive"

    def _mark_alive(self, queue: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._marked_alive.get(queue, 0.0) > 1.0:
            self.control_folder.mkdir(parents=True, exist_ok=True)
            self._alive_file(queue).touch()
            self._marked_alive[queue] = now

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        super()._queue_bind(exchange, routing_key, pattern, queue)
        if queue.startswith(_EVENT_QUEUE_PREFIX):
            self._mark_alive(queue, force=True)

    def get_table(self, exchange: str) -> list:
        table = super().get_table(exchange)
        live = []
        for binding in table:
            if binding.queue.startswith(_EVENT_QUEUE_PREFIX) and self._reader_gone(binding.queue):
                self._delete(binding.queue, exchange, binding.routing_key, binding.pattern)
                self._alive_file(binding.queue).unlink(missing_ok=True)
            else:
                live.append(binding)
        return live

    def _reader_gone(self, queue: str) -> bool:
        try:
            return time.time() - self._alive_file(queue).stat().st_mtime > EVENT_QUEUE_EXPIRES
        except FileNotFoundError:
            return True

    def _forget(self, delivery_tag: str) -> None:
        path = self._taken.pop(delivery_tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self._forget(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._forget(message.delivery_tag)

    def _recover_orphans(self) -> None:
        """Put back messages taken by processes that no longer exist (at start, then every
        ``_ORPHAN_SWEEP`` seconds, so a running worker also recovers what a dead one took)."""
        self._swept_at = monotonic()
        for entry in os.scandir(self.unacked_folder):
            pid_text, _, name = entry.name.partition("-")
            if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                try:
                    os.rename(entry.path, self.queue_folder / name)
                except FileNotFoundError:
                    pass

    def _purge(self, queue: str) -> int:
        count = 0
        for name in os.listdir(self.queue_folder):
            if name.partition(".")[2] == f"{queue}.msg":
                (self.queue_folder / name).unlink(missing_ok=True)
                count += 1
        return count

    def _size(self, queue: str) -> int:
        return sum(1 for n in os.listdir(self.queue_folder) if n.partition(".")[2] == f"{queue}.msg")


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "embedded"
    driver_name = "embedded"
    can_parse_url = True

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # kombu keeps bindings in one state per transport class; keep one per broker folder, or a
        # process that uses two folders would think a binding exists in the second one
        self.state = _STATES.setdefault(_root_of(client), virtual.BrokerState())

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        """Wait as asked, but in short steps that notice a worker shutting down: Celery's loop
        for polling transports waits 2 s per call and checks for shutdown only in between."""
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            step = _STEP if deadline is None else max(0.0, min(_STEP, deadline - monotonic()))
            try:
                return super().drain_events(connection, timeout=step)
            except TimeoutError:
                if _worker_stopping() or (deadline is not None and monotonic() >= deadline):
                    raise


def _worker_stopping() -> bool:
    from celery.worker import state

    return state.should_stop is not None or state.should_terminate is not None



TRANSPORT_ALIASES.setdefault("embedded", "app.embedded_broker:Transport")
