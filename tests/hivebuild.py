"""Registry hives written by the tests in the regf format Windows uses (version 1.3), for the Windows
test guests: keys with non-ASCII names, values of every common type.

No tool in Debian makes a new hive (hivex edits existing ones), so this writes one whole: the base
block with its checksum, hive bins of 4 KiB, and in them key nodes (nk), subkey lists (lf, with the
first four characters of each name as the hint, sorted as Windows sorts them), value lists, value
nodes (vk, data of up to four bytes kept in the node), data cells and one security cell (sk) shared
by every key. What is written is read back by libregf in the tests, as the worker reads it.

    hive = Key("ROOT")
    hive.key("Microsoft/Windows NT/CurrentVersion").set("ProductName", "Windows Server 2022 Standard")
    write_hive(path, hive)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_QWORD = 1, 2, 3, 4, 7, 11
HBIN = 4096
#: a FILETIME: 2024-01-15 10:00:00 UTC
WRITTEN = 133_497_720_000_000_000
_KEY_HIVE_ENTRY, _KEY_NO_DELETE, _KEY_COMP_NAME, _VALUE_COMP_NAME = 0x0004, 0x0008, 0x0020, 0x0001
#: a self-relative security descriptor with no owner, group or lists (enough for a reader)
_DESCRIPTOR = struct.pack("<BBHIIII", 1, 0, 0x8000, 0, 0, 0, 0)


@dataclass
class Value:
    name: str
    type: int
    data: bytes


@dataclass
class Key:
    name: str
    keys: dict[str, Key] = field(default_factory=dict)
    values: list[Value] = field(default_factory=list)

    def key(self, path: str) -> Key:
        """The subkey at ``path`` (``/``- or ``\\``-separated), made if missing."""
        node = self
        for part in path.replace("\\", "/").split("/"):
            if part:
                node = node.keys.setdefault(part.upper(), Key(part))
        return node

    def set(self, name: str, value: str | int | bytes | list[str], type: int | None = None) -> Key:
        """Set a value; its type follows the Python type (str REG_SZ, int REG_DWORD, bytes
        REG_BINARY, list REG_MULTI_SZ) unless ``type`` says otherwise."""
        if isinstance(value, bytes):
            kind, data = type or REG_BINARY, value
        elif isinstance(value, int):
            kind = type or REG_DWORD
            wide = kind == REG_QWORD  # a negative number is stored as its two's complement, as Windows does
            data = struct.pack("<Q" if wide else "<I", value & (0xFFFFFFFFFFFFFFFF if wide else 0xFFFFFFFF))
        elif isinstance(value, list):
            kind, data = type or REG_MULTI_SZ, "".join(f"{item}\0" for item in value).encode("utf-16-le") + b"\0\0"
        else:
            kind, data = type or REG_SZ, (value + "\0").encode("utf-16-le")
        self.values = [v for v in self.values if v.name.upper() != name.upper()] + [Value(name, kind, data)]
        return self


def _name(text: str) -> tuple[bytes, bool]:
    """The name as a hive stores it: Latin-1 ("compressed") when it can be, else UTF-16LE."""
    try:
        return text.encode("latin-1"), True
    except UnicodeEncodeError:
        return text.encode("utf-16-le"), False


class _Cells:
    """Hive bin data: allocated cells at 8-byte aligned offsets, hbins of 4 KiB laid over them."""

    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, payload: bytes) -> int:
        size = (4 + len(payload) + 7) & ~7
        if size > HBIN - 32:
            raise ValueError(f"a cell of {size} bytes does not fit one hive bin (big data cells are not written)")
        used = len(self.data) % HBIN
        if used == 0 or used + size > HBIN:  # a new hive bin, its header first
            if used:
                self._pad_bin()
            self.data += b"hbin" + struct.pack("<II", len(self.data), HBIN) + bytes(8) + struct.pack("<Q", WRITTEN) \
                + bytes(4)
        offset = len(self.data)
        self.data += struct.pack("<i", -size) + payload + bytes(size - 4 - len(payload))
        return offset

    def reserve(self, size: int) -> int:
        """An allocated cell of ``size`` payload bytes to fill in later (``put``)."""
        return self.add(bytes(size))

    def put(self, offset: int, payload: bytes) -> None:
        self.data[offset + 4:offset + 4 + len(payload)] = payload

    def _pad_bin(self) -> None:
        free = HBIN - len(self.data) % HBIN
        if free >= 8:
            self.data += struct.pack("<i", free) + bytes(free - 4)  # one unallocated cell
        else:
            self.data += bytes(free)

    def finish(self) -> bytes:
        if len(self.data) % HBIN:
            self._pad_bin()
        return bytes(self.data)


def _nk_size(key: Key) -> int:
    return 76 + len(_name(key.name)[0])


def _write_key(cells: _Cells, key: Key, parent: int, security: int, root: bool = False) -> int:
    offset = cells.reserve(_nk_size(key))
    children = sorted(key.keys.values(), key=lambda k: k.name.upper())
    child_offsets = [_write_key(cells, child, offset, security) for child in children]
    subkeys = 0xFFFFFFFF
    if children:
        entries = b"".join(struct.pack("<I", child) + k.name[:4].encode("latin-1", "replace").ljust(4, b"\0")
                           for child, k in zip(child_offsets, children, strict=True))
        subkeys = cells.add(b"lf" + struct.pack("<H", len(children)) + entries)
    value_list = 0xFFFFFFFF
    if key.values:
        value_offsets = [_write_value(cells, value) for value in key.values]
        value_list = cells.add(struct.pack(f"<{len(value_offsets)}I", *value_offsets))
    name, compressed = _name(key.name)
    flags = (_KEY_HIVE_ENTRY | _KEY_NO_DELETE if root else 0) | (_KEY_COMP_NAME if compressed else 0)
    longest_child = max((len(k.name) * 2 for k in children), default=0)
    longest_value = max((len(v.name) * 2 for v in key.values), default=0)
    largest_data = max((len(v.data) for v in key.values), default=0)
    cells.put(offset, b"nk" + struct.pack(
        "<HQIIIIIIIIIIIIIIIHH", flags, WRITTEN, 0, parent if not root else 0xFFFFFFFF, len(children), 0, subkeys,
        0xFFFFFFFF, len(key.values), value_list, security, 0xFFFFFFFF, longest_child, 0, longest_value,
        largest_data, 0, len(name), 0) + name)
    return offset


def _write_value(cells: _Cells, value: Value) -> int:
    name, compressed = _name(value.name)
    if len(value.data) <= 4:  # kept in the value node itself
        size, data_offset = 0x80000000 | len(value.data), int.from_bytes(value.data.ljust(4, b"\0"), "little")
    else:
        size, data_offset = len(value.data), cells.add(value.data)
    return cells.add(b"vk" + struct.pack("<HIIIHH", len(name), size, data_offset, value.type,
                                         _VALUE_COMP_NAME if compressed else 0, 0) + name)


def hive_bytes(root: Key, *, dirty: bool = False) -> bytes:
    """The hive file of ``root``; ``dirty``: its sequence numbers differ, as when the transaction
    logs beside it were not applied yet."""
    cells = _Cells()
    security = cells.reserve(20 + len(_DESCRIPTOR))
    cells.put(security, b"sk" + struct.pack("<HIIII", 0, security, security, 1, len(_DESCRIPTOR)) + _DESCRIPTOR)
    root_offset = _write_key(cells, root, 0, security, root=True)
    bins = cells.finish()
    primary, secondary = (5, 4) if dirty else (5, 5)
    base = bytearray(HBIN)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", primary, secondary, WRITTEN, 1, 3, 0, 1, root_offset,
                     len(bins), 1)
    base[48:48 + 64] = "\\SystemRoot\\System32\\Config\\HIVE".encode("utf-16-le")[:64].ljust(64, b"\0")
    checksum = 0
    for (dword,) in struct.iter_unpack("<I", bytes(base[:508])):
        checksum ^= dword
    checksum = {0: 1, 0xFFFFFFFF: 0xFFFFFFFE}.get(checksum, checksum)
    struct.pack_into("<I", base, 508, checksum)
    return bytes(base) + bins


def write_hive(path: str | Path, root: Key, *, dirty: bool = False) -> None:
    Path(path).write_bytes(hive_bytes(root, dirty=dirty))
