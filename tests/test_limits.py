"""What one job may consume is bounded (app/plugin/limits.py): a job that needs more fails
RESOURCE_LIMIT naming the limit, its value and what it wanted; the worker that ran it runs the next
job normally; and a result's peak memory is the job's own, serialisation included."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.intake import api
from tests.conftest import WorkerPool, WorkerProcess, make_job, routed

POOL = f"limits-{uuid.uuid4().hex[:6]}"
CHILD_MEMORY_MB = 768
MAX_RESULT_BYTES = 96 * 1024 * 1024


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One pool child: every job below runs in the process the previous one left."""
    pool = WorkerPool(tmp_path_factory.mktemp("limits-workers"))
    yield pool(concurrency=1, env={"GUESTKIT_POOLS": POOL, "GUESTKIT_CHILD_MEMORY_MB": str(CHILD_MEMORY_MB),
                                   "GUESTKIT_MAX_RESULT_BYTES": str(MAX_RESULT_BYTES)})
    pool.kill_all()


def _hog(**data: Any) -> dict[str, Any]:
    return api.submit(routed(make_job("test.hog", data), POOL)).result(timeout=120)


def test_a_job_that_outgrows_the_child_memory_limit_fails_and_the_next_runs(worker: WorkerProcess) -> None:
    result = _hog(memory_mb=4 * CHILD_MEMORY_MB)
    assert result["status"] == "failed", result
    error = result["error"]
    assert error["code"] == "RESOURCE_LIMIT" and error["details"]["limit"] == "GUESTKIT_CHILD_MEMORY_MB"
    assert error["details"]["value"] == CHILD_MEMORY_MB and f"is {CHILD_MEMORY_MB} MiB" in error["message"]
    assert result["metrics"]["peak_memory_mb"] < CHILD_MEMORY_MB
    after = _hog(memory_mb=200)  # same child (concurrency 1): its memory came back
    assert after["status"] == "completed", after
    assert after["data"]["pid"] == _hog()["data"]["pid"]


def test_peak_memory_is_the_jobs_own(worker: WorkerProcess) -> None:
    big = _hog(memory_mb=300)
    small = _hog()
    assert big["data"]["pid"] == small["data"]["pid"]  # one child ran both
    assert 300 <= big["metrics"]["peak_memory_mb"] < CHILD_MEMORY_MB
    assert small["metrics"]["peak_memory_mb"] < 200  # not the child's lifetime peak


def test_peak_memory_includes_serialising_the_result(worker: WorkerProcess) -> None:
    size = 40 * 1024 * 1024
    result = _hog(result_bytes=size)
    assert result["status"] == "completed" and len(result["data"]["text"]) == size
    # the text, and the result document encoding it, were both in memory at once
    assert result["metrics"]["peak_memory_mb"] >= 2 * size / 1024 / 1024


def test_a_result_over_the_limit_fails_saying_its_size(worker: WorkerProcess) -> None:
    result = _hog(result_bytes=MAX_RESULT_BYTES + 1)
    assert result["status"] == "failed" and result["error"]["code"] == "RESOURCE_LIMIT", result
    details = result["error"]["details"]
    assert details["limit"] == "GUESTKIT_MAX_RESULT_BYTES" and details["value"] == MAX_RESULT_BYTES
    assert details["wanted"] > MAX_RESULT_BYTES and "data" not in result
    assert _hog(memory_mb=10)["status"] == "completed"


def test_a_large_result_under_a_tight_address_space_is_written_not_crashed() -> None:
    """orjson reserves ~9 bytes per byte of text and crashes (SIGSEGV) where the limit refuses them:
    with too little room, the result is encoded by json, which cannot crash."""
    script = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (768 * 2**20, 768 * 2**20))
from app.run.backend import encode_result
encoded = encode_result({"job_id": "j", "data": {"text": "x" * 100_000_000}})
assert json.loads(encoded)["data"]["text"] == "x" * 100_000_000
print("ok", len(encoded))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok "), (done.returncode, done.stderr[-2000:])
