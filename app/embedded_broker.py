"""The embedded default broker: kombu's filesystem transport, made safe and priority-aware.

Selected by a ``embedded:///path`` broker URL; needs no server. Compared with kombu's plain
``filesystem://`` transport it:

- orders each queue by priority (10 first) and then by arrival, as the contract wants;
- writes a message under a temporary name and renames it in, so no reader sees half a message;
- keeps a message it handed to a consumer in ``unacked/`` until it is acknowledged, and puts
  it back in the queue when it is rejected, restored, or when the process that took it died
  (kill -9 included): delivery is at least once, as with Redis and RabbitMQ.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import time_ns
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps, loads

_MAX_PRIORITY = 10


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_folder.mkdir(parents=True, exist_ok=True)
        self._taken: dict[str, Path] = {}
        self.unacked_folder.mkdir(parents=True, exist_ok=True)
        self._recover_orphans()

    @property
    def root(self) -> Path:
        url = self.connection.client.hostname or ""
        return Path(url.removeprefix("embedded://") or ".guestkit/broker").absolute()

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
        """Put back messages taken by processes that no longer exist."""
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

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        # Celery's loop for polling transports waits 2 s per call and checks for shutdown only
        # in between: shorter calls make a worker stop promptly.
        return super().drain_events(connection, timeout=min(timeout or 0.25, 0.25))



TRANSPORT_ALIASES.setdefault("embedded", "app.embedded_broker:Transport")
