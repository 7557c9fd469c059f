"""Encrypted volumes recognised from their headers, without a key: LUKS1, LUKS2 and BitLocker.

Only the headers are read (a few KiB; LUKS2's JSON area at most 4 MiB): what protects the volume
and how, never its contents. Every field comes from an image an attacker may have written: lengths
and offsets are checked, text is cut to its field and made printable, and a header that does not
hold together is reported as such (``header_error``), never raised.

Formats: LUKS1 (``LUKS On-Disk Format Specification`` 1.2.3), LUKS2 (``LUKS2 On-Disk Format
Specification`` 1.1.x: binary header, JSON metadata, SHA checksum over both, a second copy after the
first); BitLocker (``bitlocker.py`` here, from libbde's documentation of the format).
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .blockdev import BlockDevice

LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS2_SECONDARY_MAGIC = b"SKUL\xba\xbe"
#: the sizes a LUKS2 header (binary part and JSON area) may have; the second copy starts at one of them
LUKS2_HEADER_SIZES = tuple(16384 << n for n in range(9))  # 16 KiB .. 4 MiB
_LUKS1_SLOT_ACTIVE = 0x00AC71F3
_LUKS1_SLOTS = 8
_LUKS1_SLOT_AT = 208
_LUKS1_SLOT_SIZE = 48
_CSUM_AT, _CSUM_SIZE = 448, 64
_MAX_LISTED = 64  # keyslots, tokens, protectors listed at most


@dataclass
class EncryptedVolume:
    """What an encrypted volume's header says (the ``encryption`` of its ``filesystems`` entry)."""

    scheme: str  # LUKS1, LUKS2, BitLocker
    version: int | None = None
    uuid: str | None = None
    label: str | None = None
    #: the data's cipher as its scheme names it (``aes-xts-plain64``; BitLocker: ``AES-XTS-128``)
    cipher: str | None = None
    key_bits: int | None = None
    #: LUKS: the numbers of the key slots in use
    keyslots: list[int] = field(default_factory=list)
    #: LUKS2 tokens (``systemd-tpm2``, ``clevis``…); BitLocker key protectors (``password``, ``TPM``…)
    protectors: list[str] = field(default_factory=list)
    #: BitLocker: the volume's description ("DESKTOP-1 C: 12/7/2026") and its conversion state
    description: str | None = None
    state: str | None = None
    #: where the encrypted data starts, in bytes from the volume's start (LUKS)
    data_offset: int | None = None
    #: why the header could not be read whole (damaged, checksum mismatch): what is above is what could
    header_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """``LUKS2 (aes-xts-plain64, 512-bit key, UUID …)`` for messages."""
        parts = [p for p in (self.cipher, f"{self.key_bits}-bit key" if self.key_bits else None,
                             f"UUID {self.uuid}" if self.uuid else None,
                             f"label {self.label!r}" if self.label else None) if p]
        text = f"{self.scheme} ({', '.join(parts)})" if parts else self.scheme
        return f"{text}; its header is damaged: {self.header_error}" if self.header_error else text


def text_field(raw: bytes, limit: int = 256) -> str | None:
    """A NUL-terminated text field as printable text, or None if empty."""
    value = raw[:limit].split(b"\0", 1)[0].decode("utf-8", errors="replace")
    value = "".join(ch if ch.isprintable() else "\ufffd" for ch in value).strip()
    return value or None


def _uuid_text(raw: bytes) -> str | None:
    value = text_field(raw, 40)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value  # as written: the report shows what the header holds


def is_luks(head: bytes) -> bool:
    return head[:6] == LUKS_MAGIC


def read_luks(dev: BlockDevice) -> EncryptedVolume:
    """The facts of the LUKS header at the start of ``dev`` (whose first bytes are LUKS's magic)."""
    head = dev.read(0, 4096)
    version, = struct.unpack_from(">H", head, 6)
    if version == 1:
        return _luks1(head)
    if version == 2:
        return _luks2(dev, head)
    return EncryptedVolume("LUKS", version, header_error=f"unknown LUKS version {version}")


def _luks1(head: bytes) -> EncryptedVolume:
    if len(head) < _LUKS1_SLOT_AT + _LUKS1_SLOTS * _LUKS1_SLOT_SIZE:
        return EncryptedVolume("LUKS1", 1, header_error="the header is cut short")
    cipher, mode = text_field(head[8:40]), text_field(head[40:72])
    payload_sectors, key_bytes = struct.unpack_from(">II", head, 104)
    slots = [n for n in range(_LUKS1_SLOTS)
             if struct.unpack_from(">I", head, _LUKS1_SLOT_AT + n * _LUKS1_SLOT_SIZE)[0] == _LUKS1_SLOT_ACTIVE]
    problems = []
    if not cipher or not mode:
        problems.append("no cipher named")
    if not 0 < key_bytes <= 1024:
        problems.append(f"key size of {key_bytes} bytes")
    return EncryptedVolume("LUKS1", 1, _uuid_text(head[168:208]), None,
                           f"{cipher}-{mode}" if cipher and mode else cipher or mode,
                           key_bytes * 8 if 0 < key_bytes <= 1024 else None, slots,
                           data_offset=payload_sectors * 512, header_error="; ".join(problems) or None)


