"""A Windows guest's registry hives, read through libregf (libyal) from the guest's file tree.

A hive is read from the tree like any guest file (so within the job's ``max_file_bytes``) and
opened from memory. Every cell offset and size is checked by libregf; what it does not bound is
bounded here: the bytes of one value's data read (``MAX_VALUE_BYTES``) and the subkeys one listing
walks (the job's ``max_entries``). A hive whose sequence numbers differ was written while its
transaction logs were not yet applied: it is read as it stands, and a warning names it. A hive
that cannot be read is a warning, never a failed job.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import Any

import pyregf

from handlers.tree import GuestTree, note_truncation

CONFIG_DIR = "/Windows/System32/config"
#: bytes of one value's data read at most (a real value is bytes to kilobytes; a hostile one may
#: claim gigabytes)
MAX_VALUE_BYTES = 1024 * 1024
REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_DWORD_BIG_ENDIAN, REG_MULTI_SZ, REG_QWORD = 1, 2, 3, 4, 5, 7, 11


class Hive:
    """One open hive; paths are ``\\``- or ``/``-separated, from the hive's root, any case."""

    def __init__(self, name: str, path: str, regf: Any, tree: GuestTree) -> None:  # noqa: ANN401 - pyregf.file
        self.name = name
        self.path = path
        self._regf = regf
        self._tree = tree

    def key(self, path: str) -> Any | None:  # noqa: ANN401 - pyregf.key
        try:
            return self._regf.get_key_by_path("\\" + path.replace("/", "\\").strip("\\"))
        except OSError:
            return None

    def value(self, key: Any | str | None, name: str) -> Any:  # noqa: ANN401 - a value's data, decoded
        """The data of value ``name`` of ``key`` (a key or its path): text for the string types, a
        list for REG_MULTI_SZ, an int for the number types, bytes otherwise; None when absent."""
        node = self.key(key) if isinstance(key, str) else key
        if node is None:
            return None
        try:
            found = node.get_value_by_name(name)
        except OSError:
            return None
        return None if found is None else decode(found)

    def values(self, key: Any | str | None) -> dict[str, Any]:  # noqa: ANN401
        """Name -> decoded data of every value of ``key`` (the default value under ``""``)."""
        node = self.key(key) if isinstance(key, str) else key
        if node is None:
            return {}
        found: dict[str, Any] = {}
        for index in range(min(node.number_of_values, self._tree.limits.max_entries)):
            try:
                value = node.get_value(index)
            except OSError:
                continue
            found.setdefault(value.name or "", decode(value))
        return found

    def subkeys(self, key: Any | str | None) -> Iterator[Any]:  # noqa: ANN401
        """The subkeys of ``key``, at most ``max_entries`` of them (a cut is noted)."""
        node = self.key(key) if isinstance(key, str) else key
        if node is None:
            return
        count, most = node.number_of_sub_keys, self._tree.limits.max_entries
        if count > most:
            note_truncation(self._tree, f"{self.path}\\{node.name}", "max_entries", most, count)
        for index in range(min(count, most)):
            try:
                yield node.get_sub_key(index)
            except OSError:
                continue


def decode(value: Any) -> Any:  # noqa: ANN401 - a pyregf.value
    """A value's data as Python: only ``MAX_VALUE_BYTES`` of it are read."""
    size = value.data_size
    if size > MAX_VALUE_BYTES:
        return None
    kind = value.type
    try:
        if kind in (REG_SZ, REG_EXPAND_SZ):
            return _text(value.data)
        if kind == REG_MULTI_SZ:
            return [item for item in _text(value.data, strip=False).split("\0") if item]
        if kind in (REG_DWORD, REG_QWORD, REG_DWORD_BIG_ENDIAN):
            return value.data_as_integer
        return value.data
    except (OSError, ValueError):  # data a damaged hive cannot give: the value counts as absent
        return None


def _text(data: bytes | None, strip: bool = True) -> str:
    """UTF-16LE text up to its first NUL (``strip``), as Windows reads it; odd bytes dropped."""
    raw = (data or b"")[: len(data or b"") // 2 * 2]
    text = raw.decode("utf-16-le", errors="replace")
    return text.split("\0", 1)[0] if strip else text


def sid_text(raw: bytes) -> tuple[str, int] | None:
    """(``S-1-5-…``, its length in bytes) of the SID at the start of ``raw``."""
    if len(raw) < 8:
        return None
    revision, count = raw[0], raw[1]
    size = 8 + 4 * count
    if revision != 1 or count > 15 or len(raw) < size:
        return None
    authority = int.from_bytes(raw[2:8], "big")
    parts = struct.unpack_from(f"<{count}I", raw, 8)
    return "-".join(["S", "1", str(authority), *map(str, parts)]), size


def open_hive(tree: GuestTree, name: str, path: str | None = None) -> tuple[Hive | None, str | None]:
    """(the hive ``name`` of ``CONFIG_DIR``, or the file ``path``; a warning about it), or (None,
    None) when the guest has no such file."""
    path = path or f"{CONFIG_DIR}/{name}"
    data = tree.read_bytes(path)
    if data is None:
        return None, None
    regf = pyregf.file()
    try:
        regf.open_file_object(io.BytesIO(data))
        regf.get_root_key()
    except OSError as exc:
        return None, f"the registry hive {path} cannot be read: {exc}"
    warning = None
    if len(data) >= 12:
        primary, secondary = struct.unpack_from("<II", data, 4)
        if primary != secondary:
            warning = (f"the registry hive {path} has transaction logs not yet applied (sequence numbers {primary} "
                       f"and {secondary}): it is read as it stands; its most recent changes may be missing")
    if regf.is_corrupted():
        warning = f"the registry hive {path} is damaged: what could be read of it is reported"
    return Hive(name, path, regf, tree), warning
