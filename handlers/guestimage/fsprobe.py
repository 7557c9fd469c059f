"""Identify what a block device holds from its superblock magic: filesystems, swap, LUKS, LVM."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from .bitlocker import layout as bitlocker_layout
from .blockdev import BlockDevice
from .encrypted import is_luks, text_field

#: filesystem types the engine can read (through pytsk3; xfs through libfsxfs; btrfs our own)
READABLE = ("ext2", "ext3", "ext4", "vfat", "ntfs", "xfs", "btrfs")
#: encrypted volumes, recognised from their headers (``encrypted``): their contents need a key
ENCRYPTED = ("crypto_LUKS", "BitLocker")


@dataclass
class Probe:
    type: str  # ext4, vfat, ntfs, xfs, btrfs, crypto_LUKS, BitLocker, swap, LVM2_member, unknown
    uuid: str | None = None
    label: str | None = None
    size_bytes: int | None = None


def _text(raw: bytes) -> str | None:
    value = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return value or None


def _uuid(raw: bytes) -> str | None:
    return None if raw == b"\0" * 16 else str(uuid.UUID(bytes=raw))


def _ext(sb: bytes) -> Probe:
    blocks_lo, = struct.unpack_from("<I", sb, 4)
    log_block, = struct.unpack_from("<I", sb, 24)
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 0x5C)
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & 0x80 else 0
    block_size = 1024 << min(log_block, 16)
    if incompat & (0x40 | 0x80 | 0x200) or ro_compat & (0x8 | 0x10 | 0x20 | 0x40 | 0x400):
        kind = "ext4"
    elif compat & 0x4:
        kind = "ext3"
    else:
        kind = "ext2"
    return Probe(kind, _uuid(sb[104:120]), _text(sb[120:136]), ((blocks_hi << 32) | blocks_lo) * block_size)


def _fat(boot: bytes) -> Probe | None:
    if boot[510:512] != b"\x55\xaa":
        return None
    bytes_per_sector, = struct.unpack_from("<H", boot, 11)
    if bytes_per_sector not in (512, 1024, 2048, 4096):
        return None
    total16, = struct.unpack_from("<H", boot, 19)
    total32, = struct.unpack_from("<I", boot, 32)
    if boot[82:87] == b"FAT32":
        serial_at, label_at = 67, 71
    elif boot[54:59] in (b"FAT12", b"FAT16", b"FAT  "):
        serial_at, label_at = 39, 43
    else:
        return None
    serial, = struct.unpack_from("<I", boot, serial_at)
    label = _text(boot[label_at:label_at + 11])
    if label == "NO NAME":
        label = None
    return Probe("vfat", f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", label,
                 (total16 or total32) * bytes_per_sector)


def _ntfs(boot: bytes) -> Probe:
    bytes_per_sector, = struct.unpack_from("<H", boot, 11)
    sectors, = struct.unpack_from("<Q", boot, 40)
    serial, = struct.unpack_from("<Q", boot, 72)
    return Probe("ntfs", f"{serial:016X}", None, sectors * bytes_per_sector)


def _swap(dev: BlockDevice) -> Probe | None:
    for page in (4096, 8192, 16384, 65536):
        if dev.read(page - 10, 10) in (b"SWAPSPACE2", b"SWAP-SPACE"):
            header = dev.read(1024, 64)
            last_page, = struct.unpack_from("<I", header, 4)
            return Probe("swap", _uuid(header[12:28]), _text(header[28:44]), (last_page + 1) * page)
    return None


def _lvm_label(dev: BlockDevice) -> bool:
    for sector in range(4):
        raw = dev.read(sector * 512, 32)
        if raw[:8] == b"LABELONE" and raw[24:32] == b"LVM2 001":
            return True
    return False


def probe(dev: BlockDevice) -> Probe:
    """What ``dev`` holds; ``Probe("unknown")`` if nothing is recognised."""
    head = dev.read(0, 4096)
    if len(head) < 1024:
        return Probe("unknown")
    if is_luks(head):
        version, = struct.unpack_from(">H", head, 6)
        label = text_field(head[24:72], 48) if version == 2 else None
        return Probe("crypto_LUKS", text_field(head[168:208], 40), label)
    if bitlocker_layout(head[:512]) is not None:
        return Probe("BitLocker")
    if head[:4] == b"XFSB":
        block_size, blocks = struct.unpack_from(">IQ", head, 4)
        return Probe("xfs", _uuid(head[32:48]), _text(head[108:120]), block_size * blocks)
    if _lvm_label(dev):
        return Probe("LVM2_member")
    sb = dev.read(1024, 1024)
    if len(sb) >= 1024 and sb[56:58] == b"\x53\xef":
        return _ext(sb)
    btrfs = dev.read(0x10000, 0x1000)
    if btrfs[0x40:0x48] == b"_BHRfS_M":
        return Probe("btrfs", _uuid(btrfs[0x20:0x30]), _text(btrfs[0x12B:0x12B + 256]))
    if head[3:11] == b"NTFS    ":
        return _ntfs(head)
    fat = _fat(head)
    if fat is not None:
        return fat
    swap = _swap(dev)
    if swap is not None:
        return swap
    if dev.read(0x8001, 5) == b"CD001":
        return Probe("iso9660")
    if head[:4] in (b"hsqs", b"sqsh"):
        return Probe("squashfs")
    if head[1024:1028] == b"\x10\x20\xf5\xf2":
        return Probe("f2fs")
    return Probe("unknown")
