"""Random-access block devices: a raw file, a slice of another device, a linear concatenation."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from .errors import unsupported


class BlockDevice(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; shorter only at the end of the device."""

    def close(self) -> None: ...


class RawFileDevice:
    """A raw image file, read with pread."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise unsupported("negative read requested", offset=offset, length=length)
        if offset >= self.size:
            return b""
        length = min(length, self.size - offset)
        chunks = []
        while length > 0:
            data = os.pread(self._fd, length, offset)
            if not data:
                break
            chunks.append(data)
            offset += len(data)
            length -= len(data)
        return b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class CachedDevice:
    """An LRU block cache in front of a slow device (an NBD export)."""

    def __init__(self, inner: BlockDevice, block_size: int = 256 * 1024, max_blocks: int = 256) -> None:
        self._inner = inner
        self.size = inner.size
        self._block = block_size
        self._max = max_blocks
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def _get(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
            return data
        data = self._inner.read(index * self._block, self._block)
        self._cache[index] = data
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        if length > self._block * 4:  # big sequential reads bypass the cache
            return self._inner.read(offset, length)
        out = bytearray()
        end = offset + length
        while offset < end:
            index, within = divmod(offset, self._block)
            block = self._get(index)
            piece = block[within:within + (end - offset)]
            if not piece:
                break
            out += piece
            offset += len(piece)
        return bytes(out)

    def close(self) -> None:
        self._cache.clear()
        self._inner.close()


class SliceDevice:
    """``length`` bytes of ``inner`` starting at ``start`` (a partition)."""

    def __init__(self, inner: BlockDevice, start: int, length: int) -> None:
        if start < 0 or length < 0 or start + length > inner.size:
            raise unsupported("region lies outside the disk", start=start, length=length,
                              disk_size=inner.size)
        self._inner = inner
        self.start = start
        self.size = length

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        return self._inner.read(self.start + offset, min(length, self.size - offset))

    def close(self) -> None:  # the inner device belongs to somebody else
        pass


@dataclass(frozen=True)
class Extent:
    """``length`` bytes of the mapped device at ``logical`` come from ``device`` at ``physical``."""

    logical: int
    length: int
    device: BlockDevice
    physical: int


class LinearDevice:
    """A device made of consecutive extents of other devices (an LVM linear volume)."""

    def __init__(self, extents: list[Extent]) -> None:
        position = 0
        for extent in extents:
            if extent.logical != position or extent.length <= 0:
                raise unsupported("logical volume segments are not contiguous", at=position)
            if extent.physical < 0 or extent.physical + extent.length > extent.device.size:
                raise unsupported("logical volume segment lies outside its physical volume",
                                  physical=extent.physical, length=extent.length)
            position += extent.length
        self._extents = extents
        self.size = position

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        end = min(self.size, offset + length)
        out = bytearray()
        for extent in self._extents:
            lo = max(offset, extent.logical)
            hi = min(end, extent.logical + extent.length)
            if lo >= hi:
                continue
            out += extent.device.read(extent.physical + (lo - extent.logical), hi - lo)
        return bytes(out)

    def contiguous_offset(self) -> tuple[BlockDevice, int] | None:
        """(device, offset) when the whole volume is one run on one device."""
        if len(self._extents) == 1:
            return self._extents[0].device, self._extents[0].physical
        return None

    def close(self) -> None:
        pass
