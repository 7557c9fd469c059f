"""MBR (with extended/logical partitions) and GPT partition tables."""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from app.plugin.errors import JobError

from .blockdev import BlockDevice
from .errors import unsupported

SECTOR = 512
EXTENDED_TYPES = {0x05, 0x0F, 0x85}
MAX_LOGICAL = 128
MAX_GPT_ENTRIES_BYTES = 4 * 1024 * 1024


@dataclass
class PartitionInfo:
    device: str
    number: int
    start_bytes: int
    size_bytes: int
    table: str  # "mbr" | "gpt"
    type_id: str  # "0x83" or a GPT type GUID
    name: str | None = None
    uuid: str | None = None  # GPT unique partition GUID
    bootable: bool = False


def _check_bounds(start: int, size: int, disk_size: int, number: int, table: str) -> None:
    if size <= 0 or start < SECTOR or start + size > disk_size:
        raise unsupported(
            f"{table} partition {number} lies outside the disk",
            table=table, partition=number, start_bytes=start, size_bytes=size, disk_size=disk_size,
        )


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int, int, int]]:
    """(slot, type, lba_start, sectors, status) of the four primary slots, empty ones skipped."""
    entries = []
    for slot in range(4):
        raw = sector[446 + slot * 16: 446 + (slot + 1) * 16]
        status, ptype, lba, count = raw[0], raw[4], *struct.unpack("<II", raw[8:16])
        if ptype == 0 or count == 0:
            continue
        entries.append((slot, ptype, lba, count, status))
    return entries


def has_mbr_signature(sector0: bytes) -> bool:
    return len(sector0) >= 512 and sector0[510:512] == b"\x55\xaa"


def parse_mbr(dev: BlockDevice, disk: str = "/dev/sda") -> list[PartitionInfo]:
    sector0 = dev.read(0, SECTOR)
    parts: list[PartitionInfo] = []
    for slot, ptype, lba, count, status in _mbr_entries(sector0):
        number = slot + 1
        start, size = lba * SECTOR, count * SECTOR
        _check_bounds(start, size, dev.size, number, "mbr")
        if ptype in EXTENDED_TYPES:
            parts.extend(_parse_logical(dev, lba, count, disk))
            continue
        parts.append(PartitionInfo(f"{disk}{number}", number, start, size, "mbr", f"0x{ptype:02x}",
                                   bootable=status == 0x80))
    return sorted(parts, key=lambda p: p.number)


def _parse_logical(dev: BlockDevice, ext_lba: int, ext_count: int, disk: str) -> list[PartitionInfo]:
    parts: list[PartitionInfo] = []
    seen: set[int] = set()
    ebr = ext_lba
    number = 5
    while True:
        if ebr in seen or len(seen) >= MAX_LOGICAL:
            raise unsupported("extended partition chain loops", ebr_lba=ebr)
        seen.add(ebr)
        if not ext_lba <= ebr < ext_lba + ext_count:
            raise unsupported("extended partition chain leaves the extended partition", ebr_lba=ebr)
        sector = dev.read(ebr * SECTOR, SECTOR)
        if not has_mbr_signature(sector):
            raise unsupported("extended boot record without signature", ebr_lba=ebr)
        entries = _mbr_entries(sector)
        next_ebr = None
        for _slot, ptype, lba, count, status in entries:
            if ptype in EXTENDED_TYPES:
                next_ebr = ext_lba + lba
                continue
            start, size = (ebr + lba) * SECTOR, count * SECTOR
            _check_bounds(start, size, dev.size, number, "mbr")
            parts.append(PartitionInfo(f"{disk}{number}", number, start, size, "mbr",
                                       f"0x{ptype:02x}", bootable=status == 0x80))
            number += 1
        if next_ebr is None:
            return parts
        ebr = next_ebr


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def has_gpt(dev: BlockDevice) -> bool:
    return dev.read(SECTOR, 8) == b"EFI PART"


def _gpt_table(dev: BlockDevice, header_lba: int) -> tuple[bytes, int, int]:
    """The validated (entry array, entry count, entry size) of the GPT header at ``header_lba``."""
    header = dev.read(header_lba * SECTOR, SECTOR)
    if header[:8] != b"EFI PART":
        raise unsupported("GPT header signature missing", lba=header_lba)
    header_size, header_crc = struct.unpack("<II", header[12:20])
    if not 92 <= header_size <= SECTOR:
        raise unsupported("GPT header has an invalid size", header_size=header_size, lba=header_lba)
    check = bytearray(header[:header_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(bytes(check)) != header_crc:
        raise unsupported("GPT header checksum mismatch", stored=header_crc, computed=zlib.crc32(bytes(check)),
                          lba=header_lba)
    entries_lba, count, entry_size, entries_crc = struct.unpack("<QIII", header[72:92])
    if entry_size < 128 or count * entry_size > MAX_GPT_ENTRIES_BYTES:
        raise unsupported("GPT partition entry array is invalid", entries=count, entry_size=entry_size)
    table = dev.read(entries_lba * SECTOR, count * entry_size)
    if len(table) != count * entry_size:
        raise unsupported("GPT partition entry array lies outside the disk", entries_lba=entries_lba)
    if zlib.crc32(table) != entries_crc:
        raise unsupported("GPT partition entry array checksum mismatch", stored=entries_crc,
                          computed=zlib.crc32(table), lba=header_lba)
    return table, count, entry_size


def parse_gpt(dev: BlockDevice, disk: str = "/dev/sda") -> list[PartitionInfo]:
    """GPT partitions; the backup header at the disk's last sector is used if the primary is damaged
    (as the Linux kernel does). Both damaged: UNSUPPORTED_IMAGE."""
    try:
        table, count, entry_size = _gpt_table(dev, 1)
    except JobError as primary:
        try:
            table, count, entry_size = _gpt_table(dev, dev.size // SECTOR - 1)
        except JobError:
            raise primary from None
    parts: list[PartitionInfo] = []
    for index in range(count):
        raw = table[index * entry_size:(index + 1) * entry_size]
        if raw[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack("<QQ", raw[32:48])
        number = index + 1
        if last < first:
            raise unsupported("GPT partition ends before it starts", partition=number)
        start, size = first * SECTOR, (last - first + 1) * SECTOR
        _check_bounds(start, size, dev.size, number, "gpt")
        name = raw[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0] or None
        parts.append(PartitionInfo(f"{disk}{number}", number, start, size, "gpt", _guid(raw[:16]),
                                   name=name, uuid=_guid(raw[16:32])))
    return parts


def check_overlaps(parts: list[PartitionInfo]) -> None:
    ordered = sorted(parts, key=lambda p: p.start_bytes)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.start_bytes + before.size_bytes > after.start_bytes:
            raise unsupported("partitions overlap", first=before.device, second=after.device)
