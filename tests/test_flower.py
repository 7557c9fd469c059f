"""Flower against a real worker on the configured broker: its HTTP API lists the worker and every
job under its job_id with the operation name, state (PROGRESS while a job reports progress) and
run time, and a headless Chromium finds the jobs on its tasks page."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.intake.api import JobHandle, submit
from tests.conftest import WorkerPool, WorkerProcess, make_job, routed, wait_for
from tests.monitoring import ServiceProcess, flower, http_get

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CREDENTIALS = ("monitor", uuid.uuid4().hex)
SLEEP_SECONDS = 3.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # its shared memory in /tmp, not /dev/shm: test_limits keeps /dev/shm's free space steady
                 "--disable-dev-shm-usage"]
FINAL_STATE = {"test.sleep": "SUCCESS", "system.echo": "SUCCESS", "test.boom": "FAILURE"}


@dataclass
class Cluster:
    worker: WorkerProcess
    flower: ServiceProcess
    jobs: dict[str, str] = field(default_factory=dict)  # job_id -> operation
    sleep_job: str = ""
    #: Flower's record of the sleep job while it was running
    while_running: dict[str, Any] = field(default_factory=dict)

    def api(self, path: str) -> Any:
        reply = http_get(self.flower.url + path, CREDENTIALS)
        assert reply.status == 200, f"{path}: HTTP {reply.status} {reply.text[:300]}"
        return reply.json()

    @property
    def worker_name(self) -> str:
        names = [n for n in self.api("/api/workers?status=true") if n.startswith(self.worker.name + "@")]
        assert names, f"Flower does not know worker {self.worker.name}"
        return names[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker serving a pool of its own and one Flower (basic auth on, as it should be when
    exposed), then a long job reporting progress, two echo jobs and a failing one."""
    log_dir = tmp_path_factory.mktemp("flower")
    pool = f"flower-{uuid.uuid4().hex[:8]}"
    workers = WorkerPool(log_dir)
    service: ServiceProcess | None = None
    try:
        worker = workers(concurrency=2, env={"GUESTKIT_POOLS": pool})
        service = flower(log_dir, f"--basic_auth={':'.join(CREDENTIALS)}")
        found = Cluster(worker, service)
        # Flower follows the worker's events from now on (it shows nothing sent before it listened)
        wait_for(lambda: any(alive for name, alive in found.api("/api/workers?status=true").items()
                             if name.startswith(worker.name + "@")), 30, "Flower to receive the worker's events")
        # the worker runs without -E (Celery's default): Flower turns its task events on (every 5 s)
        wait_for(lambda: "Events of group {task} enabled by remote" in worker.text(), 30,
                 "Flower to turn the worker's task events on")
        yield _run_jobs(found, pool)
    finally:
        if service is not None:
            service.stop()
        workers.kill_all()


def _run_jobs(found: Cluster, pool: str) -> Cluster:
    docs = [make_job("test.sleep", {"seconds": SLEEP_SECONDS}), make_job(), make_job(), make_job("test.boom", {})]
    handles: list[JobHandle] = []
    for doc in docs:
        handles.append(submit(routed(doc, pool)))
        found.jobs[doc["job_id"]] = doc["operation"]
    found.sleep_job = docs[0]["job_id"]

    def sleep_job_in_progress() -> dict[str, Any] | None:
        task = found.api("/api/tasks").get(found.sleep_job)
        return task if task and task["state"] == "PROGRESS" else None

    found.while_running = wait_for(sleep_job_in_progress, SLEEP_SECONDS * 2, "Flower to show the sleep job in PROGRESS")
    for handle in handles:
        handle.result(timeout=30)

    def all_final() -> bool:
        tasks = found.api("/api/tasks")
        return all(tasks.get(job_id, {}).get("state") == FINAL_STATE[op] for job_id, op in found.jobs.items())

    wait_for(all_final, 15, "Flower to show every job's final state")
    return found


def test_flower_lists_the_worker_and_its_pool(cluster: Cluster) -> None:
    name = cluster.worker_name
    assert cluster.api("/api/workers?status=true")[name] is True
    workers = cluster.api("/api/workers?refresh=true")
    queues = [queue["name"] for queue in workers[name]["active_queues"]]
    assert queues == [cluster.worker.env["GUESTKIT_POOLS"]]
    assert sorted(set(FINAL_STATE) - set(workers[name]["registered"])) == []


def test_flower_lists_every_job_under_its_job_id(cluster: Cluster) -> None:
    tasks = cluster.api("/api/tasks")
    worker = cluster.worker_name
    for job_id, operation in cluster.jobs.items():
        task = tasks[job_id]
        assert (task["uuid"], task["name"], task["state"], task["worker"]) == (
            job_id, operation, FINAL_STATE[operation], worker)
        assert task["received"] and task["started"]
        if task["state"] == "SUCCESS":
            assert task["runtime"] > 0
        else:  # Celery's task-failed event carries no runtime; Flower shows when it started and failed
            assert task["failed"] >= task["started"] and "ZeroDivisionError" in task["exception"]
    assert SLEEP_SECONDS <= tasks[cluster.sleep_job]["runtime"] < SLEEP_SECONDS + 5


def test_flower_shows_progress_while_a_job_runs(cluster: Cluster) -> None:
    running = cluster.while_running
    assert running["name"] == "test.sleep" and running["state"] == "PROGRESS"
    assert running["started"] and running["succeeded"] is None and running["runtime"] is None
    assert cluster.api(f"/api/task/info/{cluster.sleep_job}")["state"] == "SUCCESS"


def test_flower_api_needs_credentials_but_its_metrics_do_not(cluster: Cluster) -> None:
    """Why Flower binds to loopback by default: /metrics and /healthcheck answer anyone."""
    assert http_get(cluster.flower.url + "/api/tasks").status == 401
    assert http_get(cluster.flower.url + "/api/tasks", ("monitor", "wrong")).status == 401
    open_metrics = http_get(cluster.flower.url + "/metrics")
    assert open_metrics.status == 200 and "flower_events_total" in open_metrics.text
    assert http_get(cluster.flower.url + "/healthcheck").text == "OK"


def _browser_or_skip() -> None:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if missing:
        reason = f"browser test needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_browser_finds_every_job_on_the_tasks_page(cluster: Cluster, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(http_credentials={"username": CREDENTIALS[0], "password": CREDENTIALS[1]})
            page = context.new_page()
            page.goto(cluster.flower.url + "/tasks")
            try:
                for job_id, operation in cluster.jobs.items():
                    row = page.locator("table tbody tr", has_text=job_id)
                    for _ in range(3):  # the table is filled once per page load: on a busy machine, load again
                        try:
                            expect(row).to_have_count(1, timeout=10_000)
                            break
                        except AssertionError:
                            page.reload()
                    expect(row).to_have_count(1, timeout=10_000)
                    expect(row).to_contain_text(operation)
                    expect(row).to_contain_text(FINAL_STATE[operation])
            finally:
                page.screenshot(path=str(tmp_path / "flower-tasks.png"), full_page=True)
        finally:
            browser.close()


def test_flower_binds_loopback_by_default(tmp_path: Path) -> None:
    """``celery -A app flower`` with no --address: loading the app keeps it on loopback."""
    service = ServiceProcess("flower-default", ["flower", "--port=0"], tmp_path / "flower.log",
                             r"Visit me at http://[^:]*:(\d+)").start()
    try:
        assert service.proc is not None
        listening = [c.laddr for c in psutil.Process(service.proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(address.ip in ("127.0.0.1", "::1") for address in listening), listening
    finally:
        service.stop()

