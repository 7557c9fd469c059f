"""``celery -A app metrics``: the Prometheus scrape checked family by family against a real worker
on the configured broker, and ``/healthz`` when the broker or the store cannot be reached.

The scraped store is one of this module's own (a fresh directory, or a fresh Redis prefix), so
every value is exact, whatever other tests left in the session's store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.ops.metrics import DURATION_BUCKETS, Histogram, JobTally, pools_to_watch, run_duration
from app.protocol.states import JobState, JobStatus
from app.store.base import JobStore
from app.store.factory import open_store
from tests.conftest import CELERY, ROOT, WorkerPool, WorkerProcess, make_job, routed, wait_for
from tests.monitoring import ServiceProcess, http_get, metrics

SHORT_SLEEP = 0.6


# --- pure parts -------------------------------------------------------------------------------
def _at(offset: float) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)


def _status(job_id: str, *steps: tuple[JobState, float], operation: str = "test.op") -> JobStatus:
    status = JobStatus(job_id=job_id, operation=operation)
    for state, offset in steps:
        status = status.advance(state, at=_at(offset))
    return status


RAN = ((JobState.QUEUED, 0), (JobState.ASSIGNED, 1), (JobState.RUNNING, 2))


def test_run_duration_is_last_running_to_terminal() -> None:
    assert run_duration(_status("a", *RAN, (JobState.COMPLETED, 7.5))) == 5.5
    assert run_duration(_status("b", *RAN)) is None  # still running
    assert run_duration(_status("c", (JobState.QUEUED, 0), (JobState.CANCELLED, 3))) is None  # never ran


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram()
    for value in (0.1, 0.2, 3, 10**6):
        histogram.observe(value)
    buckets = dict(histogram.cumulative())
    assert (buckets["0.1"], buckets["0.5"], buckets["5.0"], buckets["86400.0"], buckets["+Inf"]) == (1, 2, 3, 3, 4)
    assert len(buckets) == len(DURATION_BUCKETS) + 1 and histogram.total == 10**6 + 3.3


def test_pools_are_configured_then_advertised_each_once() -> None:
    adverts = [{"configuration": {"pools": ["b", "a"]}}, {"configuration": {"pools": ["c"]}}, {}]
    assert pools_to_watch(["a", "z"], adverts) == ["a", "z", "b", "c"]


def test_tally_reads_an_ended_job_once(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    for job_id, steps in (("done", (*RAN, (JobState.COMPLETED, 4))), ("busy", RAN), ("new", ())):
        store.create(_status(job_id, *steps))
    tally = JobTally()
    tally.refresh(store)
    assert (tally.reads, tally.finished[("test.op", "completed")]) == (3, 1)
    assert [tally.in_state(s) for s in (JobState.PENDING, JobState.RUNNING, JobState.COMPLETED)] == [1, 1, 1]
    store.update("busy", lambda s: s.advance(JobState.FAILED, at=_at(2.05)))
    tally.refresh(store)
    assert tally.reads == 2  # "busy" and "new"; "done" is not read again
    assert (tally.in_state(JobState.RUNNING), tally.in_state(JobState.FAILED)) == (0, 1)
    assert tally.durations[("test.op", "failed")].counts[0] == 1  # ran 0.05 s: the first bucket
    (store.jobs / "done.jsonl").unlink()  # removed from the store: out of the states, still counted
    tally.refresh(store)
    assert (tally.in_state(JobState.COMPLETED), tally.finished[("test.op", "completed")]) == (0, 1)


def test_tally_reads_a_big_store_in_one_pass_then_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"file://{tmp_path}")
    for number in range(250):
        store.create(_status(f"job-{number}", *RAN, (JobState.COMPLETED, 3)))
    tally = JobTally()
    passes: list[object] = []
    whole_store = store.list
    with monkeypatch.context() as patch:
        patch.setattr(store, "list", lambda state=None: passes.append(state) or whole_store(state))
        tally.refresh(store)
    assert (passes, tally.reads, tally.finished[("test.op", "completed")]) == ([None], 250, 250)
    store.create(_status("one-more", *RAN))
    monkeypatch.setattr(store, "list", lambda state=None: pytest.fail("read the whole store again"))
    tally.refresh(store)
    assert (tally.reads, tally.in_state(JobState.RUNNING), tally.in_state(JobState.COMPLETED)) == (1, 1, 250)
    assert tally.durations[("test.op", "completed")].counts[2] == 250  # 1 s each: le=1.0


# --- a real worker and a real metrics process -------------------------------------------------
@dataclass
class Scene:
    store_url: str
    store: JobStore
    worker: WorkerProcess
    service: ServiceProcess
    pool: str
    idle_pool: str
    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)  # job_id -> (operation, expected state)
    log_dir: Path = Path()

    def scrape(self, service: ServiceProcess | None = None) -> Scrape:
        reply = http_get((service or self.service).url + "/metrics")
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(reply.text)


class Scrape:
    """A scrape parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.types = {}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}


