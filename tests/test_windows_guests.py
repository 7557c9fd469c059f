"""Windows guests read from their registry, through real jobs: a Windows Server 2022 image the tests
build (MBR, NTFS, hives written as Windows writes them) inspected in raw and qcow2 and compared field
by field with its ground truth; a guest whose hive has unapplied transaction logs is read as it
stands and said to be."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from tests.conftest import SESSION_DIR, WorkerPool, WorkerProcess, make_job, routed
from tests.guestdata_windows import make_windows_tree
from tests.imagebuild import build_image

POOL = f"windows-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    pool = WorkerPool(tmp_path_factory.mktemp("windows-workers"))
    yield pool(concurrency=2, env={"GUESTKIT_POOLS": POOL})
    pool.kill_all()


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = SESSION_DIR / f"windows-guests-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _inspect(base: Path, name: str, fmt: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    truth = make_windows_tree(base / f"{name}-root", **options)
    image = base / f"{name}.{fmt}"
    build_image(base / f"{name}-root", image, "windows", fmt)
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert result["status"] == "completed", result
    return result["data"], truth


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_windows_guest_is_read_field_by_field(worker: WorkerProcess, base: Path, fmt: str) -> None:
    report, truth = _inspect(base, f"win2022-{fmt}", fmt)
    assert report["os"] == truth["os"]
    assert report["timezone"] == truth["timezone"]
    assert report["packages"]["installed"] == truth["packages"]
    assert report["packages"]["count"] == len(truth["packages"]) and report["packages"]["format"] == "windows"
    assert report["services"] == truth["services"]
    windows = report["windows"]
    assert {key: windows[key] for key in truth["windows"]} == truth["windows"]
    assert report["image"]["warnings"] == [] and windows["warnings"] == [] and report["errors"] == []
    assert report["storage"]["root_device"] == "/dev/sda1"


def test_a_hive_with_unapplied_logs_is_read_and_said(worker: WorkerProcess, base: Path) -> None:
    report, truth = _inspect(base, "win2022-dirty", "qcow2", dirty="SYSTEM")
    assert report["services"] == truth["services"]  # read as it stands
    (warning,) = report["image"]["warnings"]
    assert "/Windows/System32/config/SYSTEM" in warning and "most recent changes may be missing" in warning
    assert report["windows"]["warnings"] == [warning]
