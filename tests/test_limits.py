"""What one job may consume is bounded (app/plugin/limits.py): a job that needs more fails
RESOURCE_LIMIT naming the limit, its value and what it wanted; the worker that ran it runs the next
job normally; and a result's peak memory is the job's own, serialisation included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from tests.conftest import SESSION_DIR, WorkerPool, WorkerProcess, make_job, routed

POOL = f"limits-{uuid.uuid4().hex[:6]}"
TIGHT_POOL = f"tight-{uuid.uuid4().hex[:6]}"
MiB = 1024 * 1024
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


# --- outputs: room on the target's file system, the work directory ---------------------------
@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Images holding 64, 4 and 48 MiB of data, and then a worker whose file systems are nearly
    full: the reserve it must keep is all but 40 MiB of what is free where the tests write (as a
    small disk would be), and its work directory may take 32 MiB."""
    where = _quiet_dir()
    images = {name: _qcow2(where / f"{name}-{uuid.uuid4().hex[:6]}.qcow2", "", data_mb=size)
              for name, size in (("big", 64), ("small", 4), ("fixme", 48))}
    free_mb = shutil.disk_usage(where).free // MiB
    pool = WorkerPool(tmp_path_factory.mktemp("tight-workers"))
    pool(concurrency=1, env={"GUESTKIT_POOLS": TIGHT_POOL, "GUESTKIT_OUTPUT_RESERVE_MB": str(free_mb - 40),
                             "GUESTKIT_MAX_WORK_DIR_MB": "32",
                             "GUESTKIT_ALLOWED_DIRS": f"{SESSION_DIR}:{where}"})
    yield images
    pool.kill_all()
    if where != SESSION_DIR:
        shutil.rmtree(where, ignore_errors=True)


def _quiet_dir() -> Path:
    """Where the outputs of the nearly-full worker go: a file system no other test writes to where the
    machine has one (/dev/shm), so that the tests running beside this one (the test command runs several
    at once) do not move its free space by more than the 40 MiB margin; else the session's directory."""
    shm = Path("/dev/shm")
    try:
        apart = shm.stat().st_dev != SESSION_DIR.stat().st_dev and shutil.disk_usage(shm).free > 512 * MiB
    except OSError:
        apart = False
    if not apart:
        return SESSION_DIR
    where = shm / f"guestkit-tight-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    return where


def _qcow2(path: Path, virtual: str, data_mb: int = 0) -> Path:
    """A qcow2 of ``virtual`` size, or one holding ``data_mb`` MiB of data that neither compresses nor
    deduplicates: it takes its size in any output."""
    if not data_mb:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), virtual], check=True)
        return path
    raw = path.with_suffix(".data")
    raw.write_bytes(os.urandom(data_mb * MiB))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()
    return path


def _run(operation: str, data: dict[str, Any], pool: str) -> dict[str, Any]:
    return api.submit(routed(make_job(operation, data), pool)).result(timeout=120)


def test_a_tiny_image_of_a_huge_virtual_size_is_not_converted_to_fill_the_disk(worker: WorkerProcess) -> None:
    source = _qcow2(SESSION_DIR / f"huge-{uuid.uuid4().hex[:6]}.qcow2", "4T")
    target = source.with_suffix(".raw")
    result = _run("guestkit.convert", {"source": {"path": str(source), "format": "qcow2"},
                                       "target": {"path": str(target), "format": "raw"},
                                       "options": {"preserve_sparse": False}}, POOL)
    assert result["status"] == "failed" and result["error"]["code"] == "RESOURCE_LIMIT", result
    details = result["error"]["details"]
    assert details["limit"] == "GUESTKIT_OUTPUT_RESERVE_MB" and details["wanted"] == 4 * 1024 ** 4
    assert str(target) in result["error"]["message"] and not target.exists()
    sparse = _run("guestkit.convert", {"source": {"path": str(source), "format": "qcow2"},
                                       "target": {"path": str(target), "format": "raw"}}, POOL)
    assert sparse["status"] == "completed", sparse  # written with holes, it takes nothing


def test_an_output_that_would_leave_less_than_the_reserve_is_refused(tight: dict[str, Path]) -> None:
    target = tight["big"].with_suffix(".vmdk")
    result = _run("guestkit.convert", {"source": {"path": str(tight["big"]), "format": "qcow2"},
                                       "target": {"path": str(target), "format": "vmdk"}}, TIGHT_POOL)
    assert result["status"] == "failed" and result["error"]["code"] == "RESOURCE_LIMIT", result
    details = result["error"]["details"]
    assert details["limit"] == "GUESTKIT_OUTPUT_RESERVE_MB" and details["wanted"] >= 64 * MiB
    assert details["free"] - details["value"] * MiB < details["wanted"] and not target.exists()
    done = _run("guestkit.convert", {"source": {"path": str(tight["small"]), "format": "qcow2"},
                                     "target": {"path": str(tight["small"].with_suffix(".vmdk")), "format": "vmdk"}},
                TIGHT_POOL)
    assert done["status"] == "completed", done  # the same worker, an output that fits


def test_a_fix_whose_working_copy_outgrows_the_work_directory_is_refused(tight: dict[str, Path]) -> None:
    fixed = tight["fixme"].with_name(tight["fixme"].stem + "-fixed.qcow2")
    result = _run("guestkit.fix", {"image": {"path": str(tight["fixme"]), "format": "qcow2"},
                                   "operations": [{"type": "set_hostname", "options": {"hostname": "x"}}],
                                   "output": {"fixed_image": str(fixed)}}, TIGHT_POOL)
    assert result["status"] == "failed" and result["error"]["code"] == "RESOURCE_LIMIT", result
    details = result["error"]["details"]
    assert details["limit"] == "GUESTKIT_MAX_WORK_DIR_MB" and details["value"] == 32 and details["wanted"] >= 48
    assert not fixed.exists()
