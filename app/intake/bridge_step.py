"""The file-drop bridge inside the worker: a consumer bootstep on the worker's own timer.

No thread of ours in the prefork parent: the worker's timer (the event loop's timer with
Redis/RabbitMQ, Celery's timer thread with the embedded broker) calls ``Bridge.tick`` every
``guestkit_bridge_interval`` seconds, and again at once while a backlog lasts; each round does at
most ``budget`` seconds of work, so the worker's loop is never held for long. With an event loop,
inotify wakes the bridge as soon as a file arrives. Enabled by
``guestkit_bridge_in_worker`` (``GUESTKIT_BRIDGE=1``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from app.intake.arrivals import DirectoryEvents
from app.intake.bridge import Bridge, BridgeConfig
from app.run.settings import Settings

logger = logging.getLogger("guestkit.bridge")


class BridgeStep(bootsteps.StartStopStep):
    """Runs the bridge on the consumer's timer while the consumer runs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings = Settings.from_conf(parent.app.conf)
        self.enabled = settings.bridge_in_worker
        self.interval = settings.bridge_interval
        self.config = BridgeConfig(jobs_dir=settings.jobs_dir, settle=settings.bridge_settle)
        self.bridge: Bridge | None = None
        self.timer: Any = None
        self.tref: Any = None
        self.hub: Any = None
        self.watch: DirectoryEvents | None = None

    def start(self, parent: Any) -> None:
        if self.bridge is None:  # kept across consumer restarts (broker reconnects)
            self.bridge = Bridge(self.config, parent.app)
        self.timer = parent.timer
        self._schedule(self.interval)
        hub = getattr(parent, "hub", None)
        if hub is not None:  # an event loop (Redis, RabbitMQ): files wake it at once, through inotify
            watch = DirectoryEvents(str(self.bridge.jobs_dir))
            if watch.fd >= 0:
                hub.add_reader(watch.fd, self._on_change)
                self.hub, self.watch = hub, watch
        logger.info("bridge: watching %s every %s s%s", self.config.jobs_dir, self.interval,
                    " and on inotify events" if self.watch is not None else "")

    def stop(self, parent: Any) -> None:
        self.timer = None
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.watch is not None:
            self.hub.remove(self.watch.fd)
            self.watch.close()
            self.hub = self.watch = None

    def _on_change(self) -> None:
        assert self.watch is not None and self.bridge is not None
        self.watch.names()  # they only say "look now"
        try:
            self.bridge.tick()
        except Exception:  # noqa: BLE001 - the bridge must outlive one bad round
            logger.exception("bridge: tick failed; retrying on the next one")

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    def _schedule(self, delay: float) -> None:
        if self.timer is not None:
            self.tref = self.timer.call_after(delay, self._tick, priority=10)

    def _tick(self) -> None:
        """One round; the next comes at once while there is a backlog, after ``interval`` otherwise."""
        assert self.bridge is not None
        worked = 0
        try:
            worked = self.bridge.tick()
        except Exception:  # noqa: BLE001 - the bridge must outlive one bad round
            logger.exception("bridge: tick failed; retrying on the next one")
        self._schedule(0 if worked else self.interval)
