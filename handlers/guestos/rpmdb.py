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
from handlers.guestos.rpmheader import PartialRead, RpmError, packages_from_headers
from handlers.tree import GuestTree

#: (guest path, format), in the order a guest is searched (newest format first)
RPMDB_FILES = (
    ("/var/lib/rpm/rpmdb.sqlite", "sqlite"), ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "sqlite"),
    ("/var/lib/rpm/Packages.db", "ndb"), ("/usr/lib/sysimage/rpm/Packages.db", "ndb"),
    ("/var/lib/rpm/Packages", "bdb"), ("/usr/lib/sysimage/rpm/Packages", "bdb"),
)
#: larger databases are refused rather than copied (a real one with thousands of packages is < 300 MiB)
MAX_RPMDB_BYTES = 1024 * 1024 * 1024
#: packages read from one database at most
MAX_PACKAGES = 200_000
#: sqlite virtual-machine steps between checks of the time budget, and the budget itself
_PROGRESS_STEPS = 100_000
QUERY_SECONDS = 120.0


def read_rpm_sqlite(database: bytes, wal: bytes | None = None) -> list[bytes]:
    """The header blobs of an rpm sqlite database (``wal``: its write-ahead log, read with it).

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
            rows = db.execute("SELECT blob FROM Packages ORDER BY hnum LIMIT ?", (MAX_PACKAGES + 1,)).fetchall()
        except sqlite3.Error as exc:
            raise RpmError(str(exc)) from exc
        finally:
            db.close()
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if len(rows) > MAX_PACKAGES:
        raise RpmError(f"more than {MAX_PACKAGES} packages")
    return [bytes(blob) for (blob,) in rows]


def _sqlite_headers(tree: GuestTree, path: str, data: bytes) -> tuple[list[bytes], list[str]]:
    wal_info = tree.stat(path + "-wal")
    wal = None
    if wal_info is not None and wal_info.type == "file" and wal_info.size:
        if wal_info.size > MAX_RPMDB_BYTES:
            raise RpmError(f"{path}-wal is over the {MAX_RPMDB_BYTES} byte limit")
        wal = tree.read_bytes(path + "-wal", limit=MAX_RPMDB_BYTES)
    return read_rpm_sqlite(data, wal), []


_READERS: dict[str, Callable[[GuestTree, str, bytes], tuple[list[bytes], list[str]]]] = {
    "sqlite": _sqlite_headers,
    "ndb": lambda _tree, _path, data: ndb_headers(data, MAX_PACKAGES),
    "bdb": lambda _tree, _path, data: (bdb_headers(data, MAX_PACKAGES), []),
}


def read_rpm_packages(tree: GuestTree) -> tuple[str, list[dict[str, Any]], str | None] | None:
    """(database path, installed packages, warning), or None when the guest has no rpm
    database; the first database found is read (the newest format first)."""
    for path, kind in RPMDB_FILES:
        info = tree.stat(path)
        if info is None or info.type != "file":
            continue
        if info.size > MAX_RPMDB_BYTES:
            return path, [], f"{path} is {info.size} bytes, over the {MAX_RPMDB_BYTES} byte limit"
        data = tree.read_bytes(path, limit=MAX_RPMDB_BYTES + 1) or b""
        try:
            blobs, problems = _READERS[kind](tree, path, data)
            packages = packages_from_headers(blobs)
        except PartialRead as partial:
            return path, partial.packages, f"{path}: {partial}"
        except RpmError as exc:
            return path, [], f"{path} ({kind}) could not be read: {exc}"
        warning = f"{path}: {len(problems)} package(s) left out: {'; '.join(problems[:5])}" if problems else None
        return path, packages, warning
    return None
