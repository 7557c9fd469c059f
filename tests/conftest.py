"""Shared fixtures: one workspace per test session (configured through the environment before
anything imports the Celery app), and real ``celery worker`` processes started on demand."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import RABBITMQ_URL, REDIS_URL, reachable, service_required
from tests.plugins import TEST_HANDLERS
from tests.processes import CELERY, ROOT, WorkerProcess, wait_for  # noqa: F401 - the tests import them here

SESSION_DIR = Path(tempfile.mkdtemp(prefix="guestkit-test-"))
SESSION_TAG = uuid.uuid4().hex[:8]
ENV = {
    "GUESTKIT_HOME": str(SESSION_DIR / "home"),
    "GUESTKIT_RESULTS_DIR": str(SESSION_DIR / "results"),
    "GUESTKIT_JOBS_DIR": str(SESSION_DIR / "jobs"),
    "GUESTKIT_ALLOWED_DIRS": str(SESSION_DIR),
    "GUESTKIT_EXTRA_HANDLERS": TEST_HANDLERS,
    "GUESTKIT_RETRY_BACKOFF": "0.1",
    "GUESTKIT_TIMEOUT_GRACE": "2",
    "GUESTKIT_SHUTDOWN_GRACE": "10",
    "GUESTKIT_BRIDGE": "0",
    "GUESTKIT_HEARTBEAT_INTERVAL": "0.5",
    # above a worker's start-up time: tests that submit before starting their worker rely on it
    "GUESTKIT_CAPABILITY_WAIT": "10",
    "GUESTKIT_RUN_LEASE": "3",
    # any worker of the session may hold the (single) requeue duty: keep its delay short everywhere
    "GUESTKIT_REQUEUE_AFTER": "3",
    # a pool process that died is called lost after this long (Celery waits 10 s for its last result)
    "GUESTKIT_WORKER_LOST_WAIT": "1",
    "GUESTKIT_POOLS": f"default-{SESSION_TAG}",
}
os.environ.update(ENV)
BROKERS = {
    "embedded": ("embedded://" + str(SESSION_DIR / "broker"), "file://" + str(SESSION_DIR / "store")),
    "redis": (REDIS_URL, f"{REDIS_URL}?prefix=test-{SESSION_TAG}"),
    "rabbitmq": (RABBITMQ_URL, "file://" + str(SESSION_DIR / "store")),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--broker", choices=sorted(BROKERS), default="embedded",
                     help="broker (and matching job store) of the integration tests: the suite marked "
                          "'broker' runs once per broker")


def pytest_configure(config: pytest.Config) -> None:
    broker = config.getoption("--broker")
    broker_url, store_url = BROKERS[broker]
    if broker != "embedded":
        require_service_or_exit(broker_url)
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["GUESTKIT_STORE_URL"] = store_url
    config.addinivalue_line("markers", "broker: integration test that runs once per broker (--broker)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds (chaos, outages, the browser, benchmark "
                                       "smoke runs, big images); the quick lane -m 'not slow' leaves it out")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing session leaves nothing behind (a failing one keeps its workspace for a look)."""
    if exitstatus == 0:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)


def require_service_or_exit(url: str) -> None:
    """Same rule as tests.brokers.require_service, for a whole session."""
    if reachable(url):
        return
    if service_required(url):
        raise pytest.UsageError(f"--broker needs {url}, which is not reachable: start it first")
    pytest.exit(f"skipped: {url} is not reachable and its server is not installed here", returncode=0)


class WorkerPool:
    """Starts real ``celery -A app worker`` processes and kills whatever is left at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def __call__(self, name: str | None = None, concurrency: int = 2, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> WorkerProcess:
        name = name or f"w{len(self.started)}-{uuid.uuid4().hex[:6]}"
        args = [CELERY, "-A", "app", "worker", "-l", "info", "-c", str(concurrency), "-n", f"{name}@%h",
                "--without-mingle", "--without-gossip", *(extra_args or [])]
        worker = WorkerProcess(name, self.log_dir / f"{name}.log", {**os.environ, **(env or {})}, args)
        self.started.append(worker)
        return worker.start()

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


def serve_pool(tmp_path_factory: pytest.TempPathFactory, pool: str, concurrency: int = 2,
               **env: str) -> Iterator[WorkerProcess]:
    """One worker serving ``pool`` for a test module (``yield from`` it in a module-scoped fixture)."""
    workers = WorkerPool(tmp_path_factory.mktemp(pool))
    yield workers(concurrency=concurrency, env={"GUESTKIT_POOLS": pool, **env})
    workers.kill_all()


def session_scratch(prefix: str) -> Iterator[Path]:
    """A directory inside the allowed directories for a test module's images, removed after it."""
    path = SESSION_DIR / f"{prefix}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path)
    yield pool
    pool.kill_all()


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for a whole test module, for tests that do not stop or reconfigure it."""
    pool = WorkerPool(tmp_path_factory.mktemp("workers"))
    yield pool(concurrency=2)
    pool.kill_all()


def new_job_id(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_job(operation: str = "system.echo", data: dict[str, Any] | None = None, **execution: Any) -> dict[str, Any]:
    """A valid v1 job document with a fresh job_id."""
    doc: dict[str, Any] = {
        "version": "1.0",
        "job_id": new_job_id(operation.replace(".", "-")),
        "created_at": datetime.now(UTC).isoformat(),
        "kind": "VMOperation",
        "operation": operation,
        "payload": {"type": f"{operation}.v1", "data": data if data is not None else {"message": "hi"}},
    }
    if execution:
        doc["execution"] = execution
    return doc


SEED_JOB = ROOT / "examples" / "test-echo-001.json"


@pytest.fixture
def worker(start_worker: WorkerPool) -> WorkerProcess:
    return start_worker()


@pytest.fixture
def pool_name() -> str:
    """A pool (queue) of its own, so a test's jobs reach only the workers it starts itself."""
    return f"pool-{uuid.uuid4().hex[:8]}"


def routed(doc: dict[str, Any], pool: str) -> dict[str, Any]:
    doc["routing"] = {"worker_pool": pool}
    return doc
