"""Every write checked, against an attacker who may place files in an allowed directory and submit
jobs: symlinks planted at the names outputs used to be staged under, outputs that are the job's
inputs (by path, ``..``, symlink or hard link) or each other, and targets that exist. A canary file
outside the allowed directories keeps its hash, the source image keeps its hash, and each refusal
names the fields at fault. Through real workers, once per broker (``--broker``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from app.plugin.atomic import write_atomic
from tests.conftest import SESSION_DIR, WorkerPool, make_job, routed
from tests.imagebuild import build_image, sample_guest, sample_root

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

FIX_HOSTNAME = [{"type": "set_hostname", "options": {"hostname": "newname"}}]


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "canary"
    assert SESSION_DIR not in path.parents
    path.write_bytes(b"do not touch\n")
    return path


@pytest.fixture(scope="module")
def guest() -> Iterator[Path]:
    image = sample_guest(SESSION_DIR / f"outputs-guest-{uuid.uuid4().hex[:6]}", "guest.qcow2")
    yield image
    shutil.rmtree(image.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"outputs-{uuid.uuid4().hex[:6]}"
    workers = WorkerPool(tmp_path_factory.mktemp("outputs-workers"))
    workers(concurrency=2, env={"GUESTKIT_POOLS": name})
    yield name
    workers.kill_all()


@pytest.fixture
def allowed(guest: Path) -> Iterator[Path]:
    """A directory of the test's own holding a copy of the guest as ``src.qcow2``."""
    path = SESSION_DIR / f"outputs-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.copyfile(guest, path / "src.qcow2")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(pool: str, operation: str, data: dict[str, Any], job_id: str | None = None) -> dict[str, Any]:
    doc = routed(make_job(operation, data), pool)
    if job_id:
        doc["job_id"] = job_id
    return api.submit(doc).result(timeout=120)


