"""rpm-based guests as they are installed: RHEL 9 with its root on XFS in an LVM logical volume (GPT,
EFI, XFS /boot, an rpm sqlite database written by rpm), Rocky 9 on a plain XFS partition (cloud
images), CentOS 7 on XFS with its Berkeley DB rpm database, SLES 15 with its ndb one (on XFS until
btrfs is read). Inspected through real jobs, in raw and qcow2, and compared field by field with the
ground truth of the tree each image was built from."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from tests.conftest import WorkerProcess, make_job, routed, serve_pool, session_scratch
from tests.guestdata import (
    assert_report_matches,
    make_centos7_tree,
    make_rhel_tree,
    make_rocky_tree,
    make_sles15_tree,
)
from tests.imagebuild import build_image
from tests.xfsbuild import mark_log_dirty

POOL = f"rhel-{uuid.uuid4().hex[:6]}"
GUESTS: dict[str, tuple[Callable[..., dict[str, Any]], str, str]] = {
    "rhel9-lvm-xfs-raw": (functools.partial(make_rhel_tree, rpm_tool=True), "rhel-lvm-xfs", "raw"),
    "rhel9-lvm-xfs-qcow2": (functools.partial(make_rhel_tree, rpm_tool=True), "rhel-lvm-xfs", "qcow2"),
    "rocky9-xfs-qcow2": (make_rocky_tree, "xfs", "qcow2"),
    "rocky9-xfs-raw": (make_rocky_tree, "xfs", "raw"),
    "centos7-xfs-raw": (make_centos7_tree, "xfs", "raw"),
    "centos7-lvm-xfs-qcow2": (make_centos7_tree, "rhel-lvm-xfs", "qcow2"),
    "sles15-xfs-qcow2": (make_sles15_tree, "xfs", "qcow2"),
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from serve_pool(tmp_path_factory, POOL)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("rhel-guests")


def _build(base: Path, name: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    maker, layout, fmt = GUESTS[name]
    truth = maker(base / f"{name}-root")
    image = base / f"{name}.{fmt}"
    built = build_image(base / f"{name}-root", image, layout=layout, fmt=fmt)
    return image, truth, built


def _inspect(image: Path) -> dict[str, Any]:
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(timeout=120)
    assert result["status"] == "completed", result
    return result["data"]


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_inspect_reads_the_guest_field_by_field(worker: WorkerProcess, base: Path, name: str) -> None:
    image, truth, built = _build(base, name)
    report = _inspect(image)
    assert_report_matches(report, truth)
    storage = report["storage"]
    assert [{k: fs[k] for k in ("device", "type", "uuid", "label", "size_bytes")} for fs in storage["filesystems"]] \
        == built["filesystems"]
    assert storage["mountpoints"] == built["mountpoints"] and storage["root_device"] == built["mountpoints"]["/"]
    assert [(vg["vg"], {lv["name"]: lv["size_bytes"] for lv in vg["lvs"]}) for vg in storage["lvm"]] == [
        (vg["vg"], vg["lvs"]) for vg in built["lvm"]]
    assert report["image"]["warnings"] == []


def test_a_dirty_xfs_log_is_read_as_it_stands_and_said(worker: WorkerProcess, base: Path) -> None:
    """An image of a running VM: the root XFS was never unmounted. It is read, and the report says
    which filesystem may lack its most recent changes."""
    image, truth, built = _build(base, "rocky9-xfs-raw")
    offset = built["fs_offsets"]["/dev/sda1"]
    fs = base / "dirty.xfs"
    with open(image, "rb") as source:
        source.seek(offset)
        fs.write_bytes(source.read(built["filesystems"][0]["size_bytes"]))
    mark_log_dirty(fs)
    with open(image, "r+b") as target:
        target.seek(offset)
        target.write(fs.read_bytes())
    report = _inspect(image)
    assert report["os"]["distribution"] == "rocky" and report["packages"]["installed"] == truth["packages"]
    (warning,) = report["image"]["warnings"]
    assert "/dev/sda1" in warning and "log" in warning and "recent changes may be missing" in warning
    sda1 = next(fs for fs in report["storage"]["filesystems"] if fs["device"] == "/dev/sda1")
    assert sda1["warning"] == warning
    profile = api.submit(routed(make_job("guestkit.profile", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert profile["status"] == "completed" and profile["data"]["image"]["warnings"] == [warning]
