"""Images the engine cannot read end quickly in UNSUPPORTED_IMAGE (or IMAGE_NOT_FOUND), naming what was found."""

from __future__ import annotations

import os
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.guestimage import ImagePolicy, open_guest
from tests.imagebuild import MiB, _lvm_metadata, _write_pv, build_image, sample_root

pytestmark = pytest.mark.timeout(60)


def _mbr_disk(path: Path, size: int = 64 * MiB, part_start: int = MiB, part_size: int = 32 * MiB,
              ptype: str = "83") -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)
    subprocess.run(["sfdisk", "-q", str(path)], check=True, capture_output=True,
                   input=f"label: dos\nstart={part_start // 512}, size={part_size // 512}, type={ptype}\n".encode())


def _poke(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _expect_unsupported(path: Path, fmt: str | None = None, contains: str = "") -> JobError:
    started = time.monotonic()
    with pytest.raises(JobError) as caught:
        with open_guest(path, fmt) as guest:
            guest.root_tree()
    assert time.monotonic() - started < 10
    assert caught.value.code == ErrorCode.UNSUPPORTED_IMAGE, caught.value
    assert contains.lower() in caught.value.message.lower(), caught.value.message
    return caught.value


def _xfs(path: Path) -> None:
    _mbr_disk(path)
    _poke(path, MiB, b"XFSB" + b"\0" * 508)


def _btrfs(path: Path) -> None:
    _mbr_disk(path)
    _poke(path, MiB + 0x10040, b"_BHRfS_M")


def _luks(path: Path) -> None:
    _mbr_disk(path)
    _poke(path, MiB, b"LUKS\xba\xbe\x00\x02")


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(MiB))


def _text(path: Path) -> None:
    path.write_text("this is not a disk image\n" * 1000)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _past_end(path: Path) -> None:
    _mbr_disk(path, size=8 * MiB, part_size=4 * MiB)
    _poke(path, 446 + 12, struct.pack("<I", 64 * MiB // 512))  # sector count beyond the disk


def _ebr_loop(path: Path) -> None:
    _mbr_disk(path, ptype="5")
    ebr = bytearray(512)
    ebr[446:462] = bytes([0, 0, 0, 0, 0x05, 0, 0, 0]) + struct.pack("<II", 0, 100)  # next EBR = itself
    ebr[510:512] = b"\x55\xaa"
    _poke(path, MiB, bytes(ebr))


def _gpt_corrupt(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(16 * MiB)
    subprocess.run(["sfdisk", "-q", str(path)], check=True, capture_output=True,
                   input=b"label: gpt\nstart=2048, size=8192, type=L\n")
    _poke(path, 512 + 40, b"\xff\xff")  # header field changed, CRC no longer matches
    _poke(path, 16 * MiB - 512 + 40, b"\xff\xff")  # and the backup header too


def test_gpt_backup_header_used_when_primary_is_damaged(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sample_root(root)
    path = tmp_path / "gpt.raw"
    truth = build_image(root, path, "gpt-boot-efi", "raw")
    _poke(path, 512 + 40, b"\xff\xff")
    with open_guest(path) as guest:
        assert [p.start_bytes for p in guest.partitions] == [p["start_bytes"] for p in truth["partitions"]]
        assert guest.root_tree().read_bytes("/etc/hostname") == b"testvm\n"


def _unknown_partition(path: Path) -> None:
    _mbr_disk(path)


TRUNCATED: list[tuple[str, Callable[[Path], None], str]] = [
    ("xfs", _xfs, "xfs"), ("btrfs", _btrfs, "btrfs"),
    ("random", _random, ""), ("text", _text, ""), ("empty", _empty, ""),
    ("past-end", _past_end, "outside the disk"), ("ebr-loop", _ebr_loop, "loops"),
    ("gpt-crc", _gpt_corrupt, "checksum"), ("blank-partition", _unknown_partition, "no readable filesystem"),
]


@pytest.mark.parametrize(("name", "make", "contains"), TRUNCATED, ids=[t[0] for t in TRUNCATED])
def test_unreadable_raw_images(tmp_path: Path, name: str, make: Callable[[Path], None], contains: str) -> None:
    path = tmp_path / f"{name}.img"
    make(path)
    error = _expect_unsupported(path, contains=contains)
    assert error.details


def test_a_volume_with_a_damaged_luks_header_is_still_an_encrypted_volume(tmp_path: Path) -> None:
    """Never UNSUPPORTED_IMAGE nor "unknown": the operator learns the image holds an encrypted volume."""
    path = tmp_path / "luks.img"
    _luks(path)
    with pytest.raises(JobError) as caught:
        with open_guest(path) as guest:
            guest.root_tree()
    error = caught.value
    assert error.code == ErrorCode.ENCRYPTED_VOLUME, error
    assert "/dev/sda1: LUKS2" in error.message and "header is damaged" in error.message
    (volume,) = error.details["encrypted_volumes"]
    assert volume["type"] == "crypto_LUKS" and "header size 0" in volume["encryption"]["header_error"]


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi", "vhdx"])
def test_xfs_inside_container_formats(tmp_path: Path, fmt: str) -> None:
    raw = tmp_path / "xfs.img"
    _xfs(raw)
    out = tmp_path / f"xfs.{fmt}"
    subprocess.run(["qemu-img", "convert", "-O", fmt, str(raw), str(out)], check=True)
    error = _expect_unsupported(out, contains="xfs")
    assert error.details["filesystems"][0]["type"] == "xfs"


@pytest.fixture(scope="module")
def qcow2_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("unsupported")
    root = base / "root"
    root.mkdir()
    sample_root(root)
    build_image(root, base / "d.qcow2", "plain", "qcow2")
    return base / "d.qcow2"


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.01])
def test_truncated_qcow2(tmp_path: Path, qcow2_image: Path, keep: float) -> None:
    data = qcow2_image.read_bytes()
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(data[: int(len(data) * keep)])
    _expect_unsupported(broken)


def test_qcow2_with_garbage_header(tmp_path: Path, qcow2_image: Path) -> None:
    data = bytearray(qcow2_image.read_bytes())
    data[4:8] = b"\x00\x00\x00\x63"  # version 99
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(bytes(data))
    _expect_unsupported(broken)


def _expect_not_allowed(path: Path, fmt: str | None = None, policy: ImagePolicy | None = None) -> JobError:
    with pytest.raises(JobError) as caught:
        with open_guest(path, fmt, policy=policy) as guest:
            guest.root_tree()
    assert caught.value.code == ErrorCode.IMAGE_NOT_ALLOWED, caught.value
    return caught.value


def test_backing_file_refused_unless_the_chain_depth_allows_it(tmp_path: Path, qcow2_image: Path) -> None:
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(qcow2_image), str(overlay)],
                   check=True, capture_output=True)
    error = _expect_not_allowed(overlay)
    assert error.details["backing_file"] == str(qcow2_image) and "GUESTKIT_MAX_CHAIN_DEPTH=0" in error.message
    allowed = (qcow2_image.parent, tmp_path)
    with open_guest(overlay, policy=ImagePolicy(allowed, max_chain_depth=1)) as guest:
        assert guest.root_tree().read_bytes("/etc/hostname") == b"testvm\n"
        assert [m["role"] for m in guest.image.chain] == ["image", "backing file"]


