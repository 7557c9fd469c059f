"""Guest files read under the job's limits (handlers.tree): a file is read to GUESTKIT_MAX_FILE_BYTES,
a configuration file to GUESTKIT_MAX_ENTRIES lines, a package database to GUESTKIT_MAX_ENTRIES
packages; what was cut is listed in the report's ``truncated``, never silently. The bombs are built
in their real formats; one goes through a real job on a worker whose memory is bounded."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.intake import api
from app.plugin.limits import Limits
from handlers.guestos import read_packages, read_users
from handlers.inspect import inspect_tree
from handlers.profile import profile_tree
from handlers.tree import DirectoryTree
from tests.conftest import SESSION_DIR, WorkerPool, WorkerProcess, make_job, routed
from tests.guestdata import make_debian_tree, make_rhel_tree, write_rpmdb
from tests.imagebuild import build_image

POOL = f"bombs-{uuid.uuid4().hex[:6]}"


def _dpkg_bomb(root: Path, stanzas: int) -> None:
    """A dpkg status of ``stanzas`` installed packages (a few lines each, as dpkg writes them)."""
    with open(root / "var/lib/dpkg/status", "w") as status:
        for n in range(stanzas):
            status.write(f"Package: bomb{n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{n}\n\n")


def test_a_package_database_is_read_to_max_entries_and_says_so(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    _dpkg_bomb(tmp_path, 30_000)
    tree = DirectoryTree(tmp_path, Limits(max_entries=10_000))
    packages = read_packages(tree)["packages"]
    assert len(packages) == 10_000 and {p["name"] for p in packages} == {f"bomb{n}" for n in range(10_000)}
    assert tree.truncated == [{"file": "/var/lib/dpkg/status", "limit": "GUESTKIT_MAX_ENTRIES", "value": 10_000,
                               "found": 30_000}]


def test_an_rpm_database_over_max_entries_is_reported(tmp_path: Path) -> None:
    truth = make_rhel_tree(tmp_path)
    write_rpmdb(tmp_path, [dict(truth["packages"][0], name=f"bomb{n}") for n in range(60)])
    tree = DirectoryTree(tmp_path, Limits(max_entries=50))
    found = read_packages(tree)
    assert found["packages"] == [] and "more than 50 packages" in found["warning"]
    assert tree.truncated == [{"file": "/var/lib/rpm/rpmdb.sqlite", "limit": "GUESTKIT_MAX_ENTRIES", "value": 50,
                               "found": None}]


def test_a_config_file_is_read_to_max_entries_lines(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    with open(tmp_path / "etc/passwd", "a") as passwd:
        passwd.writelines(f"bomb{n}:x:{10_000 + n}:100::/home/bomb{n}:/bin/sh\n" for n in range(1_000_000))
    lines = sum(1 for _ in open(tmp_path / "etc/passwd"))
    tree = DirectoryTree(tmp_path, Limits(max_entries=5_000))
    assert len(read_users(tree)) == 5_000
    assert tree.truncated == [{"file": "/etc/passwd", "limit": "GUESTKIT_MAX_ENTRIES", "value": 5_000,
                               "found": lines}]


def test_a_file_is_read_to_max_file_bytes_and_the_report_lists_it(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    sshd = tmp_path / "etc/ssh/sshd_config"
    sshd.write_text("PermitRootLogin yes\n" + "#" * 3_000_000 + "\nPermitEmptyPasswords yes\n")
    tree = DirectoryTree(tmp_path, Limits(max_file_bytes=1024 * 1024))
    report = profile_tree(tree, ["security"])
    fired = {f["id"] for f in report["findings"]}
    assert "SSH-001" in fired and "SSH-002" not in fired  # the line past the limit was never read
    assert {"file": "/etc/ssh/sshd_config", "limit": "GUESTKIT_MAX_FILE_BYTES", "value": 1024 * 1024,
            "found": sshd.stat().st_size} in report["truncated"]


def test_nothing_cut_nothing_listed(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    assert inspect_tree(DirectoryTree(tmp_path))["truncated"] == []


# --- through a real job -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    pool = WorkerPool(tmp_path_factory.mktemp("bomb-workers"))
    yield pool(concurrency=1, env={"GUESTKIT_POOLS": POOL, "GUESTKIT_MAX_ENTRIES": "50000",
                                   "GUESTKIT_CHILD_MEMORY_MB": "1024"})
    pool.kill_all()


@pytest.fixture
def base() -> Iterator[Path]:
    path = SESSION_DIR / f"bombs-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_dpkg_status_bomb_in_an_image_completes_cut_and_bounded(worker: WorkerProcess, base: Path) -> None:
    """2,000,000 packages (a 130 MB status file) in a qcow2: the job completes with the first 50,000,
    says so, stays below its memory limit, and the same worker runs the next job."""
    root = base / "root"
    make_debian_tree(root)
    _dpkg_bomb(root, 2_000_000)
    image = base / "bomb.qcow2"
    build_image(root, image, "plain", "qcow2")
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(
        timeout=300)
    assert result["status"] == "completed", result
    report = result["data"]
    assert report["packages"]["count"] == 50_000
    assert report["truncated"] == [{"file": "/var/lib/dpkg/status", "limit": "GUESTKIT_MAX_ENTRIES",
                                    "value": 50_000, "found": 2_000_000}]
    assert result["metrics"]["peak_memory_mb"] < 1024
    after = api.submit(routed(make_job("system.echo", {"message": "next"}), POOL)).result(timeout=60)
    assert after["status"] == "completed"


# --- walks and volumes ------------------------------------------------------------------------
def _nest(root: Path, top: str, levels: int) -> None:
    path = root / top.lstrip("/")
    for level in range(levels):
        path = path / f"d{level}"
    path.mkdir(parents=True)
    (path / "bottom.txt").write_text("deep\n")


def test_a_walk_stops_at_max_tree_depth_and_says_where(tmp_path: Path) -> None:
    from handlers.compare import compare_trees

    for side in ("a", "b"):
        make_debian_tree(tmp_path / side)
        _nest(tmp_path / side, "/opt", 300)
    limits = Limits(max_tree_depth=10)
    report = compare_trees(DirectoryTree(tmp_path / "a", limits), DirectoryTree(tmp_path / "b", limits))
    assert report["files"]["/opt"] == {"added": [], "removed": [], "modified": []}
    cut = {"file": "/opt", "limit": "GUESTKIT_MAX_TREE_DEPTH", "value": 10, "found": None}
    assert report["truncated"] == [{**cut, "image": "baseline"}, {**cut, "image": "target"}]


def test_a_walk_over_max_tree_entries_is_skipped_and_says_so(tmp_path: Path) -> None:
    from handlers.compare import compare_trees

    for side in ("a", "b"):
        make_debian_tree(tmp_path / side)
        for n in range(300):
            (tmp_path / side / "srv" / f"f{n}").parent.mkdir(exist_ok=True)
            (tmp_path / side / "srv" / f"f{n}").write_text(side)
    limits = Limits(max_tree_entries=100)
    report = compare_trees(DirectoryTree(tmp_path / "a", limits), DirectoryTree(tmp_path / "b", limits))
    assert "GUESTKIT_MAX_TREE_ENTRIES" in report["files"]["/srv"]["skipped"]
    assert {"file": "/srv", "limit": "GUESTKIT_MAX_TREE_ENTRIES", "value": 100, "found": None,
            "image": "baseline"} in report["truncated"]


def test_volumes_beyond_max_volumes_are_not_looked_at(tmp_path: Path) -> None:
    """/boot, the LVM physical volume and the root logical volume: the swap and /home volumes are
    past a budget of three, left out, and said to be."""
    from handlers.guestimage import open_guest

    root = tmp_path / "root"
    make_debian_tree(root)
    image = tmp_path / "lvm.raw"
    build_image(root, image, "lvm", "raw")
    with open_guest(image, "raw", limits=Limits(max_volumes=3)) as guest:
        tree = guest.root_tree()
        assert sorted(fs.device for fs in guest.filesystems) == ["/dev/sda1", "/dev/vg0/root"]
        assert read_packages(tree)["packages"]  # the root is read as ever
        assert tree.truncated == [{"file": "volume group vg0", "limit": "GUESTKIT_MAX_VOLUMES", "value": 3,
                                   "found": None}]


def test_a_deep_tree_in_an_image_is_compared_to_the_depth_limit(worker: WorkerProcess, base: Path) -> None:
    root = base / "deep-root"
    make_debian_tree(root)
    _nest(root, "/srv", 200)
    image = base / "deep.qcow2"
    build_image(root, image, "plain", "qcow2")
    result = api.submit(routed(make_job("guestkit.compare", {
        "baseline": {"path": str(image)}, "target": {"path": str(image)},
        "options": {"compare_files": True}}), POOL)).result(timeout=300)
    assert result["status"] == "completed", result
    cut = {"file": "/srv", "limit": "GUESTKIT_MAX_TREE_DEPTH", "value": 64, "found": None}
    assert result["data"]["truncated"] == [{**cut, "image": "baseline"}, {**cut, "image": "target"}]
