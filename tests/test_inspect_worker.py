"""inspect, profile and compare as real jobs through a real worker process."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.intake import api
from tests.conftest import SESSION_DIR, WorkerPool, WorkerProcess, make_job, routed
from tests.guestdata import make_debian_tree, make_rhel_tree
from tests.imagebuild import build_image

POOL = f"guestos-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def guest_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker with the built-in handlers (registered through the entry-point group)."""
    pool = WorkerPool(tmp_path_factory.mktemp("guestos-workers"))
    yield pool(concurrency=2, env={"GUESTKIT_POOLS": POOL})
    pool.kill_all()


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, tuple[Path, dict]]]:
    base = SESSION_DIR / f"guestos-images-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    built = {}
    for name, maker, fmt in (("debian", make_debian_tree, "qcow2"), ("rhel", make_rhel_tree, "raw")):
        truth = maker(base / f"{name}-root")
        image = base / f"{name}.{fmt}"
        build_image(base / f"{name}-root", image, layout="plain", fmt=fmt)
        built[name] = (image, truth)
    yield built
    shutil.rmtree(base, ignore_errors=True)


def test_inspect_job(guest_worker: WorkerProcess, images: dict) -> None:
    image, truth = images["rhel"]
    destination = image.parent / "rhel-report.json"
    doc = routed(make_job("guestkit.inspect", {"image": {"path": str(image)},
                                                "output": {"destination": str(destination)}}), POOL)
    handle = api.submit(doc)
    result = handle.result(timeout=60)
    assert result["status"] == "completed", result
    assert result["data"]["os"] == {**truth["os"], "hostname": truth["hostname"]}
    assert result["data"]["packages"]["installed"] == truth["packages"]
    assert destination.exists()
    phases = [event["phase"] for event in handle.progress()]
    assert phases[0] == "validation" and phases[-1] == "cleanup" and "package_scan" in phases


def test_profile_job_fail_on_critical(guest_worker: WorkerProcess, images: dict) -> None:
    image, _ = images["debian"]
    doc = routed(make_job("guestkit.profile", {"image": {"path": str(image)},
                                                "options": {"fail_on_critical": True}}), POOL)
    result = api.submit(doc).result(timeout=60)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "EXECUTION_ERROR"
    findings = result["error"]["details"]["findings"]
    assert any(f["id"] == "ACCT-001" and f["severity"] == "critical" for f in findings)
    assert len(findings) > 10


def test_compare_job(guest_worker: WorkerProcess, images: dict) -> None:
    doc = routed(make_job("guestkit.compare", {"baseline": {"path": str(images["debian"][0])},
                                                "target": {"path": str(images["rhel"][0])},
                                                "options": {"compare_files": False}}), POOL)
    result = api.submit(doc).result(timeout=60)
    assert result["status"] == "completed", result
    assert result["data"]["packages"]["added"] and result["data"]["packages"]["removed"]
    assert "/etc/redhat-release" in result["data"]["config"]["added"]


def test_path_outside_allowed_dirs_fails_the_job(guest_worker: WorkerProcess) -> None:
    doc = routed(make_job("guestkit.inspect", {"image": {"path": "/etc/hostname"}}), POOL)
    result = api.submit(doc).result(timeout=60)
    assert result["status"] == "failed" and result["error"]["code"] == "PATH_NOT_ALLOWED"
