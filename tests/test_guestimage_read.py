"""The engine reads every layout in every format and agrees with the builder's ground truth."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from handlers.guestimage import open_guest
from tests.imagebuild import LAYOUTS, VARIANTS, build_image, convert_raw, sample_root

OWNERS = {"/home/alice": (1000, 1000), "/home/alice/notes.txt": (1000, 1000)}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("guestimage-read")
    root = base / "root"
    root.mkdir()
    files = sample_root(root)
    built: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    for layout in LAYOUTS:
        raw = base / f"{layout}.raw"
        truth = build_image(root, raw, layout, "raw", owners=OWNERS)
        for variant, (fmt, kwargs) in VARIANTS.items():
            out = base / f"{layout}-{variant}.{fmt}"
            convert_raw(raw, out, fmt, **kwargs)
            built[(layout, variant)] = (out, truth)
    return {"files": files, "built": built}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reads_layout_in_format(images: dict[str, Any], layout: str, variant: str) -> None:
    path, truth = images["built"][(layout, variant)]
    fmt = VARIANTS[variant][0]
    started = time.monotonic()
    with open_guest(path) as guest:
        tree = guest.root_tree()
        assert guest.image.format == fmt
        assert guest.image.has_backing_file is False
        assert guest.image.compressed is (variant in ("qcow2-compressed", "vmdk-stream"))
        got_parts = [{k: getattr(p, k) for k in truth["partitions"][0]} for p in guest.partitions]
        assert got_parts == truth["partitions"]
        got_fs = [{k: getattr(f, k) for k in ("device", "type", "uuid", "label", "size_bytes")}
                  for f in guest.filesystems]
        assert got_fs == truth["filesystems"]
        assert guest.mountpoints == truth["mountpoints"]
        if "partition_uuids" in truth:
            assert [p.uuid for p in guest.partitions] == truth["partition_uuids"]
        for fs in guest.filesystems:
            if fs.device in truth["fs_offsets"]:
                assert fs.offset_bytes == truth["fs_offsets"][fs.device]
        for guest_path, content in images["files"].items():
            assert tree.read_bytes(guest_path) == content, guest_path
        assert tree.read_bytes("/etc/fstab").decode() == truth["fstab"]
        assert tree.read_bytes("/usr/bin/big", limit=10) == images["files"]["/usr/bin/big"][:10]
        assert tree.readlink("/etc/os-release") == "../usr/lib/os-release"
        assert tree.stat("/etc/os-release").type == "symlink"
        assert tree.stat("/sbin/big") is not None and tree.stat("/sbin/big").type == "file"
        assert tree.read_bytes("/vmlinuz") == images["files"]["/boot/vmlinuz-6.1.0-13-amd64"]
        wants = "/etc/systemd/system/multi-user.target.wants/ssh.service"
        assert tree.read_bytes(wants) == images["files"]["/lib/systemd/system/ssh.service"]
        assert tree.readlink(wants) == "/lib/systemd/system/ssh.service"
        notes = tree.stat("/home/alice/notes.txt")
        assert (notes.type, notes.uid, notes.gid, notes.mode, notes.size) == ("file", 1000, 1000, 0o644, 12)
        assert tree.stat("/etc/passwd").uid == 0
        assert tree.stat("/var/log").type == "dir"
        root_type = next(f["type"] for f in truth["filesystems"] if f["device"] == truth["mountpoints"]["/"])
        assert ("lost+found" in tree.listdir("/")) is (root_type == "ext4")  # XFS has none
        assert tree.listdir("/boot/efi/EFI") == ["debian"]
        assert tree.listdir("/var/lib") == ["\u00fcnicode-name.txt"]
        assert tree.stat("/nonexistent") is None
        assert tree.read_bytes("/etc") is None
        assert tree.listdir("/etc/hostname") is None
        assert tree.readlink("/etc/hostname") is None
        assert tree.read_bytes("/etc/../etc/./hostname") == b"testvm\n"
        if layout == "lvm":
            assert [lv["name"] for lv in guest.lvm[0]["lvs"]] == ["root", "swap", "home"]
            assert guest.lvm[0]["uuid"] == truth["lvm"][0]["vg_uuid"]
    assert time.monotonic() - started < 5


def test_symlink_loop_is_absent_not_a_hang(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sample_root(root)
    (root / "etc/loop-a").symlink_to("loop-b")
    (root / "etc/loop-b").symlink_to("loop-a")
    build_image(root, tmp_path / "d.raw", "plain", "raw")
    with open_guest(tmp_path / "d.raw") as guest:
        tree = guest.root_tree()
        assert tree.read_bytes("/etc/loop-a") is None
        assert tree.stat("/etc/loop-a").type == "symlink"
        assert tree.listdir("/etc/loop-a/x") is None


def test_progress_and_filesystem_tree(images: dict[str, Any]) -> None:
    path, _truth = images["built"][("gpt-boot-efi", "qcow2")]
    events: list[tuple[int, str]] = []
    with open_guest(path, "qcow2", progress=lambda p, m: events.append((p, m))) as guest:
        efi = guest.filesystem_tree("/dev/sda1")
        assert efi.listdir("/") == ["EFI"]
        assert efi.read_bytes("/EFI/debian/grubx64.efi") == images["files"]["/boot/efi/EFI/debian/grubx64.efi"]
        guest.root_tree()
    percents = [p for p, _ in events]
    assert percents == sorted(percents) and percents[0] <= 5 and percents[-1] >= 90


def test_whole_disk_filesystem_without_partition_table(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sample_root(root)
    image = tmp_path / "fs.img"
    with open(image, "wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    subprocess.run(["fakeroot", "mke2fs", "-q", "-F", "-t", "ext3", "-d", str(root), str(image)], check=True)
    with open_guest(image) as guest:
        assert guest.partitions == []
        assert [(f.device, f.type) for f in guest.filesystems] == [("/dev/sda", "ext3")]
        assert guest.root_tree().read_bytes("/etc/hostname") == b"testvm\n"


@pytest.mark.skipif(shutil.which("mkntfs") is None, reason="mkntfs (Debian package ntfs-3g) is not installed")
@pytest.mark.parametrize("fmt", ["raw", "vhdx"])
def test_ntfs_partition_placed_by_uuid(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sample_root(root)
    files = {"readme.txt": b"hello ntfs\r\n", "data.bin": bytes(range(256)) * 300}
    out = tmp_path / f"ntfs.{fmt}"
    truth = build_image(root, out, "plain", fmt, ntfs_files=files)
    with open_guest(out) as guest:
        got_fs = [{k: getattr(f, k) for k in ("device", "type", "uuid", "label", "size_bytes")}
                  for f in guest.filesystems]
        assert got_fs == truth["filesystems"]
        tree = guest.root_tree()
        assert guest.mountpoints == truth["mountpoints"]
        assert tree.listdir("/srv/windows") == sorted(files)
        for name, content in files.items():
            assert tree.read_bytes(f"/srv/windows/{name}") == content
        assert tree.read_bytes("/etc/hostname") == b"testvm\n"
