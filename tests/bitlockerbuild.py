"""BitLocker volume headers for the tests, built from the published format (libbde's "BitLocker Drive
Encryption (BDE) format", checked against dislocker and dissect.fve): BitLocker cannot be made on Linux.

A volume is a volume header (Windows 7 and later, To Go, or Vista's layout) naming three FVE metadata
blocks, each followed by its CRC-32 record; the keys in it are random bytes (nothing is encrypted: the
engine reads headers only). ``bitlocker_volume`` returns the facts the engine must report."""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

from handlers.guestimage.bitlocker import EOW_IDENTIFIER, IDENTIFIER, SIGNATURE

SECTOR, CLUSTER = 512, 4096
PROTECTION = {"clear key (protection suspended)": 0x0000, "TPM": 0x0100, "startup key": 0x0200,
              "TPM and PIN": 0x0500, "recovery password": 0x0800, "password": 0x2000}
METHOD = {"AES-CBC-128 with diffuser": 0x8000, "AES-CBC-256 with diffuser": 0x8001, "AES-CBC-128": 0x8002,
          "AES-CBC-256": 0x8003, "AES-XTS-128": 0x8004, "AES-XTS-256": 0x8005}
STATES = {"encrypted": (4, 4), "decrypted": (1, 1), "decryption in progress": (5, 1),
          "encryption in progress": (2, 4), "encryption paused": (3, 4)}
FILETIME_2026 = 134_096_000_000_000_000
#: where the three copies of the metadata go, in bytes from the volume's start
OFFSETS = (0x200000, 0x300000, 0x400000)


def _entry(entry_type: int, value_type: int, value: bytes) -> bytes:
    return struct.pack("<4H", 8 + len(value), entry_type, value_type, 1) + value


def _vmk(protection: int) -> bytes:
    stretch = _entry(0, 0x0003, struct.pack("<HH", 0x1000, 0) + os.urandom(16))
    sealed = _entry(0, 0x0005, struct.pack("<QI", FILETIME_2026, 1) + os.urandom(16 + 44))
    value = uuid.uuid4().bytes_le + struct.pack("<QHH", FILETIME_2026, 0, protection) + stretch + sealed
    return _entry(0x0002, 0x0008, value)


def metadata_block(offsets: tuple[int, int, int], volume_guid: uuid.UUID, method: int, protectors: list[str],
                   description: str | None, state: str, volume_size: int, version: int = 2) -> bytes:
    """One FVE metadata block with its CRC-32 record."""
    entries = b"".join(_vmk(PROTECTION[p]) for p in protectors)
    entries += _entry(0x0003, 0x0005, struct.pack("<QI", FILETIME_2026, 2) + os.urandom(16 + 76))  # the FVEK
    if description is not None:
        entries += _entry(0x0007, 0x0002, (description + "\0").encode("utf-16-le"))
    entries += _entry(0x000F, 0x000F, struct.pack("<QQ", offsets[0] + 65536, 8192))
    metadata_size = 48 + len(entries)
    metadata = struct.pack("<4I", metadata_size, 1, 48, metadata_size) + volume_guid.bytes_le + struct.pack(
        "<IHHQ", 4, method, method, FILETIME_2026) + entries
    total = -(-(64 + metadata_size) // 16) * 16
    current, following = STATES[state]
    size_field = total >> 4 if version == 2 else total
    head = SIGNATURE + struct.pack("<4H", size_field, version, current, following)
    head += struct.pack("<QII3QQ", volume_size, 0, 16, *offsets, offsets[0] + 65536)
    block = (head + metadata).ljust(total, b"\0")
    return block + struct.pack("<HHI", 8, 1, zlib.crc32(block))


def bitlocker_volume(path: Path, *, layout: str = "Windows 7 or later", size: int = 8 * 1024 * 1024,
                     method: str = "AES-XTS-128", protectors: tuple[str, ...] = ("TPM", "recovery password"),
                     description: str | None = "WIN-FS01 C: 12/7/2026", state: str = "encrypted",
                     used_space_only: bool = False) -> dict[str, Any]:
    """Write a BitLocker volume of ``size`` bytes at ``path``; return what the engine must report of it."""
    volume_guid, offsets = uuid.uuid4(), OFFSETS
    sector = bytearray(SECTOR)
    struct.pack_into("<HB", sector, 11, SECTOR, CLUSTER // SECTOR)
    sector[21], sector[510:512] = 0xF8, b"\x55\xaa"
    struct.pack_into("<HH", sector, 24, 0x3F, 0xFF)
    if layout == "Windows Vista":
        sector[0:3], sector[3:11] = b"\xeb\x52\x90", SIGNATURE
        struct.pack_into("<QQQ", sector, 40, size // SECTOR, 0, offsets[0] // CLUSTER)
    else:
        sector[0:3] = b"\xeb\x58\x90"
        sector[71:82], sector[82:90] = b"NO NAME    ", b"FAT32   "
        if layout == "BitLocker To Go":
            sector[3:11] = b"MSWIN4.1"
            sector[424:440] = IDENTIFIER
            struct.pack_into("<3Q", sector, 440, *offsets)
        else:
            sector[3:11] = SIGNATURE
            sector[160:176] = EOW_IDENTIFIER if used_space_only else IDENTIFIER
            struct.pack_into("<3Q", sector, 176, *offsets)
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.write(sector)
        for offset in offsets:
            handle.seek(offset)
            handle.write(metadata_block(offsets, volume_guid, METHOD[method], list(protectors), description, state,
                                        size, version=1 if layout == "Windows Vista" else 2))
        handle.seek(0x500000)
        handle.write(os.urandom(64 * 1024))  # "encrypted" data
    return {"scheme": "BitLocker", "version": 1 if layout == "Windows Vista" else 2, "uuid": str(volume_guid),
            "cipher": method, "key_bits": int(method.split("-")[2].split()[0]), "protectors": list(protectors),
            "description": description, "state": state}