class _Luks2Keyslot(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = ""
    key_size: int = 0


class _Luks2Segment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = ""
    offset: int = 0
    encryption: str = ""


class _Luks2Token(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = ""


class _Luks2Metadata(BaseModel):
    """The parts of a LUKS2 header's JSON this reader reports (numbers are JSON strings there)."""

    model_config = ConfigDict(extra="ignore")
    keyslots: dict[str, _Luks2Keyslot] = {}
    segments: dict[str, _Luks2Segment] = {}
    tokens: dict[str, _Luks2Token] = {}


@dataclass
class _Luks2Copy:
    offset: int
    size: int
    problem: str | None
    binary: bytes = b""
    metadata: _Luks2Metadata | None = None


def _luks2_copy(dev: BlockDevice, offset: int, magic: bytes) -> _Luks2Copy:
    binary = dev.read(offset, 4096)
    if len(binary) < 4096 or binary[:6] != magic:
        return _Luks2Copy(offset, 0, f"no LUKS2 header at byte {offset}")
    size, = struct.unpack_from(">Q", binary, 8)
    if size not in LUKS2_HEADER_SIZES:
        return _Luks2Copy(offset, size, f"header size {size} at byte {offset} is not one LUKS2 allows", binary)
    algorithm = text_field(binary[72:104]) or ""
    whole = dev.read(offset, size)
    if len(whole) < size:
        return _Luks2Copy(offset, size, f"the header at byte {offset} is cut short", binary)
    try:
        digest = hashlib.new(algorithm.lower())
    except ValueError:
        return _Luks2Copy(offset, size, f"unknown checksum algorithm {algorithm!r}", binary)
    digest.update(whole[:_CSUM_AT] + b"\0" * _CSUM_SIZE + whole[_CSUM_AT + _CSUM_SIZE:])
    stored = whole[_CSUM_AT:_CSUM_AT + digest.digest_size]
    if digest.digest() != stored:
        return _Luks2Copy(offset, size, f"the {algorithm} checksum of the header at byte {offset} does not match",
                          binary)
    text = whole[4096:].split(b"\0", 1)[0]
    try:
        metadata = _Luks2Metadata.model_validate(json.loads(text))
    except (ValueError, RecursionError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else type(exc).__name__
        return _Luks2Copy(offset, size, f"the JSON metadata at byte {offset + 4096} does not parse: {reason}", binary)
    return _Luks2Copy(offset, size, None, binary, metadata)


def _luks2(dev: BlockDevice, head: bytes) -> EncryptedVolume:
    primary = _luks2_copy(dev, 0, LUKS_MAGIC)
    chosen = primary
    if primary.problem is not None:
        # the second copy starts right after the first, at one of the sizes the format allows
        starts = [primary.size] if primary.size in LUKS2_HEADER_SIZES else list(LUKS2_HEADER_SIZES)
        for start in starts:
            secondary = _luks2_copy(dev, start, LUKS2_SECONDARY_MAGIC)
            if secondary.problem is None:
                chosen = secondary
                break
    binary = chosen.binary or head
    found = EncryptedVolume("LUKS2", 2, _uuid_text(binary[168:208]), text_field(binary[24:72], 48))
    if chosen.metadata is None:
        found.header_error = primary.problem
        return found
    if chosen is not primary:
        found.header_error = f"{primary.problem}: read from the second copy at byte {chosen.offset}"
    meta = chosen.metadata
    found.keyslots = sorted(int(k) for k in meta.keyslots if k.isdigit())[:_MAX_LISTED]
    found.protectors = [t.type for _, t in sorted(meta.tokens.items())][:_MAX_LISTED]
    crypt = [s for _, s in sorted(meta.segments.items(), key=lambda kv: kv[0]) if s.type == "crypt"]
    if crypt:
        found.cipher = text_field(crypt[0].encryption.encode(), 64)
        found.data_offset = crypt[0].offset
    sizes = [s.key_size for s in meta.keyslots.values() if 0 < s.key_size <= 1024]
    found.key_bits = sizes[0] * 8 if sizes else None
    return found

