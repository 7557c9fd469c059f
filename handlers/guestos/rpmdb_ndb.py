"""rpm's ndb format, SUSE's since SLES 15 and openSUSE Leap 15 (``/var/lib/rpm/Packages.db``).

Layout (rpm ``lib/backend/ndb/rpmpkg.c``; every integer little-endian u32): a 16-byte header
(``RpmP``, version 0, generation, slot pages, next package index) at the start of the slot pages
(4096 bytes each, 16-byte slots, the first two taken by the header); a slot is ``Slot``, package
index, block offset and block count (16-byte blocks; offset 0: free). A blob at its block offset is
``BlbS``, package index, time stamp, length; the header blob; zero padding; then its adler32 (over
everything before the tail), the length again and ``BlbE``. Every slot and blob is checked against
the file; a blob that is damaged or whose checksum does not match is left out, and said.
"""

from __future__ import annotations

import struct
import zlib

from handlers.guestos.rpmheader import RpmError, TooManyPackages

SLOT_PAGE = 4096
SLOT = 16
BLOCK = 16
BLOB_HEAD, BLOB_TAIL = 16, 12
MAX_BLOB = 64 * 1024 * 1024


def ndb_headers(data: bytes, limit: int) -> tuple[list[bytes], list[str]]:
    """The header blobs of an ndb ``Packages.db`` in package-index order (at most ``limit``), and
    what was wrong with the slots or blobs that could not be read (those are left out)."""
    if len(data) < SLOT_PAGE or data[:4] != b"RpmP":
        raise RpmError("not an rpm ndb database (no RpmP header)")
    version, _generation, slot_pages = struct.unpack_from("<III", data, 4)
    if version != 0:
        raise RpmError(f"ndb version {version} is not read (0 is)")
    if slot_pages == 0 or slot_pages * SLOT_PAGE > len(data):
        raise RpmError(f"{slot_pages} slot pages declared in a file of {len(data)} bytes")
    blocks = len(data) // BLOCK
    first_block = slot_pages * SLOT_PAGE // BLOCK
    found: dict[int, bytes] = {}
    problems: list[str] = []
    for slot in range(2, slot_pages * SLOT_PAGE // SLOT):
        magic, index, offset, count = struct.unpack_from("<4sIII", data, slot * SLOT)
        if magic != b"Slot":
            raise RpmError(f"slot {slot} has no Slot magic: not an ndb slot page")
        if offset == 0:
            continue  # free
        try:
            if index == 0 or count == 0 or offset < first_block or offset + count > blocks:
                raise RpmError(f"slot {slot} points outside the file's blobs")
            if index in found:
                raise RpmError(f"package index {index} is in two slots")
            found[index] = _blob(data, index, offset * BLOCK, (offset + count) * BLOCK)
        except RpmError as exc:
            problems.append(str(exc))
        if len(found) + len(problems) > limit:
            raise TooManyPackages(limit)
    return [found[index] for index in sorted(found)], problems


def _blob(data: bytes, index: int, start: int, end: int) -> bytes:
    magic, owner, _stamp, length = struct.unpack_from("<4sIII", data, start)
    if magic != b"BlbS" or owner != index or length > MAX_BLOB:
        raise RpmError(f"package {index}: no blob where its slot points")
    if (end - start) // BLOCK != -(-(BLOB_HEAD + length + BLOB_TAIL) // BLOCK):
        raise RpmError(f"package {index}: its slot's size does not fit its blob of {length} bytes")
    checksum, tail_length, tail_magic = struct.unpack_from("<II4s", data, end - BLOB_TAIL)
    if tail_magic != b"BlbE" or tail_length != length:
        raise RpmError(f"package {index}: its blob's tail is damaged")
    if zlib.adler32(data[start:end - BLOB_TAIL]) != checksum:
        raise RpmError(f"package {index}: its blob's checksum does not match")
    return data[start + BLOB_HEAD:start + BLOB_HEAD + length]
