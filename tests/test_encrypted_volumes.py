"""Encrypted volumes are recognised from their headers, without a key: LUKS1 and LUKS2 volumes made by
``cryptsetup luksFormat`` read back as ``cryptsetup luksDump`` shows them (version, UUID, label, cipher,
key size, key slots in use, LUKS2 tokens), a LUKS2 header whose checksum fails is read from its second
copy; BitLocker volumes (built here from the published format: Windows cannot be run here) of each
layout, state and protector read back as built; and through real jobs: a guest whose root is encrypted
fails ``ENCRYPTED_VOLUME`` naming the volume, one with an encrypted /home is read and lists it. Mutated
headers never raise."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.intake import api
from handlers.guestimage.bitlocker import read_bitlocker
from handlers.guestimage.blockdev import RawFileDevice
from handlers.guestimage.encrypted import EncryptedVolume, read_luks
from handlers.guestimage.fsprobe import probe
from tests.bitlockerbuild import OFFSETS, bitlocker_volume
from tests.conftest import WorkerProcess, make_job, routed, serve_pool, session_scratch
from tests.cryptbuild import disk_with, luks_volume
from tests.imagebuild import sample_root

POOL = f"encrypted-{uuid.uuid4().hex[:6]}"
VOLUMES: dict[str, dict[str, Any]] = {
    "luks1": {"version": 1, "extra_keys": 1},
    "luks2": {"version": 2, "label": "cryptroot", "extra_keys": 2, "token": "clevis"},
    "luks2-cbc-256": {"version": 2, "cipher": "aes-cbc-essiv:sha256", "key_bits": 256},
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from serve_pool(tmp_path_factory, POOL)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("encrypted")


def _facts(found: EncryptedVolume | dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    found = found.as_dict() if isinstance(found, EncryptedVolume) else found
    return {key: found[key] for key in truth}


def _poke(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_a_luks_header_reads_as_cryptsetup_dumps_it(base: Path, name: str) -> None:
    volume = base / f"{name}.luks"
    truth = luks_volume(volume, **VOLUMES[name])
    found = read_luks(RawFileDevice(str(volume)))
    assert _facts(found, truth) == truth
    assert found.header_error is None


def test_a_luks2_header_whose_checksum_fails_is_read_from_its_second_copy(base: Path) -> None:
    volume = base / "damaged-primary.luks"
    truth = luks_volume(volume, 2, label="home", extra_keys=1)
    _poke(volume, 4096 + 2, b"#")  # inside the primary copy's JSON: its checksum no longer matches
    found = read_luks(RawFileDevice(str(volume)))
    assert _facts(found, truth) == truth
    assert found.header_error is not None
    assert "sha256 checksum of the header at byte 0 does not match" in found.header_error
    assert "second copy at byte 16384" in found.header_error


def test_a_luks2_volume_whose_both_copies_are_damaged_is_still_named(base: Path) -> None:
    volume = base / "damaged-both.luks"
    truth = luks_volume(volume, 2, label="vault")
    _poke(volume, 4096 + 2, b"#")
    _poke(volume, 16384 + 4096 + 2, b"#")
    found = read_luks(RawFileDevice(str(volume)))
    assert (found.scheme, found.uuid, found.label) == ("LUKS2", truth["uuid"], "vault")
    assert found.cipher is None and found.keyslots == []
    assert found.header_error == "the sha256 checksum of the header at byte 0 does not match"
    assert "damaged" in found.summary() and truth["uuid"] in found.summary()


# --- BitLocker ------------------------------------------------------------------------------------
BITLOCKER: dict[str, dict[str, Any]] = {
    "windows-7-and-later": {},
    "to-go": {"layout": "BitLocker To Go", "protectors": ("password", "recovery password"),
              "description": "USB-STICK E: 1/3/2026"},
    "vista": {"layout": "Windows Vista", "method": "AES-CBC-128 with diffuser", "protectors": ("TPM",)},
    "used-space-only": {"used_space_only": True, "method": "AES-XTS-256", "protectors": ("TPM and PIN",)},
    "suspended-decrypting": {"state": "decryption in progress", "method": "AES-CBC-256",
                             "protectors": ("clear key (protection suspended)", "startup key")},
    "paused": {"state": "encryption paused", "description": None},
}


@pytest.mark.parametrize("name", sorted(BITLOCKER))
def test_a_bitlocker_header_reads_as_built(base: Path, name: str) -> None:
    volume = base / f"{name}.bitlocker"
    truth = bitlocker_volume(volume, **BITLOCKER[name])
    device = RawFileDevice(str(volume))
    assert probe(device).type == "BitLocker"  # never NTFS, nor FAT for To Go's "MSWIN4.1"
    found = read_bitlocker(device)
    assert _facts(found, truth) == truth
    assert found.header_error is None


def test_a_bitlocker_metadata_copy_whose_checksum_fails_is_passed_over(base: Path) -> None:
    volume = base / "damaged-first-copy.bitlocker"
    truth = bitlocker_volume(volume, description="WIN-FS01 C: 12/7/2026")
    _poke(volume, OFFSETS[0] + 200, b"\xff")  # inside the first copy's entries: its CRC-32 fails
    found = read_bitlocker(RawFileDevice(str(volume)))
    assert _facts(found, truth) == truth
    assert found.header_error == f"the checksum of the metadata block at byte {OFFSETS[0]} does not match"


def test_a_bitlocker_volume_whose_metadata_is_gone_is_still_named(base: Path) -> None:
    volume = base / "no-metadata.bitlocker"
    bitlocker_volume(volume)
    for offset in OFFSETS:
        _poke(volume, offset, b"\0" * 8)
    found = read_bitlocker(RawFileDevice(str(volume)))
    assert found.scheme == "BitLocker" and found.uuid is None
    assert found.header_error == "; ".join(f"no metadata block at byte {offset}" for offset in OFFSETS)


# --- through real jobs ----------------------------------------------------------------------------
def _inspect(image: Path) -> dict[str, Any]:
    return api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(timeout=120)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_an_encrypted_root_fails_encrypted_volume_naming_it(worker: WorkerProcess, base: Path, fmt: str) -> None:
    boot = base / f"boot-{fmt}"
    (boot / "grub").mkdir(parents=True)
    (boot / "vmlinuz-6.1.0-13-amd64").write_bytes(b"kernel")
    (boot / "grub" / "grub.cfg").write_text("linux /vmlinuz-6.1.0-13-amd64 root=/dev/mapper/root\n")
    volume = base / f"root-{fmt}.luks"
    truth = luks_volume(volume, 2, label="cryptroot", size=24 * 1024 * 1024)
    image = base / f"encrypted-root.{fmt}"
    disk_with(volume, image, boot, fmt)
    result = _inspect(image)
    assert result["status"] == "failed", result
    error = result["error"]
    assert error["code"] == "ENCRYPTED_VOLUME", error
    assert "/dev/sda2" in error["message"] and "LUKS2" in error["message"] and truth["uuid"] in error["message"]
    (named,) = error["details"]["encrypted_volumes"]
    assert (named["device"], named["type"], named["uuid"], named["label"]) == (
        "/dev/sda2", "crypto_LUKS", truth["uuid"], "cryptroot")
    assert _facts(named["encryption"], truth) == truth
    assert [fs["type"] for fs in error["details"]["filesystems"]] == ["ext4", "crypto_LUKS"]


def test_an_image_of_nothing_but_a_bitlocker_volume_fails_encrypted_volume(worker: WorkerProcess,
                                                                         base: Path) -> None:
    volume = base / "c-drive.bitlocker"
    truth = bitlocker_volume(volume, size=16 * 1024 * 1024)
    image = base / "bitlocker-only.qcow2"
    disk_with(volume, image, None, "qcow2")  # the first partition is left blank
    result = _inspect(image)
    error = result["error"]
    assert result["status"] == "failed" and error["code"] == "ENCRYPTED_VOLUME", result
    assert error["message"].startswith("no filesystem outside the encrypted volume of this image")
    assert "/dev/sda2: BitLocker (AES-XTS-128, 128-bit key, UUID " + truth["uuid"] in error["message"]
    (named,) = error["details"]["encrypted_volumes"]
    assert (named["type"], named["uuid"]) == ("BitLocker", truth["uuid"])
    assert _facts(named["encryption"], truth) == truth


def test_a_guest_with_an_encrypted_home_is_read_and_lists_the_volume(worker: WorkerProcess, base: Path) -> None:
    root = base / "home-root"
    root.mkdir()
    sample_root(root)
    volume = base / "home.luks"
    truth = luks_volume(volume, 1, extra_keys=1)
    (root / "etc" / "crypttab").write_text(f"# <name> <device> <key> <options>\nhome UUID={truth['uuid']} none luks\n")
    image = base / "encrypted-home.qcow2"
    disk_with(volume, image, root, "qcow2", fstab=["LABEL=boot\t/\text4\tdefaults\t0\t1",
                                                    "/dev/mapper/home\t/home\text4\tdefaults\t0\t2"])
    result = _inspect(image)
    assert result["status"] == "completed", result
    storage = result["data"]["storage"]
    assert storage["root_device"] == "/dev/sda1"
    (luks,) = [fs for fs in storage["filesystems"] if fs["type"] == "crypto_LUKS"]
    assert (luks["device"], luks["uuid"]) == ("/dev/sda2", truth["uuid"])
    assert _facts(luks["encryption"], truth) == truth
    (unplaced,) = storage["unplaced_mounts"]
    assert unplaced["mountpoint"] == "/home" and unplaced["spec"] == "/dev/mapper/home"
    reason = unplaced["reason"]
    assert reason.startswith("encrypted: LUKS1 (aes-xts-plain64, 512-bit key") and truth["uuid"] in reason


# --- hostile headers ----------------------------------------------------------------------------
class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def luks2_header(base: Path) -> bytes:
    volume = base / "fuzz.luks"
    luks_volume(volume, 2, label="fuzz", extra_keys=1, token="clevis")
    return volume.read_bytes()[:64 * 1024]


def _resealed(header: bytearray) -> bytes:
    """The header with its checksum made right again, so that the mutated JSON itself is parsed."""
    import hashlib

    size = int.from_bytes(header[8:16], "big")
    if size not in (16384, 32768) or len(header) < size:
        return bytes(header)
    digest = hashlib.sha256(bytes(header[:448]) + b"\0" * 64 + bytes(header[512:size])).digest()
    header[448:448 + 32] = digest
    return bytes(header)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(st.integers(0, 20000), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6),
       st.booleans(), st.sampled_from([1, 2]))
def test_mutated_luks_headers_never_raise(luks2_header: bytes, edits: list[tuple[int, bytes]], reseal: bool,
                                          version: int) -> None:
    header = bytearray(luks2_header)
    header[6:8] = version.to_bytes(2, "big")
    for offset, data in edits:
        at = 6 + offset % (len(header) - 6)  # the magic stays: it is LUKS
        chunk = data[:len(header) - at]
        header[at:at + len(chunk)] = chunk
    found = read_luks(_Bytes(_resealed(header) if reseal else bytes(header)))
    assert found.scheme.startswith("LUKS")
    assert found.summary()


@pytest.fixture(scope="module")
def bitlocker_header(base: Path) -> bytes:
    volume = base / "fuzz.bitlocker"
    bitlocker_volume(volume, size=OFFSETS[2] + 65536)
    return volume.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(st.sampled_from([0, *OFFSETS]), st.integers(0, 1200), st.binary(min_size=1, max_size=8)),
                min_size=1, max_size=6))
def test_mutated_bitlocker_headers_never_raise(bitlocker_header: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(bitlocker_header)
    for base_offset, offset, chunk in edits:
        at = base_offset + (offset % 512 if base_offset == 0 else offset)
        data[at:at + len(chunk)] = chunk
    found = read_bitlocker(_Bytes(bytes(data)))
    assert found.scheme == "BitLocker"
    assert found.summary()