def test_links_planted_at_staging_names_are_never_written_through(pool: str, allowed: Path, canary: Path) -> None:
    before = _hash(canary)
    source, target, fixed, log = (allowed / n for n in ("src.qcow2", "out.raw", "fixed.qcow2", "fix-log.json"))
    job_ids = [f"links-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    work_root = SESSION_DIR / "home" / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    for job_id in job_ids:  # every name this platform used to stage an output under, and the old work dir
        for name in (f".{target.name}.partial-{job_id}", f".{target.name}.tmp", f".{fixed.name}.partial-{job_id}",
                     f".{log.name}.tmp", f".report.json.{os.getpid()}.tmp"):
            if not (allowed / name).is_symlink():
                (allowed / name).symlink_to(canary)
        (work_root / job_id).symlink_to(canary.parent, target_is_directory=True)
    converted = _run(pool, "guestkit.convert", {"source": {"path": str(source)},
                                                "target": {"path": str(target), "format": "raw"}}, job_ids[0])
    assert converted["status"] == "completed", converted
    fixed_run = _run(pool, "guestkit.fix", {"image": {"path": str(source)}, "operations": FIX_HOSTNAME,
                                            "output": {"fixed_image": str(fixed), "log_path": str(log)}}, job_ids[1])
    assert fixed_run["status"] == "completed", fixed_run
    report = _run(pool, "guestkit.inspect", {"image": {"path": str(fixed)},
                                             "output": {"destination": str(allowed / "report.json")}}, job_ids[2])
    assert report["status"] == "completed" and report["data"]["os"]["hostname"] == "newname", report
    assert _hash(canary) == before and sorted(p.name for p in canary.parent.iterdir()) == ["canary"]
    assert {p.name for p in allowed.iterdir() if p.is_file() and not p.is_symlink()} == {
        "src.qcow2", "out.raw", "fixed.qcow2", "fix-log.json", "report.json"}, "a staging file was left behind"


def test_outputs_that_are_inputs_or_each_other_are_refused_naming_both_fields(pool: str, allowed: Path) -> None:
    source = allowed / "src.qcow2"
    (allowed / "alias.qcow2").symlink_to(source)
    os.link(source, allowed / "hard.qcow2")
    (allowed / "sub").mkdir()
    dotdot = str(allowed / "sub" / ".." / "src.qcow2")
    before = _hash(source)
    image = {"path": str(source)}
    cases = {
        "convert onto its source": ("guestkit.convert", {
            "source": image, "target": {"path": str(source), "format": "qcow2"}, "options": {"overwrite": True}},
            ("target.path", "source.path")),
        "convert onto its source by ..": ("guestkit.convert", {
            "source": image, "target": {"path": dotdot, "format": "raw"}, "options": {"overwrite": True}},
            ("target.path", "source.path")),
        "convert onto a hard link of its source": ("guestkit.convert", {
            "source": image, "target": {"path": str(allowed / "hard.qcow2"), "format": "raw"},
            "options": {"overwrite": True}}, ("target.path", "source.path")),
        "fixed_image is the source by a symlink": ("guestkit.fix", {
            "image": image, "operations": FIX_HOSTNAME,
            "output": {"fixed_image": str(allowed / "alias.qcow2"), "overwrite": True}},
            ("output.fixed_image", "image.path")),
        "log_path is the source": ("guestkit.fix", {
            "image": image, "operations": FIX_HOSTNAME,
            "output": {"fixed_image": str(allowed / "f.qcow2"), "log_path": str(source), "overwrite": True}},
            ("output.log_path", "image.path")),
        "log_path is fixed_image": ("guestkit.fix", {
            "image": image, "operations": FIX_HOSTNAME,
            "output": {"fixed_image": str(allowed / "g.qcow2"), "log_path": str(allowed / "g.qcow2")}},
            ("output.log_path", "output.fixed_image")),
        "backup_path is the source": ("guestkit.fix", {
            "image": {**image, "create_backup": True, "backup_path": str(allowed / "hard.qcow2")},
            "operations": FIX_HOSTNAME, "output": {"fixed_image": str(allowed / "h.qcow2")}},
            ("image.backup_path", "image.path")),
        "inspect report onto its image": ("guestkit.inspect", {
            "image": image, "output": {"destination": str(allowed / "alias.qcow2"), "overwrite": True}},
            ("output.destination", "image.path")),
        "compare report onto its target": ("guestkit.compare", {
            "baseline": image, "target": {"path": str(allowed / "hard.qcow2")},
            "output": {"destination": dotdot, "overwrite": True}}, ("output.destination", "baseline.path")),
    }
    handles = {name: (fields, api.submit(routed(make_job(op, data), pool)))
               for name, (op, data, fields) in cases.items()}
    for name, (fields, handle) in handles.items():
        result = handle.result(timeout=120)
        error = result.get("error") or {}
        assert result["status"] == "failed" and error.get("code") == "VALIDATION_ERROR", (name, result)
        assert all(field in error["message"] for field in fields), (name, error["message"])
    assert _hash(source) == before
    assert not (allowed / "f.qcow2").exists() and not (allowed / "g.qcow2").exists()


def test_an_existing_output_is_refused_unless_the_job_says_overwrite(pool: str, allowed: Path,
                                                                    canary: Path) -> None:
    source, target = allowed / "src.qcow2", allowed / "exists.raw"
    target.write_bytes(b"keep me")
    (allowed / "link.raw").symlink_to(canary)
    data = {"source": {"path": str(source)}, "target": {"path": str(target), "format": "raw"}}
    refused = _run(pool, "guestkit.convert", data)
    assert refused["error"]["code"] == "OUTPUT_EXISTS" and "options.overwrite" in refused["error"]["message"]
    assert target.read_bytes() == b"keep me"
    replaced = _run(pool, "guestkit.convert", {**data, "options": {"overwrite": True}})
    assert replaced["status"] == "completed" and replaced["data"]["verified"] is True, replaced
    linked = _run(pool, "guestkit.convert", {"source": {"path": str(source)}, "options": {"overwrite": True},
                                             "target": {"path": str(allowed / "link.raw"), "format": "raw"}})
    assert linked["status"] == "failed", linked  # resolves outside the allowed directories: never followed
    assert canary.read_bytes() == b"do not touch\n"
    report = allowed / "report.json"
    report.write_text("old")
    again = _run(pool, "guestkit.inspect", {"image": {"path": str(source)}, "output": {"destination": str(report)}})
    assert again["error"]["code"] == "OUTPUT_EXISTS" and report.read_text() == "old", again


def test_write_atomic_replaces_a_planted_link_and_never_follows_it(tmp_path: Path, canary: Path) -> None:
    target = tmp_path / "result.json"
    target.symlink_to(canary)
    write_atomic(target, b"{}")
    assert not target.is_symlink() and target.read_bytes() == b"{}"
    assert canary.read_bytes() == b"do not touch\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# --- guest links: a fix never writes through a symlink inside the guest -------------------------------
SHADOW_MARKER = b"alicehash"


@pytest.fixture(scope="module")
def linked_guest() -> Iterator[Path]:
    """A guest whose /etc/hostname, /etc/motd, /.autorelabel and the enablement links of a service
    ``evil`` are symlinks to /etc/shadow, and one whose /etc/shadow and /etc/fstab are themselves
    symlinks to the real files elsewhere."""
    base = SESSION_DIR / f"outputs-linked-{uuid.uuid4().hex[:6]}"
    base.mkdir()
    files = sample_root(base / "root")
    assert SHADOW_MARKER in files["/etc/shadow"]
    etc = base / "root" / "etc"
    (etc / "hostname").unlink()
    (etc / "hostname").symlink_to("shadow")
    (etc / "motd").symlink_to("/etc/shadow")
    (base / "root" / ".autorelabel").symlink_to("/etc/shadow")
    (etc / "systemd" / "system" / "multi-user.target.wants" / "evil.service").symlink_to("/etc/shadow")
    (etc / "systemd" / "system" / "evil.service").symlink_to("/etc/shadow")
    (etc / "rc3.d").mkdir()
    (etc / "rc3.d" / "S20evil").symlink_to("/etc/shadow")
    build_image(base / "root", base / "linked.qcow2", fmt="qcow2")
    (base / "root" / "var" / "lib").mkdir(parents=True, exist_ok=True)
    (etc / "shadow").rename(base / "root" / "var" / "lib" / "shadow.real")
    (etc / "shadow").symlink_to("../var/lib/shadow.real")
    (etc / "fstab").rename(etc / "fstab.real")
    (etc / "fstab").symlink_to("fstab.real")
    build_image(base / "root", base / "shadow-linked.qcow2", fmt="qcow2")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_fix_refuses_to_write_through_guest_links_and_reads_nothing_through_them(
        pool: str, linked_guest: Path, allowed: Path) -> None:
    from handlers.guestimage import open_guest

    linked, shadow_linked = linked_guest / "linked.qcow2", linked_guest / "shadow-linked.qcow2"
    sources = {image: _hash(image) for image in (linked, shadow_linked)}
    cases = {
        "set_hostname on a linked /etc/hostname": (linked, {"type": "set_hostname",
                                                            "options": {"hostname": "newname"}}, "/etc/hostname"),
        "write_file on a linked path": (linked, {"type": "write_file",
                                                 "options": {"path": "/etc/motd", "content": "x"}}, "/etc/motd"),
        "lock_account on a linked /etc/shadow": (shadow_linked, {"type": "lock_account",
                                                                 "options": {"username": "alice"}}, "/etc/shadow"),
        "fstab_repair on a linked /etc/fstab": (shadow_linked, {"type": "fstab_repair"}, "/etc/fstab"),
        "selinux_relabel on a linked /.autorelabel": (linked, {"type": "selinux_relabel"}, "/.autorelabel"),
    }
    handles = {}
    for name, (image, operation, path) in cases.items():
        for dry_run in (False, True):
            out = allowed / f"fixed-{len(handles)}.qcow2"
            data = {"image": {"path": str(image)}, "operations": [operation], "dry_run": dry_run,
                    "output": {"fixed_image": str(out)}}
            handles[(name, dry_run)] = (path, out, api.submit(routed(make_job("guestkit.fix", data), pool)))
    for (name, dry_run), (path, out, handle) in handles.items():
        result = handle.result(timeout=120)
        error = result.get("error") or {}
        assert result["status"] == "failed" and error.get("code") == "GUEST_LINK_REFUSED", (name, dry_run, result)
        assert path in error["message"] and "replace_link" in error["message"], error["message"]
        assert SHADOW_MARKER not in json.dumps(result).encode(), (name, "the link's target leaked into the result")
        assert not out.exists()
    assert {image: _hash(image) for image in sources} == sources
    replaced = allowed / "replaced.qcow2"
    result = _run(pool, "guestkit.fix", {
        "image": {"path": str(linked)}, "output": {"fixed_image": str(replaced)},
        "operations": [{"type": "set_hostname", "options": {"hostname": "newname", "replace_link": True}}]})
    assert result["status"] == "completed", result
    assert SHADOW_MARKER not in json.dumps(result).encode()
    with open_guest(linked) as before, open_guest(replaced) as after:
        tree = after.root_tree()
        assert tree.stat("/etc/hostname").type == "file" and tree.read_bytes("/etc/hostname") == b"newname\n"
        assert tree.read_bytes("/etc/shadow") == before.root_tree().read_bytes("/etc/shadow")
        assert tree.stat("/etc/shadow").mode == before.root_tree().stat("/etc/shadow").mode


def test_fix_removes_and_replaces_guest_links_without_following_them(pool: str, linked_guest: Path,
                                                                    allowed: Path) -> None:
    """disable_service (its enablement, SysV and mask links all point at /etc/shadow), selinux_relabel
    with replace_link and remove_file act on the links themselves: /etc/shadow keeps its bytes and
    mode, no result carries them, and the source image keeps its hash."""
    from handlers.guestimage import open_guest

    linked, fixed = linked_guest / "linked.qcow2", allowed / "disabled.qcow2"
    source = _hash(linked)
    result = _run(pool, "guestkit.fix", {
        "image": {"path": str(linked)}, "output": {"fixed_image": str(fixed)},
        "operations": [{"type": "disable_service", "options": {"name": "evil", "mask": True}},
                       {"type": "selinux_relabel", "options": {"replace_link": True}},
                       {"type": "remove_file", "options": {"path": "/etc/motd"}}]})
    assert result["status"] == "completed", result
    assert _hash(linked) == source
    assert SHADOW_MARKER not in json.dumps(result).encode()
    with open_guest(linked) as before, open_guest(fixed) as after:
        tree, old = after.root_tree(), before.root_tree()
        assert tree.stat("/etc/systemd/system/multi-user.target.wants/evil.service") is None
        assert tree.readlink("/etc/systemd/system/evil.service") == "/dev/null"
        assert tree.stat("/etc/rc3.d/S20evil") is None
        assert tree.stat("/.autorelabel").type == "file" and tree.read_bytes("/.autorelabel") == b""
        assert tree.stat("/etc/motd") is None
        assert tree.read_bytes("/etc/shadow") == old.read_bytes("/etc/shadow")
        assert tree.stat("/etc/shadow").mode == old.stat("/etc/shadow").mode


# --- the platform's own files: results, the bridge's done/ and failed/, the job store ------------------
def test_links_planted_at_the_platforms_own_names_are_never_written_through(pool: str, allowed: Path,
                                                                           canary: Path) -> None:
    import app.celery  # noqa: F401 - makes the guestkit app the current one, which the bridge submits through
    from app.intake.bridge import Bridge, BridgeConfig

    before = _hash(canary)
    doc = routed(make_job("system.echo", {"message": "hi"}), pool)
    result_path = SESSION_DIR / "results" / f"{doc['job_id']}-result.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.symlink_to(canary)
    assert api.submit(doc).result(timeout=60)["status"] == "completed"
    assert not result_path.is_symlink() and b"hi" in result_path.read_bytes()

    jobs = allowed / "drop"
    for folder in ("done", "failed"):
        (jobs / folder).mkdir(parents=True)
    (jobs / "done" / "good.json").symlink_to(canary)
    (jobs / "failed" / "bad.json").symlink_to(canary)
    (jobs / "failed" / "bad.json.reason.txt").symlink_to(canary)
    (jobs / "failed" / "bad.1.json.reason.txt").symlink_to(canary)
    (jobs / "good.json").write_text(json.dumps(routed(make_job("system.echo", {"message": "dropped"}), pool)))
    (jobs / "bad.json").write_text("{not json")
    bridge = Bridge(BridgeConfig(jobs_dir=jobs, settle=0.0))
    deadline = time.monotonic() + 60
    while not ((jobs / "done" / "good.1.json").exists() and list((jobs / "failed").glob("bad.*.json"))):
        bridge.tick()
        assert time.monotonic() < deadline, sorted(p.name for p in jobs.rglob("*"))
        time.sleep(0.02)
    moved = sorted(p.name for p in (jobs / "failed").iterdir() if not p.is_symlink())
    assert moved == ["bad.2.json", "bad.2.json.reason.txt"], moved
    assert _hash(canary) == before


def test_bridge_folders_swapped_for_links_are_never_written_through(pool: str, allowed: Path,
                                                                     canary: Path) -> None:
    """A folder that is a link when the bridge starts is refused, naming it; one swapped for a link
    afterwards changes nothing: the bridge keeps to the folders it opened."""
    import app.celery  # noqa: F401 - makes the guestkit app the current one, which the bridge submits through
    from app.intake.bridge import Bridge, BridgeConfig

    outside = canary.parent / f"swap-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    jobs = allowed / "drop"
    jobs.mkdir()
    (jobs / "failed").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RuntimeError, match=r"drop/failed is a symbolic link"):
        Bridge(BridgeConfig(jobs_dir=jobs, settle=0.0))
    (jobs / "failed").unlink()
    bridge = Bridge(BridgeConfig(jobs_dir=jobs, settle=0.0))
    folders = (".processing", ".ids", "done", "failed")
    for folder in folders:
        (jobs / folder).rename(jobs / f"{folder}.moved")
        (jobs / folder).symlink_to(outside, target_is_directory=True)
    good = routed(make_job("system.echo", {"message": "dropped"}), pool)
    (jobs / "good.json").write_text(json.dumps(good))
    (jobs / "bad.json").write_text(json.dumps({**good, "job_id": f"bad-{uuid.uuid4().hex[:8]}", "operation": 7}))
    try:
        deadline = time.monotonic() + 60
        while not ((jobs / "done.moved" / "good.json").exists() and (jobs / "failed.moved" / "bad.json").exists()):
            bridge.tick()
            assert time.monotonic() < deadline, sorted(str(p.relative_to(jobs)) for p in jobs.rglob("*"))
            time.sleep(0.02)
    finally:
        bridge.close()
    assert "operation" in (jobs / "failed.moved" / "bad.json.reason.txt").read_text()
    assert os.path.lexists(jobs / ".ids.moved" / good["job_id"])  # the record (a link whose text it is)
    assert list(outside.iterdir()) == []
    assert _hash(canary) == hashlib.sha256(b"do not touch\n").hexdigest()


def test_the_file_store_never_opens_a_journal_through_a_link(tmp_path: Path, canary: Path) -> None:
    from app.protocol.states import JobStatus
    from app.store.base import StoreFileRefused
    from app.store.files import FileJobStore

    store = FileJobStore(tmp_path / "store")
    status = JobStatus(job_id=f"job-{uuid.uuid4().hex[:10]}", operation="system.echo")
    (store.root / "jobs" / f"{status.job_id}.jsonl").symlink_to(canary)
    with pytest.raises(StoreFileRefused, match="is a symbolic link"):
        store.create(status)
    with pytest.raises(StoreFileRefused, match="is a symbolic link"):
        store.get(status.job_id)
    assert canary.read_bytes() == b"do not touch\n"
