"""fstab parsing, checksums, the LVM text parser and CRC, and the NBD client on its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.guestimage import file_sha256, parse_fstab, verify_checksum
from handlers.guestimage.lvm import lvm_crc
from handlers.guestimage.lvmmeta import parse_lvm_text
from handlers.guestimage.nbd import NbdDevice
from tests.imagebuild import lvm_calc_crc

FSTAB = """# comment
UUID=0a1b-2c3d /boot/efi vfat umask=0077 0 1
LABEL=root\t/\text4\terrors=remount-ro 0 1
/dev/mapper/vg0-home /home ext4 defaults
/dev/sda3 none swap sw 0 0
/srv/with\\040space /mnt/my\\040dir none bind 0 0
broken-line-with-two fields
PARTUUID="abc" /data xfs defaults 0 2
"""


def test_parse_fstab() -> None:
    entries = parse_fstab(FSTAB)
    assert [e.mountpoint for e in entries] == ["/boot/efi", "/", "/home", "none", "/mnt/my dir", "/data"]
    efi, root, home, swap, bind, data = entries
    assert (efi.spec_kind, efi.spec_value, efi.fstype, efi.options, efi.dump, efi.passno, efi.line) == (
        "uuid", "0a1b-2c3d", "vfat", ("umask=0077",), 0, 1, 2)
    assert (root.spec_kind, root.spec_value, root.options) == ("label", "root", ("errors=remount-ro",))
    assert (home.spec_kind, home.spec_value, home.dump, home.passno) == ("device", "/dev/mapper/vg0-home", 0, 0)
    assert swap.fstype == "swap"
    assert bind.spec == "/srv/with space"
    assert (data.spec_kind, data.spec_value) == ("partuuid", "abc")


def test_checksum(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = b"x" * (9 * 1024 * 1024 + 5)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    events: list[int] = []
    verify_checksum(path, f"sha256:{digest}", progress=lambda p, _m: events.append(p))
    assert events[-1] == 100 and events == sorted(events)
    assert file_sha256(path) == digest
    with pytest.raises(JobError) as caught:
        verify_checksum(path, "sha256:" + "0" * 64)
    assert caught.value.code == ErrorCode.IMAGE_CHECKSUM_MISMATCH
    assert caught.value.details["actual"] == f"sha256:{digest}"
    with pytest.raises(JobError) as missing:
        verify_checksum(tmp_path / "nope", "sha256:" + "0" * 64)
    assert missing.value.code == ErrorCode.IMAGE_NOT_FOUND


def test_lvm_crc_matches_lvm2_table_implementation() -> None:
    for data in (b"", b"a", bytes(range(256)) * 3, b"LVM2 metadata text"):
        assert lvm_crc(data) == lvm_calc_crc(data)


def test_lvm_text_parser() -> None:
    text = 'vg0 {\nid = "abc"\nseqno = 7 # c\nstatus = ["READ", "WRITE"]\npv { pv0 { pe_start = 2048 } }\n}\n' \
           'contents = "Text Format Volume Group"\n\0'
    parsed = parse_lvm_text(text)
    assert parsed["vg0"]["seqno"] == 7
    assert parsed["vg0"]["status"] == ["READ", "WRITE"]
    assert parsed["vg0"]["pv"]["pv0"]["pe_start"] == 2048
    assert parsed["contents"] == "Text Format Volume Group"
    with pytest.raises(JobError):
        parse_lvm_text("a { " * 100)
    with pytest.raises(JobError):
        parse_lvm_text("vg0 { id = ")  # ends inside a section


def test_nbd_device_reads_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.raw"
    data = bytes(range(256)) * 40000
    path.write_bytes(data)
    device = NbdDevice(str(path), "raw")
    try:
        assert device.size == len(data)
        assert device.read(0, 10) == data[:10]
        assert device.read(5_000_001, 9 * 1024 * 1024) == data[5_000_001:]
        assert device.read(len(data) + 5, 10) == b""
    finally:
        device.close()
    assert not Path(device._dir).exists()
