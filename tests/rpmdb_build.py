"""rpm databases in the older formats, built by the tests from headers rpm itself wrote.

- the headers: rpm installs empty packages (``tests/rpmdb_tool.py``) into a sqlite database, whose
  ``Packages`` table holds them as rpm stores them (installed headers, with their install tags);
- Berkeley DB hash ``Packages``: written by ``db5.3_load`` (Debian ``db5.3-util``) in either byte
  order and any page size, and read back by Debian's rpm (``_db_backend bdb_ro``) as a second,
  independent reader;
- ndb ``Packages.db``: written here (no tool writes it on Debian: its rpm has no ndb backend), from
  the layout of rpm's ``lib/backend/ndb/rpmpkg.c``.
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

from tests.rpmdb_tool import DBPATH, QUERY, parse_query, rpm_database


def installed_headers(packages: list[dict[str, Any]], work: Path) -> tuple[list[bytes], list[dict[str, Any]]]:
    """(header blobs in install order, the packages as rpm -qa reads them) of ``packages``."""
    truth = rpm_database(packages, work)
    db = sqlite3.connect(f"file:{work / DBPATH.lstrip('/') / 'rpmdb.sqlite'}?mode=ro", uri=True)
    try:
        blobs = [bytes(blob) for (blob,) in db.execute("SELECT blob FROM Packages ORDER BY hnum")]
    finally:
        db.close()
    return blobs, truth


def write_bdb(path: Path, blobs: list[bytes], *, big_endian: bool = False, page_size: int = 4096,
              counter: bool = True) -> None:
    """A Berkeley DB hash file as rpm's Packages: key = header number (1, 2, ...) in the file's
    byte order, data = the header blob; ``counter``: also the legacy key-0 record rpm's db3
    backend kept."""
    order = ">" if big_endian else "<"
    records = [(struct.pack(order + "I", 0), struct.pack(order + "I", len(blobs)))] if counter else []
    records += [(struct.pack(order + "I", number), blob) for number, blob in enumerate(blobs, start=1)]
    lines = ["VERSION=3", "format=bytevalue", "type=hash", f"db_lorder={4321 if big_endian else 1234}",
             f"db_pagesize={page_size}", "HEADER=END"]
    for key, value in records:
        lines += [" " + key.hex(), " " + value.hex()]
    lines.append("DATA=END")
    path.unlink(missing_ok=True)
    subprocess.run(["db5.3_load", str(path)], input=("\n".join(lines) + "\n").encode(), check=True,
                   capture_output=True)


def rpm_reads_bdb(directory: Path) -> list[dict[str, Any]]:
    """The packages Debian's rpm reads from the Berkeley DB ``Packages`` in ``directory``."""
    done = subprocess.run(["rpm", "--dbpath", str(directory), "--define", "_db_backend bdb_ro", "-qa",
                           "--qf", QUERY], capture_output=True, text=True, check=True)
    return parse_query(done.stdout)

NDB_SLOT_PAGE, NDB_SLOT, NDB_BLOCK = 4096, 16, 16


def write_ndb(path: Path, blobs: list[bytes], *, free_slot: bool = False, stamp: int = 1700000000) -> None:
    """An ndb ``Packages.db`` holding ``blobs`` as packages 1, 2, ...; ``free_slot``: with a freed
    slot and the zeroed gap an erased blob leaves, as after ``rpm -e``."""
    slots: list[tuple[int, int, int]] = [(0, 0, 0)] if free_slot else []
    page_count = max(1, -(-(len(blobs) + len(slots) + 2) // (NDB_SLOT_PAGE // NDB_SLOT)))
    offset = page_count * NDB_SLOT_PAGE // NDB_BLOCK
    body = bytearray()
    for index, blob in enumerate(blobs, start=1):
        count = -(-(16 + len(blob) + 12) // NDB_BLOCK)
        head = struct.pack("<4sIII", b"BlbS", index, stamp, len(blob))
        padded = head + blob + bytes(count * NDB_BLOCK - 28 - len(blob))
        body += padded + struct.pack("<II4s", zlib.adler32(padded), len(blob), b"BlbE")
        slots.append((index, offset, count))
        offset += count
        if free_slot and index == 1:
            body += bytes(4 * NDB_BLOCK)
            offset += 4
    pages = bytearray(page_count * NDB_SLOT_PAGE)
    struct.pack_into("<4sIIII", pages, 0, b"RpmP", 0, len(blobs) + 1, page_count, len(blobs) + 1)
    for slot in range(2, page_count * NDB_SLOT_PAGE // NDB_SLOT):
        pages[slot * NDB_SLOT:slot * NDB_SLOT + 4] = b"Slot"
    for number, (index, at, count) in enumerate(slots, start=2):
        struct.pack_into("<4sIII", pages, number * NDB_SLOT, b"Slot", index, at, count)
    path.write_bytes(bytes(pages + body))
