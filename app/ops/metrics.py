"""Prometheus metrics and a health report of the platform, read from the job store and the broker.

Served by ``celery -A app metrics`` (``app/ops/metrics_cli.py``), a process of its own. Flower's
``/metrics`` counts Celery events it saw while it ran; these come from the job store (the source of
truth), so they survive restarts and see every host, and add what Flower cannot see: final statuses
by operation, run durations, jobs in each contract state, queue depth per pool, worker heartbeats.

Cost of a scrape: it lists the job ids (O(jobs): a directory listing or a Redis SSCAN) and reads the
status record only of jobs it has not yet seen end: an ended job never changes, so it is read once
per metrics process and then only its id and final state are kept in memory. The first scrape of a
big store reads every record once. Queue depth costs one broker round trip per pool. Scrapes that
come sooner than ``cache_seconds`` after the previous one get its answer again.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.protocol.states import JobState, JobStatus, utc_now
from app.store.base import JobStore
from app.store.factory import open_store

logger = logging.getLogger("guestkit.metrics")

#: upper bounds (seconds) of the run-duration histogram: VM disk jobs take from a second to hours
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)
#: above this many records to read, and half the store or more, read it in one batched pass
_BATCH_READ = 200


def run_duration(status: JobStatus) -> float | None:
    """Seconds from the last ``running`` transition to the terminal one; None if the job never ran."""
    if not status.terminal or not status.history:
        return None
    end = status.history[-1]
    for step in reversed(status.history[:-1]):
        if step.state is JobState.RUNNING:
            return max(0.0, (end.at - step.at).total_seconds())
    return None


@dataclass
class Histogram:
    """Observations per bucket of ``DURATION_BUCKETS`` (the last slot is +Inf), and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, value)] += 1  # le is inclusive: value <= bound
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf"]
        running, out = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class JobTally:
    """The store's jobs, aggregated incrementally (see the module's note on cost)."""

    def __init__(self) -> None:
        self._ended: dict[str, JobState] = {}
        self.ended_by_state: Counter[JobState] = Counter()
        self.active_by_state: Counter[JobState] = Counter()
        #: (operation, status) → jobs that ended so, since this process started (a counter)
        self.finished: Counter[tuple[str, str]] = Counter()
        self.durations: dict[tuple[str, str], Histogram] = {}
        #: status records read by the last refresh
        self.reads = 0

    def refresh(self, store: JobStore) -> None:
        ids = set(store.job_ids())
        for gone in self._ended.keys() - ids:  # removed from the store: no longer in any state
            self.ended_by_state[self._ended.pop(gone)] -= 1
        to_read = ids - self._ended.keys()
        active: Counter[JobState] = Counter()
        for status in _read(store, to_read, len(ids)):
            if status.terminal:
                self._count_end(status)
            else:
                active[status.state] += 1
        self.active_by_state = active
        self.reads = len(to_read)

    def _count_end(self, status: JobStatus) -> None:
        self._ended[status.job_id] = status.state
        self.ended_by_state[status.state] += 1
        key = (status.operation, status.state.value)
        self.finished[key] += 1
        duration = run_duration(status)
        if duration is not None:
            self.durations.setdefault(key, Histogram()).observe(duration)

    def in_state(self, state: JobState) -> int:
        return self.ended_by_state[state] + self.active_by_state[state]


def _read(store: JobStore, job_ids: set[str], total: int) -> Iterator[JobStatus]:
    """The status records of ``job_ids``: one by one, or in one batched pass over the whole store
    (``store.list``) when they are many and at least half of it (the first scrape)."""
    if len(job_ids) > _BATCH_READ and 2 * len(job_ids) >= total:
        yield from (s for s in store.list() if s.job_id in job_ids)
        return
    for job_id in job_ids:
        status = store.get(job_id)
        if status is not None:
            yield status