def test_vmdk_descriptor_naming_host_file_refused(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    victim = tmp_path_factory.mktemp("host") / "host-secret"
    victim.write_bytes(b"\0" * MiB)
    descriptor = tmp_path / "evil.vmdk"
    descriptor.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
        f"RW 2048 FLAT \"{victim}\" 0\n")
    error = _expect_not_allowed(descriptor)
    assert str(victim) in error.message and "outside the allowed directories" in error.message


def test_format_other_than_the_one_named_is_refused(qcow2_image: Path) -> None:
    error = _expect_not_allowed(qcow2_image, fmt="vdi")
    assert error.details["found_format"] == "qcow2" and error.details["named_format"] == "vdi"


def test_size_limit(qcow2_image: Path) -> None:
    with pytest.raises(JobError) as caught:
        with open_guest(qcow2_image, max_size_bytes=MiB):
            pass
    assert caught.value.code == ErrorCode.UNSUPPORTED_IMAGE
    assert caught.value.details["max_size_bytes"] == MiB


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JobError) as caught:
        with open_guest(tmp_path / "nope.qcow2"):
            pass
    assert caught.value.code == ErrorCode.IMAGE_NOT_FOUND


def _lvm_disk(path: Path, lvs: list[tuple[str, str, list[tuple[int, int, int]]]], pe_count: int = 4) -> None:
    pv_size = MiB + pe_count * 4 * MiB
    _mbr_disk(path, size=pv_size + 2 * MiB, part_size=pv_size, ptype="8e")
    pv_id = "A" * 32
    _write_pv(path, MiB, pv_size, pv_id, _lvm_metadata("vg0", "B" * 32, pv_id, pv_size, pe_count, lvs))


def test_lvm_segment_past_physical_volume(tmp_path: Path) -> None:
    path = tmp_path / "lvm.img"
    _lvm_disk(path, [("root", "C" * 32, [(0, 2, 3)])])
    _expect_unsupported(path, contains="outside its physical volume")


def test_lvm_overlapping_volumes(tmp_path: Path) -> None:
    path = tmp_path / "lvm.img"
    _lvm_disk(path, [("a", "C" * 32, [(0, 2, 0)]), ("b", "D" * 32, [(0, 2, 1)])])
    _expect_unsupported(path, contains="overlap")


def test_lvm_segments_not_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "lvm.img"
    _lvm_disk(path, [("a", "C" * 32, [(0, 1, 0), (0, 1, 1)])])
    _expect_unsupported(path, contains="contiguous")


def test_lvm_metadata_checksum(tmp_path: Path) -> None:
    path = tmp_path / "lvm.img"
    _lvm_disk(path, [("a", "C" * 32, [(0, 1, 0)])])
    _poke(path, MiB + 4096 + 512 + 10, b"X")
    _expect_unsupported(path, contains="checksum")


def test_lvm_self_referencing_volume_is_not_read(tmp_path: Path) -> None:
    """A segment that stripes onto an LV (itself) instead of a PV: a loop, never followed."""
    path = tmp_path / "lvm.img"
    pv_size = MiB + 4 * 4 * MiB
    _mbr_disk(path, size=pv_size + 2 * MiB, part_size=pv_size, ptype="8e")
    text = _lvm_metadata("vg0", "B" * 32, "A" * 32, pv_size, 4, [("a", "C" * 32, [(0, 1, 0)])])
    text = text.replace('"pv0", 0', '"a", 0')
    _write_pv(path, MiB, pv_size, "A" * 32, text)
    error = _expect_unsupported(path, contains="no readable filesystem")
    assert error.details["filesystems"] == []
    assert "not a physical volume" in error.details["lvm"][0]["lvs"][0]["reason"]
