"""The rpm database of a guest, in whichever of rpm's formats it is kept:

- sqlite ``rpmdb.sqlite`` (RHEL 9, Fedora 33 and later), with its write-ahead log: both files are
  copied into a private directory and read together (an image of a running VM can hold packages
  only in ``rpmdb.sqlite-wal``); nothing is ever created in the guest;
- ndb ``Packages.db`` (SLES 15, openSUSE Leap 15): ``handlers.guestos.rpmdb_ndb``;
- Berkeley DB hash ``Packages`` (RHEL and CentOS 5 to 8): ``handlers.guestos.rpmdb_bdb``.

Each gives header blobs, read the same way (``handlers.guestos.rpmheader``). A database that cannot
be read gives no packages and a warning naming the file and what was wrong; headers that cannot be
decoded are left out and counted.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handlers.guestos.rpmdb_bdb import bdb_headers
from handlers.guestos.rpmdb_ndb import ndb_headers
from handlers.guestos.rpmheader import PartialRead, RpmError, TooManyPackages, packages_from_headers
from handlers.tree import GuestTree, note_truncation

#: (guest path, format), in the order a guest is searched (newest format first)
RPMDB_FILES = (
    ("/var/lib/rpm/rpmdb.sqlite", "sqlite"), ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "sqlite"),
    ("/var/lib/rpm/Packages.db", "ndb"), ("/usr/lib/sysimage/rpm/Packages.db", "ndb"),
    ("/var/lib/rpm/Packages", "bdb"), ("/usr/lib/sysimage/rpm/Packages", "bdb"),
)
#: sqlite virtual-machine steps between checks of the time budget, and the budget itself
_PROGRESS_STEPS = 100_000
QUERY_SECONDS = 120.0


def read_rpm_sqlite(database: bytes, wal: bytes | None = None, most: int = 100_000) -> list[bytes]:
    """The header blobs of an rpm sqlite database (``wal``: its write-ahead log, read with it), at
    most ``most`` of them (``TooManyPackages`` beyond).

    Both are written into a private directory and opened read-only there (sqlite makes its shared
    memory file beside them). The database comes from the guest, so it is distrusted: ``Packages``
    must be a plain table (not a view that could run any query), and a query running past
    ``QUERY_SECONDS`` is interrupted.
    """
    private = Path(tempfile.mkdtemp(prefix="guestkit-rpmdb-"))
    try:
        copy = private / "rpmdb.sqlite"
        copy.write_bytes(database)
        if wal:
            (private / "rpmdb.sqlite-wal").write_bytes(wal)
        deadline = time.monotonic() + QUERY_SECONDS
        db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            db.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
            kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchone()
            if kind is None or kind[0] != "table":
                raise RpmError(f"no Packages table in the rpm database (found {kind[0] if kind else 'nothing'})")
            rows = db.execute("SELECT blob FROM Packages ORDER BY hnum LIMIT ?", (most + 1,)).fetchall()
        except sqlite3.Error as exc:
            raise RpmError(str(exc)) from exc
        finally:
            db.close()
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if len(rows) > most:
        raise TooManyPackages(most)
    return [bytes(blob) for (blob,) in rows]


def _sqlite_headers(tree: GuestTree, path: str, data: bytes) -> tuple[list[bytes], list[str]]:
    wal_info = tree.stat(path + "-wal")
    wal = None
    if wal_info is not None and wal_info.type == "file" and wal_info.size:
        if wal_info.size > tree.limits.max_file_bytes:
            note_truncation(tree, path + "-wal", "max_file_bytes", tree.limits.max_file_bytes, wal_info.size)
            raise RpmError(f"{path}-wal is over the {tree.limits.max_file_bytes} byte limit")
        wal = tree.read_bytes(path + "-wal")
    return read_rpm_sqlite(data, wal, tree.limits.max_entries), []


_READERS: dict[str, Callable[[GuestTree, str, bytes], tuple[list[bytes], list[str]]]] = {
    "sqlite": _sqlite_headers,
    "ndb": lambda tree, _path, data: ndb_headers(data, tree.limits.max_entries),
    "bdb": lambda tree, _path, data: (bdb_headers(data, tree.limits.max_entries), []),
}


def read_rpm_packages(tree: GuestTree) -> tuple[str, list[dict[str, Any]], str | None] | None:
    """(database path, installed packages, warning), or None when the guest has no rpm
    database; the first database found is read (the newest format first)."""
    for path, kind in RPMDB_FILES:
        info = tree.stat(path)
        if info is None or info.type != "file":
            continue
        cap = tree.limits.max_file_bytes
        if info.size > cap:  # a database cut short cannot be read
            note_truncation(tree, path, "max_file_bytes", cap, info.size)
            return path, [], f"{path} is {info.size} bytes, over the {cap} byte limit: not read"
        data = tree.read_bytes(path) or b""
        try:
            blobs, problems = _READERS[kind](tree, path, data)
            packages = packages_from_headers(blobs)
        except PartialRead as partial:
            return path, partial.packages, f"{path}: {partial}"
        except TooManyPackages as exc:
            note_truncation(tree, path, "max_entries", exc.most, None)
            return path, [], f"{path} holds more than {exc.most} packages: not read"
        except RpmError as exc:
            return path, [], f"{path} ({kind}) could not be read: {exc}"
        warning = f"{path}: {len(problems)} package(s) left out: {'; '.join(problems[:5])}" if problems else None
        return path, packages, warning
    return None