def pools_to_watch(configured: Iterable[str], adverts: Iterable[dict[str, Any]]) -> list[str]:
    """The configured pools, then every pool a live worker advertises, each once."""
    pools = dict.fromkeys(configured)
    for advert in adverts:
        pools.update(dict.fromkeys(advert.get("configuration", {}).get("pools", [])))
    return list(pools)


def queue_depths(connection: Connection, pools: Iterable[str]) -> dict[str, int]:
    """Messages waiting (not yet delivered) in each pool's queue; 0 for a queue the broker does
    not have (RabbitMQ: never declared; Redis: an empty queue has no key)."""
    depths: dict[str, int] = {}
    for pool in pools:
        channel = connection.channel()
        try:
            depths[pool] = channel.queue_declare(queue=pool, passive=True).message_count
        except connection.channel_errors:
            depths[pool] = 0
        finally:
            try:
                channel.close()
            except (*connection.connection_errors, *connection.channel_errors):
                pass  # RabbitMQ closed it already after a NOT_FOUND
    return depths


def heartbeat_age(advert: dict[str, Any], now: datetime) -> float | None:
    beat = advert.get("status", {}).get("last_heartbeat")
    try:
        return (now - datetime.fromisoformat(beat)).total_seconds() if beat else None
    except (TypeError, ValueError):
        return None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Monitor:
    """Collects the metrics families and the health report from one Celery app's configuration."""

    def __init__(self, app: Celery, *, cache_seconds: float = 5.0, heartbeat_max_age: float | None = None,
                 connect_timeout: float = 3.0) -> None:
        self.app = app
        self.store_url: str = app.conf.guestkit_store_url
        self.pools: list[str] = list(app.conf.guestkit_pools)
        #: a worker is live while its last heartbeat is at most this old (default: two beats)
        self.heartbeat_max_age = heartbeat_max_age or 2 * float(app.conf.get("guestkit_heartbeat_interval", 5))
        self.cache_seconds = cache_seconds
        self.connect_timeout = connect_timeout
        self.tally = JobTally()
        self._store: JobStore | None = None
        self._rendered: tuple[float, bytes] | None = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Families(self))

    # --- the two things it serves ---------------------------------------------------------
    def metrics_text(self) -> bytes:
        """The exposition text; the previous one when it is younger than ``cache_seconds``."""
        now = time.monotonic()
        if self._rendered is None or now - self._rendered[0] >= self.cache_seconds:
            self._rendered = (now, generate_latest(self._registry))
        return self._rendered[1]

    def health(self) -> dict[str, Any]:
        """Whether the broker and the job store can be reached now (never cached)."""
        workers: list[int] = []
        broker = self._check(lambda: self._with_broker(lambda _connection: None))
        store = self._check(lambda: workers.append(len(self.store().workers())))
        ok = broker["ok"] and store["ok"]
        report: dict[str, Any] = {
            "status": "ok" if ok else "unavailable", "ok": ok,
            "broker": {"url": maybe_sanitize_url(self.app.conf.broker_url), **broker},
            "store": {"url": maybe_sanitize_url(self.store_url), **store},
        }
        if workers:
            report["live_workers"] = workers[0]
        return report

    # --- access to the broker and the store -----------------------------------------------
    def store(self) -> JobStore:
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def _with_broker(self, use: Callable[[Connection], Any]) -> Any:
        with self.app.connection_for_read(connect_timeout=self.connect_timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=self.connect_timeout)
            return use(connection)

    @staticmethod
    def _check(probe: Callable[[], Any]) -> dict[str, Any]:
        try:
            probe()
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable", with its reason
            return {"ok": False, "error": _describe(error)}
        return {"ok": True}

    # --- the families ---------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        adverts: list[dict[str, Any]] = []
        store_up = 1
        try:
            store = self.store()
            adverts = store.workers()
            self.tally.refresh(store)
        except Exception as error:  # noqa: BLE001 - a scrape reports the store as down rather than failing
            logger.warning("metrics: job store %s not readable: %s", maybe_sanitize_url(self.store_url),
                           _describe(error))
            store_up = 0
        else:
            yield from self._job_families()
            yield from self._worker_families(adverts)
        yield _gauge("guestkit_store_up", "1 if the job store could be read by this scrape.", store_up)
        try:
            depths = self._with_broker(lambda c: queue_depths(c, pools_to_watch(self.pools, adverts)))
        except Exception as error:  # noqa: BLE001 - as for the store
            logger.warning("metrics: broker %s not reachable: %s", maybe_sanitize_url(self.app.conf.broker_url),
                           _describe(error))
            yield _gauge("guestkit_broker_up", "1 if the broker could be reached by this scrape.", 0)
        else:
            yield _gauge("guestkit_broker_up", "1 if the broker could be reached by this scrape.", 1)
            depth = GaugeMetricFamily("guestkit_queue_depth", "Messages waiting in the broker queue of each "
                                      "pool (delivered but unacknowledged ones not included).", labels=["pool"])
            for pool, count in sorted(depths.items()):
                depth.add_metric([pool], count)
            yield depth
        yield _gauge("guestkit_metrics_store_reads", "Job status records read by the last scrape (ended jobs "
                     "are read once per metrics process).", self.tally.reads)
        yield _gauge("guestkit_metrics_collect_seconds", "Time the last scrape took to collect.",
                     time.monotonic() - started)

    def _job_families(self) -> Iterator[Metric]:
        tally = self.tally
        finished = CounterMetricFamily("guestkit_jobs_finished", "Jobs that ended, by operation and final "
                                       "status (counted from the job store).", labels=["operation", "status"])
        for (operation, status), count in sorted(tally.finished.items()):
            finished.add_metric([operation, status], count)
        yield finished
        durations = HistogramMetricFamily("guestkit_job_duration_seconds", "Run time of ended jobs, from their "
                                          "last running transition to the terminal one.",
                                          labels=["operation", "status"])
        for (operation, status), histogram in sorted(tally.durations.items()):
            durations.add_metric([operation, status], histogram.cumulative(), histogram.total)
        yield durations
        states = GaugeMetricFamily("guestkit_jobs", "Jobs in the job store in each state.", labels=["state"])
        for state in JobState:
            states.add_metric([state.value], tally.in_state(state))
        yield states

    def _worker_families(self, adverts: list[dict[str, Any]]) -> Iterator[Metric]:
        now = utc_now()
        up = GaugeMetricFamily("guestkit_worker_up", "1 if the advertised worker's heartbeat is at most "
                               f"{self.heartbeat_max_age:g} s old and it is online.", labels=["worker_id", "hostname"])
        beat = GaugeMetricFamily("guestkit_worker_heartbeat_age_seconds", "Seconds since the worker's last "
                                 "heartbeat.", labels=["worker_id"])
        busy = GaugeMetricFamily("guestkit_worker_current_jobs", "Jobs the worker was running at its last "
                                 "heartbeat.", labels=["worker_id"])
        slots = GaugeMetricFamily("guestkit_worker_max_concurrent_jobs", "Jobs the worker can run at once.",
                                  labels=["worker_id"])
        for advert in adverts:
            worker_id = advert["worker_id"]
            status = advert.get("status", {})
            age = heartbeat_age(advert, now)
            fresh = age is not None and age <= self.heartbeat_max_age and status.get("state", "online") == "online"
            up.add_metric([worker_id, advert.get("hostname", "")], 1 if fresh else 0)
            if age is not None:
                beat.add_metric([worker_id], max(0.0, age))
            busy.add_metric([worker_id], status.get("current_jobs", 0))
            slots.add_metric([worker_id], advert.get("resources", {}).get("max_concurrent_jobs", 0))
        yield from (up, beat, busy, slots)


class _Families(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        return self.monitor.collect()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
