"""The Berkeley DB hash file rpm kept its ``Packages`` in until RHEL 8 (``/var/lib/rpm/Packages``).

Read as rpm's own read-only backend (``lib/backend/bdb_ro.c``) reads it: the metadata page says the
byte order (the magic read either way), the page size and the buckets; each bucket is a chain of
hash pages holding key/data pairs, inline or on a chain of overflow pages. A key is a 4-byte header
number (0: a legacy counter record, skipped); a data item is a header blob. Both page kinds (sorted,
and EL5's unsorted) and page sizes 512 B to 64 KiB are read. Every page number, offset and length is
checked against the file; a page is visited once; checksummed, encrypted or multi-database files
are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from handlers.guestos.rpmheader import RpmError, TooManyPackages

HASH_MAGIC = 0x061561
P_HASH_UNSORTED, P_OVERFLOW, P_HASHMETA, P_HASH = 2, 7, 8, 13
H_KEYDATA, H_OFFPAGE = 1, 3
PAGE_HEADER = 26
MAX_BLOB = 64 * 1024 * 1024


class HashFile:
    """One Berkeley DB hash file held in memory."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 512:
            raise RpmError("too short for a Berkeley DB metadata page")
        if struct.unpack_from("<I", data, 12)[0] == HASH_MAGIC:
            self.order = "<"
        elif struct.unpack_from(">I", data, 12)[0] == HASH_MAGIC:
            self.order = ">"
        else:
            raise RpmError("not a Berkeley DB hash file (no hash magic)")
        version, self.page_size = struct.unpack_from(self.order + "II", data, 16)
        encryption, page_type, meta_flags = data[24], data[25], data[26]
        last_page, = struct.unpack_from(self.order + "I", data, 32)
        flags, = struct.unpack_from(self.order + "I", data, 48)
        self.max_bucket, high_mask, low_mask = struct.unpack_from(self.order + "III", data, 72)
        self.spares = struct.unpack_from(self.order + "32I", data, 96)
        if version not in (8, 9, 10):
            raise RpmError(f"Berkeley DB hash version {version} is not read (8 to 10 are)")
        if self.page_size < 512 or self.page_size > 65536 or self.page_size & (self.page_size - 1):
            raise RpmError(f"bad page size {self.page_size}")
        if page_type != P_HASHMETA:
            raise RpmError("the first page is not a hash metadata page")
        if encryption or meta_flags & 0x01:
            raise RpmError("an encrypted or checksummed Berkeley DB file is not read")
        if flags & 0x02:
            raise RpmError("a Berkeley DB file with sub-databases is not read")
        if self.max_bucket > high_mask or low_mask > high_mask:
            raise RpmError("inconsistent hash masks")
        self.data = data
        self.pages = min(len(data) // self.page_size, last_page + 1)
        if self.max_bucket >= self.pages:
            raise RpmError(f"{self.max_bucket + 1} buckets declared in {self.pages} pages")

    def _page(self, number: int) -> bytes:
        if not 0 < number < self.pages:
            raise RpmError(f"page {number} outside the file's {self.pages} pages")
        start = number * self.page_size
        page = self.data[start:start + self.page_size]
        if struct.unpack_from(self.order + "I", page, 8)[0] != number:
            raise RpmError(f"page {number} does not say it is page {number}")
        return page

    def _header(self, page: bytes) -> tuple[int, int, int, int]:
        """(next page, entries, hf_offset, type)."""
        next_page, entries, offset = struct.unpack_from(self.order + "IHH", page, 16)
        return next_page, entries, offset, page[25]

    def _overflow(self, number: int, length: int) -> bytes:
        if not 0 < length <= MAX_BLOB or length > self.pages * (self.page_size - PAGE_HEADER):
            raise RpmError(f"bad overflow item length {length}")
        parts: list[bytes] = []
        left = length
        seen: set[int] = set()
        while left > 0:
            if number in seen:
                raise RpmError("a loop of overflow pages")
            seen.add(number)
            page = self._page(number)
            next_page, _, used, kind = self._header(page)
            if kind != P_OVERFLOW or not 0 < used <= min(left, self.page_size - PAGE_HEADER):
                raise RpmError(f"page {number} is not the overflow page its chain needs")
            parts.append(page[PAGE_HEADER:PAGE_HEADER + used])
            left -= used
            number = next_page
        return b"".join(parts)

    def _item(self, page: bytes, offset: int, length: int) -> bytes:
        kind = page[offset]
        if kind == H_KEYDATA:
            return page[offset + 1:offset + length]
        if kind == H_OFFPAGE and length == 12:
            number, total = struct.unpack_from(self.order + "II", page, offset + 4)
            return self._overflow(number, total)
        raise RpmError(f"hash item of type {kind} is not read (rpm writes plain and overflow items)")

    def _pairs(self, page: bytes) -> Iterator[tuple[bytes, bytes]]:
        _, entries, _, _ = self._header(page)
        if entries % 2 or PAGE_HEADER + 2 * entries > self.page_size:
            raise RpmError(f"bad entry count {entries}")
        offsets = struct.unpack_from(f"{self.order}{entries}H", page, PAGE_HEADER)
        low = PAGE_HEADER + 2 * entries
        for index in range(0, entries, 2):
            key_at, data_at = offsets[index], offsets[index + 1]
            key_end = self.page_size if index == 0 else offsets[index - 1]
            if not low <= data_at < key_at < key_end <= self.page_size:
                raise RpmError("hash item offsets out of order or outside the page")
            yield self._item(page, key_at, key_end - key_at), self._item(page, data_at, key_at - data_at)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key/data pair, bucket by bucket."""
        seen: set[int] = set()
        for bucket in range(self.max_bucket + 1):
            number = bucket + self.spares[min(bucket.bit_length(), 31)]
            while number:
                if number in seen:
                    raise RpmError(f"page {number} reached twice")
                seen.add(number)
                page = self._page(number)
                next_page, _, _, kind = self._header(page)
                if kind not in (P_HASH, P_HASH_UNSORTED):
                    raise RpmError(f"bucket page {number} is of type {kind}, not a hash page")
                yield from self._pairs(page)
                number = next_page


def bdb_headers(data: bytes, limit: int) -> list[bytes]:
    """The header blobs of an rpm ``Packages`` file, in header-number order (at most ``limit``)."""
    database = HashFile(data)
    found: list[tuple[int, bytes]] = []
    for key, value in database.items():
        if len(key) != 4:
            raise RpmError(f"a key of {len(key)} bytes (rpm's are 4)")
        number, = struct.unpack(database.order + "I", key)
        if number == 0:
            continue  # the legacy record counting header numbers
        found.append((number, value))
        if len(found) > limit:
            raise TooManyPackages(limit)
    return [blob for _, blob in sorted(found)]