def _private_store_url(tmp: Path) -> str:
    session = os.environ["GUESTKIT_STORE_URL"]
    if session.startswith("redis"):
        return session.split("?")[0] + f"?prefix=test-metrics-{uuid.uuid4().hex[:8]}"
    return f"file://{tmp / 'store'}"


def _submit(docs: list[dict], env: dict[str, str], tmp: Path) -> None:
    """Submit through ``celery -A app submit``, so the jobs land in this module's own store."""
    files = []
    for doc in docs:
        files.append(tmp / f"{doc['job_id']}.json")
        files[-1].write_text(json.dumps(doc))
    done = subprocess.run([CELERY, "-A", "app", "submit", "--json", *map(str, files)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """A worker (2 processes) busy with a long job; two echo jobs and a short sleep completed; a
    failed job; two jobs queued in a pool no worker serves; the metrics process watching."""
    tmp = tmp_path_factory.mktemp("metrics")
    pool, idle_pool = f"metrics-{uuid.uuid4().hex[:8]}", f"idle-{uuid.uuid4().hex[:8]}"
    store_url = _private_store_url(tmp)
    env = {"GUESTKIT_STORE_URL": store_url, "GUESTKIT_POOLS": pool, "GUESTKIT_CAPABILITY_WAIT": "600"}
    workers = WorkerPool(tmp)
    service: ServiceProcess | None = None
    store = open_store(store_url)
    try:
        worker = workers(concurrency=2, env=env)
        service = metrics(tmp, "--cache-seconds=0", env={**env, "GUESTKIT_POOLS": idle_pool})
        found = Scene(store_url, store, worker, service, pool, idle_pool, log_dir=tmp)
        started = tmp / "long-started"
        plan = [(make_job("test.sleep", {"seconds": 120, "started_file": str(started)}), pool, "running"),
                (make_job(), pool, "completed"), (make_job(), pool, "completed"),
                (make_job("test.sleep", {"seconds": SHORT_SLEEP}), pool, "completed"),
                (make_job("test.boom", {}), pool, "failed"),
                (make_job(), idle_pool, "queued"), (make_job(), idle_pool, "queued")]
        _submit([routed(doc, where) for doc, where, _ in plan], env, tmp)
        found.jobs = {doc["job_id"]: (doc["operation"], state) for doc, _, state in plan}

        def settled() -> bool:
            states = {job_id: store.get(job_id) for job_id in found.jobs}
            return started.exists() and all(s is not None and s.state.value == want
                                            for s, (_, want) in zip(states.values(), found.jobs.values(), strict=True))

        wait_for(settled, 30, "the jobs to reach their expected states")
        yield found
    finally:
        if service is not None:
            service.stop()
        workers.kill_all()
        if store_url.startswith("redis"):
            client = store.client  # type: ignore[attr-defined]
            for key in client.scan_iter(match=f"{store.prefix}:*"):  # type: ignore[attr-defined]
                client.delete(key)


@pytest.mark.slow
@pytest.mark.broker
def test_jobs_by_operation_and_final_status(scene: Scene) -> None:
    scrape = scene.scrape()
    assert scrape.types["guestkit_jobs_finished"] == "counter"
    assert scrape.series("guestkit_jobs_finished_total") == {
        frozenset({("operation", "system.echo"), ("status", "completed")}): 2,
        frozenset({("operation", "test.sleep"), ("status", "completed")}): 1,
        frozenset({("operation", "test.boom"), ("status", "failed")}): 1,
    }


@pytest.mark.broker
def test_jobs_in_each_state(scene: Scene) -> None:
    scrape = scene.scrape()
    assert scrape.types["guestkit_jobs"] == "gauge"
    expected = {state.value: 0 for state in JobState} | {"running": 1, "queued": 2, "completed": 3, "failed": 1}
    assert {dict(labels)["state"]: value for labels, value in scrape.series("guestkit_jobs").items()} == expected


@pytest.mark.broker
def test_job_duration_histograms(scene: Scene) -> None:
    scrape = scene.scrape()
    assert scrape.types["guestkit_job_duration_seconds"] == "histogram"
    ended = [scene.store.get(job_id) for job_id, (_, state) in scene.jobs.items() if state in ("completed", "failed")]
    for operation, status in {(s.operation, s.state.value) for s in ended}:
        mine = [run_duration(s) for s in ended if (s.operation, s.state.value) == (operation, status)]
        labels = {"operation": operation, "status": status}
        assert scrape.value("guestkit_job_duration_seconds_count", **labels) == len(mine)
        assert scrape.value("guestkit_job_duration_seconds_sum", **labels) == pytest.approx(sum(mine), abs=1e-6)
        buckets = [scrape.value("guestkit_job_duration_seconds_bucket", le=le, **labels)
                   for le in [*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf"]]
        assert buckets == sorted(buckets) and buckets[-1] == len(mine)
    sleep = {"operation": "test.sleep", "status": "completed"}
    assert scrape.value("guestkit_job_duration_seconds_bucket", le="0.5", **sleep) == 0  # it slept 0.6 s
    assert scrape.value("guestkit_job_duration_seconds_bucket", le="15.0", **sleep) == 1
    assert scrape.value("guestkit_job_duration_seconds_sum", **sleep) >= SHORT_SLEEP


@pytest.mark.broker
def test_queue_depth_per_pool(scene: Scene) -> None:
    scrape = scene.scrape()
    assert scrape.types["guestkit_queue_depth"] == "gauge"
    assert scrape.value("guestkit_broker_up") == 1
    # the pool the worker advertises, and the pool configured for the metrics process
    assert scrape.series("guestkit_queue_depth") == {frozenset({("pool", scene.pool)}): 0,
                                                     frozenset({("pool", scene.idle_pool)}): 2}


@pytest.mark.broker
def test_worker_liveness(scene: Scene) -> None:
    scrape = scene.scrape()
    up = scrape.series("guestkit_worker_up")
    assert len(up) == 1
    labels = dict(next(iter(up)))
    assert labels["worker_id"].startswith(scene.worker.name + "@") and labels["hostname"] == socket.gethostname()
    assert list(up.values()) == [1]
    worker = {"worker_id": labels["worker_id"]}
    assert 0 <= scrape.value("guestkit_worker_heartbeat_age_seconds", **worker) <= 10
    assert scrape.value("guestkit_worker_max_concurrent_jobs", **worker) == 2
    assert scrape.value("guestkit_worker_current_jobs", **worker) in (0, 1, 2)


@pytest.mark.broker
def test_scrape_reads_only_jobs_that_have_not_ended(scene: Scene) -> None:
    scene.scrape()
    scrape = scene.scrape()
    assert scrape.value("guestkit_store_up") == 1
    assert scrape.value("guestkit_metrics_store_reads") == 3  # the running job and the two queued ones
    assert scrape.value("guestkit_metrics_collect_seconds") > 0


@pytest.mark.broker
def test_healthz_when_all_is_reachable(scene: Scene) -> None:
    reply = http_get(scene.service.url + "/healthz")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    report = reply.json()
    assert (report["status"], report["ok"], report["broker"]["ok"], report["store"]["ok"]) == ("ok", True, True, True)
    assert report["live_workers"] == 1
    assert http_get(scene.service.url + "/nothing").status == 404


def _nowhere(scheme: str) -> str:
    """A URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}/0"


@pytest.mark.broker
def test_healthz_when_the_broker_is_unreachable(scene: Scene) -> None:
    broken = metrics(scene.log_dir, "--cache-seconds=0", name="metrics-no-broker",
                     env={"GUESTKIT_STORE_URL": scene.store_url, "CELERY_BROKER_URL": _nowhere("redis")})
    try:
        reply = http_get(broken.url + "/healthz")
        report = reply.json()
        assert (reply.status, report["status"], report["broker"]["ok"], report["store"]["ok"]) == (
            503, "unavailable", False, True)
        assert "Connection refused" in report["broker"]["error"]
        scrape = scene.scrape(broken)  # still answers: the store's families, and the broker as down
        assert scrape.value("guestkit_broker_up") == 0 and scrape.series("guestkit_queue_depth") == {}
        assert scrape.value("guestkit_jobs", state="queued") == 2
    finally:
        broken.stop()


@pytest.mark.slow
@pytest.mark.broker
def test_healthz_when_the_store_is_unreachable(scene: Scene) -> None:
    broken = metrics(scene.log_dir, "--cache-seconds=0", name="metrics-no-store",
                     env={"GUESTKIT_STORE_URL": _nowhere("redis"), "GUESTKIT_POOLS": scene.pool})
    try:
        reply = http_get(broken.url + "/healthz")
        report = reply.json()
        assert (reply.status, report["broker"]["ok"], report["store"]["ok"]) == (503, True, False)
        assert "Connection refused" in report["store"]["error"] and "live_workers" not in report
        scrape = scene.scrape(broken)
        assert scrape.value("guestkit_store_up") == 0 and scrape.value("guestkit_broker_up") == 1
        assert scrape.series("guestkit_jobs") == {}
    finally:
        broken.stop()
