"""rpm header blobs and the rpm sqlite database (``/var/lib/rpm/rpmdb.sqlite``).

A header blob is ``il`` (int32 index count), ``dl`` (int32 data length), ``il`` index entries of
four big-endian int32 (tag, type, offset, count), then ``dl`` bytes of data.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile
import time
from typing import Any

from handlers.tree import GuestTree

RPMDB_SQLITE = "/var/lib/rpm/rpmdb.sqlite"
RPMDB_LEGACY = ("/var/lib/rpm/Packages", "/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db")
RPMDB_SQLITE_PATHS = (RPMDB_SQLITE, "/usr/lib/sysimage/rpm/rpmdb.sqlite")

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
_STRING_TYPES = (6, 8, 9)  # STRING, STRING_ARRAY, I18NSTRING
_INT_TYPES = {2: ("b", 1), 3: (">h", 2), 4: (">i", 4), 5: (">q", 8)}
_MAX_ENTRIES = 100_000
#: larger databases are refused rather than copied (a real one with thousands of packages is < 300 MiB)
MAX_RPMDB_BYTES = 1024 * 1024 * 1024
#: sqlite virtual-machine steps between checks of the time budget, and the budget itself
_PROGRESS_STEPS = 100_000
QUERY_SECONDS = 120.0


class RpmError(ValueError):
    """A header blob or an rpm database that cannot be read."""


def decode_header(blob: bytes, wanted: frozenset[int] | None = None) -> dict[int, Any]:
    """Tag -> value (str, int, list or bytes) for the tags in ``wanted`` (all when None)."""
    if len(blob) < 8:
        raise RpmError("header shorter than 8 bytes")
    il, dl = struct.unpack_from(">ii", blob, 0)
    data_start = 8 + il * 16
    if il < 0 or dl < 0 or il > _MAX_ENTRIES or data_start + dl > len(blob):
        raise RpmError(f"bad header sizes il={il} dl={dl} for {len(blob)} bytes")
    data = blob[data_start:data_start + dl]
    values: dict[int, Any] = {}
    for index in range(il):
        tag, kind, offset, count = struct.unpack_from(">iiii", blob, 8 + index * 16)
        if wanted is not None and tag not in wanted:
            continue
        if not 0 <= offset <= dl:
            raise RpmError(f"tag {tag}: offset {offset} outside data of {dl} bytes")
        values[tag] = _decode_value(data, kind, offset, count)
    return values


def _decode_value(data: bytes, kind: int, offset: int, count: int) -> Any:
    if kind in _STRING_TYPES:
        strings = []
        position = offset
        for _ in range(max(count, 1) if kind != 6 else 1):
            end = data.find(b"\0", position)
            if end < 0:
                raise RpmError("unterminated string")
            strings.append(data[position:end].decode("utf-8", errors="replace"))
            position = end + 1
        return strings[0] if kind in (6, 9) else strings
    if kind in _INT_TYPES:
        fmt, size = _INT_TYPES[kind]
        if offset + size * count > len(data):
            raise RpmError("integer array past end of data")
        items = [struct.unpack_from(fmt, data, offset + i * size)[0] for i in range(count)]
        return items[0] if count == 1 else items
    return data[offset:offset + count]


_PACKAGE_TAGS = frozenset({TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH})


def package_from_header(blob: bytes) -> dict[str, Any]:
    tags = decode_header(blob, _PACKAGE_TAGS)
    epoch = tags.get(TAG_EPOCH)
    return {
        "name": tags.get(TAG_NAME), "epoch": epoch if isinstance(epoch, int) else None,
        "version": tags.get(TAG_VERSION), "release": tags.get(TAG_RELEASE), "arch": tags.get(TAG_ARCH),
    }


class PartialRead(RpmError):
    """Some headers were unreadable; ``packages`` holds the others."""

    def __init__(self, packages: list[dict[str, Any]], message: str) -> None:
        super().__init__(message)
        self.packages = packages


def read_rpm_sqlite(path: str) -> list[dict[str, Any]]:
    """Packages of an rpm sqlite database file on the host, opened read-only.

    The file comes from the guest, so it is distrusted: ``Packages`` must be a plain table (not a
    view that could run any query), and a query running past ``QUERY_SECONDS`` is interrupted.
    """
    deadline = time.monotonic() + QUERY_SECONDS
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchone()
        if kind is None or kind[0] != "table":
            raise RpmError(f"no Packages table in the rpm database (found {kind[0] if kind else 'nothing'})")
        rows = db.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
    finally:
        db.close()
    packages = []
    corrupt = 0
    for (blob,) in rows:
        try:
            package = package_from_header(bytes(blob))
        except RpmError:
            corrupt += 1
            continue
        if package["name"]:
            packages.append(package)
    if corrupt:
        raise PartialRead(packages, f"{corrupt} of {len(rows)} package headers could not be decoded")
    return packages


def read_rpm_packages(tree: GuestTree) -> tuple[str, list[dict[str, Any]], str | None] | None:
    """(database path, installed packages, warning), or None when the guest has no sqlite rpm database.

    sqlite needs a real file, so the database bytes are copied to a private temporary file. An
    unreadable database gives no packages and a warning; unreadable headers are skipped and counted.
    """
    for guest_path in RPMDB_SQLITE_PATHS:
        info = tree.stat(guest_path)
        if info is None:
            continue
        if info.size > MAX_RPMDB_BYTES:
            return guest_path, [], f"{guest_path} is {info.size} bytes, over the {MAX_RPMDB_BYTES} byte limit"
        content = tree.read_bytes(guest_path, limit=MAX_RPMDB_BYTES + 1)
        if content is None:
            continue
        handle, host_path = tempfile.mkstemp(suffix=".sqlite", prefix="guestkit-rpmdb-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            return guest_path, read_rpm_sqlite(host_path), None
        except PartialRead as partial:
            return guest_path, partial.packages, f"{guest_path}: {partial}"
        except (RpmError, sqlite3.Error) as exc:
            return guest_path, [], f"{guest_path} could not be read: {exc}"
        finally:
            os.unlink(host_path)
    return None


def legacy_rpmdb_path(tree: GuestTree) -> str | None:
    """Path of a Berkeley DB / ndb rpm database (not read by this parser), if the guest has one."""
    return next((path for path in RPMDB_LEGACY if tree.stat(path) is not None), None)
