"""rpm databases in every format rpm has used, from headers rpm itself wrote: Berkeley DB hash in
both byte orders and several page sizes (checked against Debian's rpm reading the same file), ndb
(checked against the headers it was written from), sqlite with its write-ahead log; damaged and
hostile databases end in a warning naming the file, never in an exception or a hang."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.guestos.packages import read_packages, sort_packages
from handlers.guestos.rpmdb_bdb import bdb_headers
from handlers.guestos.rpmdb_ndb import ndb_headers
from handlers.guestos.rpmheader import RpmError, packages_from_headers
from handlers.tree import DirectoryTree
from tests.guestdata import RHEL_PACKAGES
from tests.rpmdb_build import installed_headers, rpm_reads_bdb, write_bdb, write_ndb

LIMIT = 200_000


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The RHEL guest's packages as rpm installed them: (header blobs, rpm -qa's view)."""
    return installed_headers(RHEL_PACKAGES, tmp_path_factory.mktemp("rpm-headers"))


def _guest(tmp_path: Path, path: str, data: bytes) -> DirectoryTree:
    target = tmp_path / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return DirectoryTree(tmp_path)


@pytest.mark.parametrize(("big_endian", "page_size"), [(False, 4096), (True, 4096), (True, 65536), (False, 16384)])
def test_berkeley_db_reads_as_rpm_reads_it(headers: tuple[list[bytes], list[dict[str, Any]]], tmp_path: Path,
                                           big_endian: bool, page_size: int) -> None:
    """4 KiB pages put every installed header on overflow pages, 64 KiB keeps them inline."""
    blobs, truth = headers
    write_bdb(tmp_path / "Packages", blobs, big_endian=big_endian, page_size=page_size)
    assert sort_packages(rpm_reads_bdb(tmp_path)) == sort_packages(truth)  # the independent reader agrees
    assert bdb_headers((tmp_path / "Packages").read_bytes(), LIMIT) == blobs
    result = read_packages(_guest(tmp_path / "guest", "/var/lib/rpm/Packages", (tmp_path / "Packages").read_bytes()))
    assert (result["source"], result["warning"]) == ("/var/lib/rpm/Packages", None)
    assert result["packages"] == sort_packages(truth)


def test_ndb_reads_the_headers_it_was_written_from(headers: tuple[list[bytes], list[dict[str, Any]]],
                                                     tmp_path: Path) -> None:
    blobs, truth = headers
    for free_slot in (False, True):
        write_ndb(tmp_path / "Packages.db", blobs, free_slot=free_slot)
        assert ndb_headers((tmp_path / "Packages.db").read_bytes(), LIMIT) == (blobs, [])
    result = read_packages(_guest(tmp_path / "guest", "/usr/lib/sysimage/rpm/Packages.db",
                                  (tmp_path / "Packages.db").read_bytes()))
    assert result["packages"] == sort_packages(truth) and result["warning"] is None


def test_an_ndb_blob_with_a_bad_checksum_is_left_out_and_said(headers: tuple[list[bytes], list[dict[str, Any]]],
                                                              tmp_path: Path) -> None:
    blobs, truth = headers
    write_ndb(tmp_path / "Packages.db", blobs)
    data = bytearray((tmp_path / "Packages.db").read_bytes())
    second = struct.unpack_from("<I", data, 3 * 16 + 8)[0] * 16  # slot 3 holds package 2
    data[second + 40] ^= 0xFF
    result = read_packages(_guest(tmp_path, "/var/lib/rpm/Packages.db", bytes(data)))
    assert len(result["packages"]) == len(truth) - 1
    assert "/var/lib/rpm/Packages.db" in result["warning"] and "package 2" in result["warning"]
    assert "checksum" in result["warning"]


def test_sqlite_packages_only_in_the_write_ahead_log_are_read(headers: tuple[list[bytes], list[dict[str, Any]]],
                                                               tmp_path: Path) -> None:
    """An image of a running VM: the last transactions are in rpmdb.sqlite-wal only. Both files are
    read together, in a private copy: nothing is created in the guest."""
    blobs, truth = headers
    live = tmp_path / "live"
    live.mkdir()
    writer = sqlite3.connect(live / "rpmdb.sqlite")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    writer.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs[:10]])
    writer.commit()
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs[10:]])
    writer.commit()  # in the log only: the snapshot is taken now, with the writer still running
    guest = tmp_path / "guest" / "var/lib/rpm"
    guest.mkdir(parents=True)
    for name in ("rpmdb.sqlite", "rpmdb.sqlite-wal"):
        shutil.copyfile(live / name, guest / name)
    writer.close()
    before = sorted(os.listdir(guest))
    result = read_packages(DirectoryTree(tmp_path / "guest"))
    assert result["packages"] == sort_packages(truth) and result["warning"] is None
    assert sorted(os.listdir(guest)) == before
    (guest / "rpmdb.sqlite-wal").unlink()
    assert len(read_packages(DirectoryTree(tmp_path / "guest"))["packages"]) == 10


