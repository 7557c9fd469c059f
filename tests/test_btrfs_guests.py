"""btrfs guests as openSUSE and Fedora lay them out, read through the guest-image engine and through real
inspect jobs: the root found in its subvolume (openSUSE's default snapper snapshot, Fedora's ``root``
beside a top-level default), fstab's ``subvol=`` mounts followed (``/home``, ``/var``), every file the
same as written, and the subvolumes listed in ``storage.filesystems`` with where they are mounted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from handlers.guestimage import open_guest
from tests.btrfsbuild import btrfs_guest, need_loop_mounts
from tests.conftest import WorkerProcess, make_job, routed, serve_pool, session_scratch
from tests.imagebuild import sample_root

POOL = f"btrfs-{uuid.uuid4().hex[:6]}"
#: mountpoint -> subvolume path, and the default subvolume, of each layout
EXPECTED = {
    "suse": ({"/": "@/.snapshots/1/snapshot", "/home": "@/home", "/var": "@/var", "/.snapshots": "@/.snapshots"},
             "@/.snapshots/1/snapshot"),
    "fedora": ({"/": "root", "/home": "home"}, "/"),
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from serve_pool(tmp_path_factory, POOL)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("btrfs-guests")


@pytest.fixture(scope="module")
def guests(base: Path) -> dict[str, tuple[Path, dict[str, Any], dict[str, bytes]]]:
    """Each layout in raw and qcow2: (image, build facts, the root tree's files)."""
    need_loop_mounts()
    root = base / "root"
    files = sample_root(root)
    built = {}
    for kind in EXPECTED:
        for fmt in ("raw", "qcow2"):
            image = base / f"{kind}.{fmt}"
            built[f"{kind}-{fmt}"] = (image, btrfs_guest(root, image, kind, fmt), files)
    return built


def _subvolumes(kind: str, facts: dict[str, Any]) -> list[dict[str, Any]]:
    layout, default = EXPECTED[kind]
    ids = {"/": 5, **facts["subvolumes"]}
    return sorted(({"id": ids[path], "path": path, "default": path == default,
                    "mountpoints": sorted(p for p, s in layout.items() if s == path)} for path in ids),
                  key=lambda s: s["id"])


@pytest.mark.parametrize("name", ["suse-raw", "suse-qcow2", "fedora-raw", "fedora-qcow2"])
def test_a_btrfs_guest_reads_across_its_subvolumes(guests: dict[str, Any], name: str) -> None:
    image, facts, files = guests[name]
    kind = name.split("-")[0]
    with open_guest(image) as guest:
        view = guest.root_tree()
        assert {path: view.read_bytes(path) for path in files} == files
        assert guest.mountpoints == {point: "/dev/sda1" for point in EXPECTED[kind][0]}
        assert guest.unplaced_mounts == [] and guest.root_device == "/dev/sda1"
        (fs,) = guest.filesystems
        assert (fs.type, fs.uuid, fs.label) == ("btrfs", facts["uuid"], "guestroot")
        assert fs.subvolumes == _subvolumes(kind, facts)
        assert view.read_bytes("/etc/fstab") == facts["fstab"].encode()


@pytest.mark.parametrize("name", ["suse-qcow2", "fedora-raw"])
def test_inspect_jobs_read_btrfs_guests(worker: WorkerProcess, guests: dict[str, Any], name: str) -> None:
    image, facts, _files = guests[name]
    kind = name.split("-")[0]
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert result["status"] == "completed", result
    report = result["data"]
    assert report["os"]["distribution"] == "debian" and report["os"]["hostname"] == "testvm" and report["errors"] == []
    assert {u["name"] for u in report["users"]} >= {"root", "alice"}
    storage = report["storage"]
    assert storage["root_device"] == "/dev/sda1" and storage["unplaced_mounts"] == []
    assert storage["mountpoints"] == {point: "/dev/sda1" for point in EXPECTED[kind][0]}
    (fs,) = storage["filesystems"]
    assert fs["type"] == "btrfs" and fs["uuid"] == facts["uuid"]
    assert fs["subvolumes"] == _subvolumes(kind, facts)


# --- SUSE and Fedora guests on btrfs, field by field ----------------------------------------------------
DISTRIBUTIONS = {"sles15": "suse", "opensuse-leap": "suse", "opensuse-tumbleweed": "suse", "fedora41": "fedora"}


def _maker(name: str):  # noqa: ANN202 - a tree maker
    from tests import guestdata

    return {"sles15": guestdata.make_sles15_btrfs_tree, "fedora41": guestdata.make_fedora_tree,
            "opensuse-leap": lambda root: guestdata.make_opensuse_tree(root, "leap"),
            "opensuse-tumbleweed": lambda root: guestdata.make_opensuse_tree(root, "tumbleweed")}[name]


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_suse_and_fedora_guests_on_btrfs_are_read_field_by_field(worker: WorkerProcess, base: Path,
                                                                  name: str) -> None:
    from tests.guestdata import assert_report_matches

    need_loop_mounts()
    kind = DISTRIBUTIONS[name]
    truth = _maker(name)(base / f"{name}-root")
    image = base / f"{name}.qcow2"
    facts = btrfs_guest(base / f"{name}-root", image, kind, "qcow2")
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert result["status"] == "completed", result
    report = result["data"]
    assert_report_matches(report, truth)
    assert report["errors"] == [] and report["image"]["warnings"] == []
    storage = report["storage"]
    assert storage["mountpoints"] == {point: "/dev/sda1" for point in EXPECTED[kind][0]}
    assert storage["filesystems"][0]["subvolumes"] == _subvolumes(kind, facts)
    if kind == "suse":
        assert report["os"]["package_manager"] == "zypper" and report["packages"]["format"] == "rpm"
        assert storage["root_subvolume"] == "@/.snapshots/1/snapshot"
        assert storage["snapper"] == {"number": 1, "subvolume": "@/.snapshots/1/snapshot", "type": "single",
                                      "date": "2026-11-30 09:12:44", "description": "first root filesystem",
                                      "cleanup": None}
        assert {i["source"] for i in report["network"]["interfaces"]} == {"wicked"}
        assert report["security"]["apparmor"]["enabled"] is True
    else:
        assert storage["root_subvolume"] == "root" and storage["snapper"] is None
