"""Poison jobs: a handler that kills its own worker process every time ends ``failed / WORKER_LOST``
once ``max_attempts`` is spent, runs exactly ``max_attempts`` times, and never stops the queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.intake import api
from app.protocol.states import JobState
from tests.conftest import SESSION_DIR, make_job, routed

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    path = SESSION_DIR / "poison" / tmp_path.name
    path.mkdir(parents=True)
    return path


def crash_job(runs: Path, max_attempts: int) -> dict:
    return make_job("test.crash", {"runs_file": str(runs)}, max_attempts=max_attempts)


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_poison_job_ends_worker_lost_after_max_attempts(start_worker, pool_name: str, tmp: Path,
                                                        max_attempts: int) -> None:
    start_worker(concurrency=1, env={"GUESTKIT_POOLS": pool_name})
    runs = tmp / "runs"
    handle = api.submit(routed(crash_job(runs, max_attempts), pool_name))
    result = handle.result(timeout=90)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "WORKER_LOST"
    assert result["execution_summary"]["attempt"] == max_attempts
    # the handler ran once per attempt, never more, attempts numbered 1..max
    assert runs.read_text().split() == [str(n) for n in range(1, max_attempts + 1)]
    status = handle.status()
    assert status.state is JobState.FAILED and status.attempt == max_attempts
    assert [h.reason for h in status.history].count("retry: worker lost") == max_attempts - 1
    terminal = [h for h in status.history if h.state.terminal]
    assert len(terminal) == 1 and status.history[-1] is terminal[0]
    time.sleep(1)  # nothing runs it again afterwards
    assert len(runs.read_text().split()) == max_attempts


def test_queue_keeps_moving_around_poison_jobs(start_worker, pool_name: str, tmp: Path) -> None:
    """Two poison jobs among 40 ordinary ones on a single-process worker: every ordinary job completes,
    each poison job ends WORKER_LOST after its attempts, and the worker stays up throughout."""
    worker = start_worker(concurrency=1, env={"GUESTKIT_POOLS": pool_name})
    poison = [api.submit(routed(crash_job(tmp / f"runs{i}", 3), pool_name)) for i in range(2)]
    started = time.monotonic()
    ordinary = [api.submit(routed(make_job(data={"n": i}), pool_name)) for i in range(40)]
    results = [h.result(timeout=120) for h in ordinary]
    assert all(r["status"] == "completed" for r in results)
    for i, handle in enumerate(poison):
        result = handle.result(timeout=60)
        assert result["error"]["code"] == "WORKER_LOST", result
        assert (tmp / f"runs{i}").read_text().split() == ["1", "2", "3"]
    assert time.monotonic() - started < 120
    assert worker.proc is not None and worker.proc.poll() is None, "the worker's main process survived"