@pytest.mark.parametrize(("path", "data", "says"), [
    ("/var/lib/rpm/Packages", b"\x00" * 8192, "no hash magic"),
    ("/var/lib/rpm/Packages", b"", "too short"),
    ("/var/lib/rpm/Packages.db", b"RpmP" + struct.pack("<IIII", 0, 1, 1_000_000, 1) + bytes(8000), "slot pages"),
    ("/var/lib/rpm/Packages.db", b"RpmP" + b"\xff" * 8000, "ndb version"),
    ("/var/lib/rpm/Packages.db", b"not ndb" * 1000, "no RpmP"),
])
def test_unreadable_databases_give_a_warning_naming_the_file(tmp_path: Path, path: str, data: bytes,
                                                             says: str) -> None:
    result = read_packages(_guest(tmp_path, path, data))
    assert result["format"] == "rpm" and result["packages"] == []
    assert path in result["warning"] and says in result["warning"], result["warning"]


def test_a_database_declaring_millions_of_buckets_is_refused_at_once(headers: tuple[list[bytes], Any],
                                                                     tmp_path: Path) -> None:
    write_bdb(tmp_path / "Packages", headers[0][:3])
    data = bytearray((tmp_path / "Packages").read_bytes())
    struct.pack_into("<III", data, 72, 50_000_000, 0x7FFFFFF, 0x3FFFFFF)  # max_bucket, high and low masks
    with pytest.raises(RpmError, match="buckets declared"):
        bdb_headers(bytes(data), LIMIT)
    with pytest.raises(RpmError, match="more than 2 packages"):
        bdb_headers((tmp_path / "Packages").read_bytes(), 2)


def _read_all(reader: Any, data: bytes) -> bool:  # noqa: ANN401
    """True when the database read whole (some headers may still be left out), False when refused."""
    try:
        blobs = reader(data, LIMIT)
        packages_from_headers(blobs[0] if isinstance(blobs, tuple) else blobs)
    except RpmError:
        return False
    return True


@pytest.fixture(scope="module")
def real_databases(headers: tuple[list[bytes], Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("rpmdb-fuzz")
    write_ndb(base / "ndb", headers[0][:8])
    write_bdb(base / "bdb-le-4k", headers[0][:8])
    write_bdb(base / "bdb-be-64k", headers[0][:8], big_endian=True, page_size=65536)
    write_bdb(base / "bdb-le-512", headers[0][:3], page_size=512)
    return {name: (base / name).read_bytes() for name in ("ndb", "bdb-le-4k", "bdb-be-64k", "bdb-le-512")}


_MUTATION = st.tuples(st.floats(min_value=0, max_value=1, exclude_max=True),
                      st.one_of(st.just(0), st.just(0xFF), st.integers(0, 255)))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["ndb", "bdb-le-4k", "bdb-be-64k", "bdb-le-512"]),
       changes=st.lists(_MUTATION, min_size=1, max_size=8))
def test_mutated_real_databases_raise_only_the_readers_error(real_databases: dict[str, bytes], name: str,
                                                             changes: list[tuple[float, int]]) -> None:
    """Bytes of real databases changed (page headers, item offsets, overflow chains, slots, blobs):
    each read ends in packages or RpmError, never another exception or a loop."""
    data = bytearray(real_databases[name])
    for where, value in changes:
        data[int(where * len(data))] = value
    _read_all(ndb_headers if name == "ndb" else bdb_headers, bytes(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=9000))
def test_arbitrary_bytes_raise_only_the_readers_error(data: bytes) -> None:
    for reader in (bdb_headers, ndb_headers):
        _read_all(reader, data)
        _read_all(reader, b"RpmP" + data)


def test_a_loop_of_overflow_pages_ends(headers: tuple[list[bytes], Any], tmp_path: Path) -> None:
    write_bdb(tmp_path / "Packages", headers[0][:3], page_size=512)  # a header spans several pages
    assert bdb_headers((tmp_path / "Packages").read_bytes(), LIMIT) == headers[0][:3]
    data = bytearray((tmp_path / "Packages").read_bytes())
    overflow = next(n for n in range(1, len(data) // 512) if data[n * 512 + 25] == 7 and
                    struct.unpack_from("<I", data, n * 512 + 16)[0])  # an overflow page with a successor
    struct.pack_into("<I", data, overflow * 512 + 16, overflow)  # ... that is itself
    with pytest.raises(RpmError, match="loop of overflow pages"):
        bdb_headers(bytes(data), LIMIT)


def test_el5_hash_pages_unsorted_and_hash_version_8(headers: tuple[list[bytes], Any], tmp_path: Path) -> None:
    """Berkeley DB 4.3 (RHEL 5) wrote hash version 8 and unsorted hash pages (type 2): the same items."""
    write_bdb(tmp_path / "Packages", headers[0], page_size=4096)
    data = bytearray((tmp_path / "Packages").read_bytes())
    struct.pack_into("<I", data, 16, 8)
    hash_pages = [n for n in range(1, len(data) // 4096) if data[n * 4096 + 25] == 13]
    for number in hash_pages:
        data[number * 4096 + 25] = 2
    assert hash_pages and bdb_headers(bytes(data), LIMIT) == headers[0]
