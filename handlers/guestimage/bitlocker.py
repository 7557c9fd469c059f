"""BitLocker volumes recognised from their headers, without a key: Windows Vista's layout, Windows 7
and later, and BitLocker To Go.

The volume header (sector 0) names up to three FVE metadata blocks, each a copy of the same
metadata: a block header (version, conversion state), a metadata header (volume GUID, encryption
method, creation time) and entries, among them one volume master key (VMK) per key protector
(password, recovery password, TPM…) and the volume's description. The format is libbde's
documentation of it ("BitLocker Drive Encryption (BDE) format", libyal/libbde), checked against
dislocker and dissect.fve; no Python binding reads it without a key, so this parser is ours.

The first copy that holds together is used; a copy followed by a CRC-32 record that does not match
is passed over for the next. Every offset and size is checked against the device and the block.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from .blockdev import BlockDevice
from .encrypted import EncryptedVolume

SIGNATURE = b"-FVE-FS-"
IDENTIFIER = uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001").bytes_le
#: Windows 10's "used disk space only" (encrypt-on-write) identifier, in the same place
EOW_IDENTIFIER = uuid.UUID("92a84d3b-dd80-4d0e-9e4e-b1e3284eaed8").bytes_le
_BLOCK_HEADER, _METADATA_HEADER = 64, 48
#: a metadata block's bytes read at most (Windows reserves 64 KiB for each)
MAX_METADATA = 1024 * 1024
MAX_ENTRIES = 4096
ENTRY_VMK, ENTRY_DESCRIPTION = 0x0002, 0x0007
VALUE_STRING, VALUE_VMK = 0x0002, 0x0008

METHODS: dict[int, tuple[str, int]] = {
    0x8000: ("AES-CBC-128 with diffuser", 128),
    0x8001: ("AES-CBC-256 with diffuser", 256),
    0x8002: ("AES-CBC-128", 128),
    0x8003: ("AES-CBC-256", 256),
    0x8004: ("AES-XTS-128", 128),
    0x8005: ("AES-XTS-256", 256),
}
#: a VMK's protection type (its high byte; below 0x100 the key is stored in the clear)
PROTECTORS = {0x0100: "TPM", 0x0200: "startup key", 0x0500: "TPM and PIN", 0x0800: "recovery password",
              0x2000: "password"}
CLEAR_KEY = "clear key (protection suspended)"


def layout(sector: bytes) -> str | None:
    """Which BitLocker volume header ``sector`` (the volume's first 512 bytes) is, if any."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return None
    if sector[160:176] in (IDENTIFIER, EOW_IDENTIFIER) and sector[3:11] == SIGNATURE:
        return "Windows 7 or later"
    if sector[424:440] == IDENTIFIER:
        return "BitLocker To Go"
    if sector[3:11] == SIGNATURE:
        return "Windows Vista"
    return None


@dataclass
class _Block:
    #: the copies this block names (Vista's volume header names only the first)
    others: tuple[int, ...]
    volume: EncryptedVolume


def read_bitlocker(dev: BlockDevice) -> EncryptedVolume:
    sector = dev.read(0, 512)
    kind = layout(sector)
    if kind is None:
        return EncryptedVolume("BitLocker", header_error="no BitLocker volume header")
    if kind == "Windows Vista":
        bytes_per_sector, sectors_per_cluster = struct.unpack_from("<HB", sector, 11)
        offsets = [struct.unpack_from("<Q", sector, 0x38)[0] * bytes_per_sector * sectors_per_cluster]
    else:
        at = 176 if kind == "Windows 7 or later" else 440
        offsets = list(struct.unpack_from("<3Q", sector, at))
    problems: list[str] = []
    tried: set[int] = set()
    fallback: _Block | None = None
    while offsets:
        offset = offsets.pop(0)
        if offset in tried:
            continue
        tried.add(offset)
        block, problem, checksum_ok = _block(dev, offset)
        if block is None:
            problems.append(problem)
            continue
        if kind == "Windows Vista":  # Vista's volume header names the first copy only
            offsets += [o for o in block.others if o not in tried]
        if checksum_ok:
            found = block.volume
            break
        problems.append(problem)
        fallback = fallback or block
    else:
        if fallback is None:
            return EncryptedVolume("BitLocker", header_error="; ".join(problems) or "no metadata block named")
        found = fallback.volume
    if problems:
        found.header_error = "; ".join(problems)
    return found


def _block(dev: BlockDevice, offset: int) -> tuple[_Block | None, str, bool]:
    """The metadata block at ``offset``, why it could not be read, and whether its checksum held."""
    if not 512 <= offset <= dev.size - _BLOCK_HEADER - _METADATA_HEADER:
        return None, f"metadata block offset {offset} is outside the volume", False
    head = dev.read(offset, _BLOCK_HEADER + _METADATA_HEADER)
    if head[:8] != SIGNATURE:
        return None, f"no metadata block at byte {offset}", False
    size_field, version, current, following = struct.unpack_from("<4H", head, 8)
    if version not in (1, 2):
        return None, f"metadata block at byte {offset} has version {version}", False
    others = struct.unpack_from("<3Q", head, 32)
    metadata_size, metadata_version, header_size, size_copy = struct.unpack_from("<4I", head, _BLOCK_HEADER)
    if (metadata_version, header_size) != (1, _METADATA_HEADER) or metadata_size != size_copy or not (
            _METADATA_HEADER <= metadata_size <= MAX_METADATA):
        return None, f"metadata block at byte {offset} has a malformed metadata header", False
    data = dev.read(offset, _BLOCK_HEADER + metadata_size)
    if len(data) < _BLOCK_HEADER + metadata_size:
        return None, f"metadata block at byte {offset} is cut short", False
    guid = head[_BLOCK_HEADER + 16:_BLOCK_HEADER + 32]
    method, = struct.unpack_from("<H", head, _BLOCK_HEADER + 36)
    cipher, key_bits = METHODS.get(method, (None if method == 0 else f"unknown (0x{method:04x})", 0))
    protectors, description, problem = _entries(data[_BLOCK_HEADER + _METADATA_HEADER:], offset)
    found = EncryptedVolume("BitLocker", version, str(uuid.UUID(bytes_le=guid)), None, cipher, key_bits or None,
                            protectors=protectors, description=description, state=_state(current, following))
    checksum_ok, checksum_problem = _checksum(dev, offset, size_field << 4 if version == 2 else size_field)
    block = _Block(others, found)
    return block, problem or checksum_problem, checksum_ok and problem == ""


def _checksum(dev: BlockDevice, offset: int, total: int) -> tuple[bool, str]:
    """The CRC-32 record after a block, where there is one (libbde does not need it; others do)."""
    if not _BLOCK_HEADER <= total <= MAX_METADATA or offset + total + 8 > dev.size:
        return True, ""
    record = dev.read(offset + total, 8)
    size, _version, crc = struct.unpack_from("<HHI", record)
    if size < 8:
        return True, ""
    if zlib.crc32(dev.read(offset, total)) != crc:
        return False, f"the checksum of the metadata block at byte {offset} does not match"
    return True, ""


def _entries(data: bytes, offset: int) -> tuple[list[str], str | None, str]:
    protectors: list[str] = []
    description: str | None = None
    at = 0
    for _ in range(MAX_ENTRIES):
        if len(data) - at < 8 or data[at:at + 8] == b"\0" * 8:
            return protectors, description, ""
        size, entry_type, value_type, _version = struct.unpack_from("<4H", data, at)
        if size < 8 or size > len(data) - at:
            return protectors, description, f"entry at byte {offset + 112 + at} of {size} bytes does not fit its block"
        value = data[at + 8:at + size]
        if entry_type == ENTRY_VMK and value_type == VALUE_VMK and len(value) >= 28:
            kind, = struct.unpack_from("<H", value, 26)
            protectors.append(CLEAR_KEY if kind < 0x100 else PROTECTORS.get(kind & 0xFF00, f"unknown (0x{kind:04x})"))
        elif entry_type == ENTRY_DESCRIPTION and value_type == VALUE_STRING and description is None:
            text = value.decode("utf-16-le", errors="replace").split("\0", 1)[0]
            description = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)[:512] or None
        at += size
    return protectors, description, f"more than {MAX_ENTRIES} entries in the metadata block at byte {offset}"


def _state(current: int, following: int) -> str:
    """The conversion state from the block header's current and next state (1 decrypted, 4 encrypted)."""
    if current == following == 4:
        return "encrypted"
    if current == following == 1:
        return "decrypted"
    direction = {4: "encryption", 1: "decryption"}.get(following)
    if current in (2, 5) and direction:
        return f"{direction} in progress"
    if current == 3 and direction:
        return f"{direction} paused"
    return f"unknown (state {current}, next {following})"
