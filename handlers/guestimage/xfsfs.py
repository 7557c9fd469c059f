"""One XFS filesystem read through libfsxfs (``pyfsxfs``), over any BlockDevice: no mount, no root.

Paths here never follow symlinks (``GuestView`` resolves them across all mounted filesystems).
libfsxfs reads inodes, attributes and file data (extents, B-trees, holes and preallocated extents as
zeros; v4 and v5). Three gaps of the library are filled by reading the on-disk format directly:

- a directory holding a name that is not valid UTF-8 cannot be listed nor searched through the
  library (it raises on the name): its data blocks are parsed here (every form keeps its names in
  the same data blocks, whatever its index looks like);
- a v5 symlink whose target does not fit in the inode (over about 336 bytes) comes back as the
  literal ``XSLM``: its blocks are read here, past their 56-byte header;
- the library ignores the log: ``log_is_dirty`` says whether the filesystem was cleanly unmounted
  (an image of a running VM is read as it stands; recent changes may be missing).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

import pyfsxfs

from handlers.tree import FileInfo, FileType

from .blockdev import BlockDevice
from .errors import unsupported
from .fsentry import MAX_DIR_ENTRIES, Filesystem, FsEntry

#: bytes of directory data parsed here at most (a million entries of long names)
MAX_DIR_BYTES = 512 * 1024 * 1024
#: longest symlink target XFS allows (MAXPATHLEN)
MAX_LINK_BYTES = 1024
_DATA_MAGICS = (b"XD2B", b"XD2D", b"XDB3", b"XDD3")
_SINGLE_BLOCK = (b"XD2B", b"XDB3")
_LOG_MAGIC = 0xFEEDBABE
_UNMOUNT_TRANS = 0x20
_HOLE = 1


class _DeviceFile:
    """The file object libfsxfs reads through: it calls get_size, seek, get_offset and read."""

    def __init__(self, dev: BlockDevice) -> None:
        self._dev = dev
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        remaining = max(0, self._dev.size - self._pos)
        size = remaining if size is None or size < 0 else min(size, remaining)
        data = self._dev.read(self._pos, size) if size else b""
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._dev.size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    get_offset = tell

    def get_size(self) -> int:
        return self._dev.size


@dataclass(frozen=True)
class Superblock:
    """The fields of the primary superblock this module needs."""

    block_size: int
    ag_blocks: int
    ag_block_log: int
    inode_size: int
    inodes_per_block_log: int
    dir_block_size: int
    log_start: int
    log_blocks: int
    root_inode: int
    v5: bool
    ftype: bool
    label: str | None

    @classmethod
    def parse(cls, raw: bytes) -> Superblock:
        if len(raw) < 512 or raw[:4] != b"XFSB":
            raise ValueError("no XFS superblock")
        block_size, = struct.unpack_from(">I", raw, 4)
        log_start, root_inode = struct.unpack_from(">QQ", raw, 48)
        ag_blocks, = struct.unpack_from(">I", raw, 84)
        log_blocks, = struct.unpack_from(">I", raw, 96)
        version, _sector, inode_size = struct.unpack_from(">HHH", raw, 100)
        features2, = struct.unpack_from(">I", raw, 200)
        incompat, = struct.unpack_from(">I", raw, 216)
        v5 = version & 0xF == 5
        ftype = bool(incompat & 0x1) if v5 else bool(version & 0x8000 and features2 & 0x200)
        if not 512 <= block_size <= 65536 or not 256 <= inode_size <= 2048 or ag_blocks == 0:
            raise ValueError("implausible XFS superblock")
        label = raw[108:120].split(b"\0", 1)[0].decode("utf-8", "replace") or None
        return cls(block_size, ag_blocks, raw[124], inode_size, raw[123], block_size << raw[192], log_start,
                   log_blocks, root_inode, v5, ftype, label)

    def block_offset(self, fsblock: int) -> int:
        ag, block = fsblock >> self.ag_block_log, fsblock & ((1 << self.ag_block_log) - 1)
        return (ag * self.ag_blocks + block) * self.block_size

    def inode_offset(self, inode: int) -> int:
        block = inode >> self.inodes_per_block_log
        index = inode & ((1 << self.inodes_per_block_log) - 1)
        return self.block_offset(block) + index * self.inode_size


class XfsFilesystem(Filesystem):
    """XFS (v4 and v5) through libfsxfs."""

    def __init__(self, dev: BlockDevice, fstype: str, device_name: str) -> None:
        self._dev = dev
        try:
            self._sb = Superblock.parse(dev.read(0, 512))
            self._file = _DeviceFile(dev)  # referenced while the volume is open
            self._volume = pyfsxfs.volume()
            self._volume.open_file_object(self._file)
        except (OSError, ValueError) as exc:
            raise unsupported(f"xfs filesystem on {device_name} cannot be opened: {exc}",
                              device=device_name, type=fstype) from exc
        super().__init__(device_name, fstype, self._sb.root_inode)

    def _file_entry(self, inode: int) -> Any:  # noqa: ANN401 - pyfsxfs has no types
        try:
            return self._volume.get_file_entry_by_inode(inode)
        except OSError:
            return None

    def _list(self, inode: int, is_root: bool) -> dict[str, int]:
        handle = self._file_entry(inode)
        names: dict[str, int] = {}
        if handle is None:
            return names
        try:
            count = handle.number_of_sub_file_entries
            if count > MAX_DIR_ENTRIES:
                raise self._too_many()
            for index in range(count):
                child = handle.get_sub_file_entry(index)
                names[child.name] = child.inode_number
        except (OSError, UnicodeError):  # a name that is not UTF-8 (or damage): read the blocks here
            names = self._parse_directory(inode, handle)
        return names

    def _read_at(self, inode: int, offset: int, length: int) -> bytes:
        handle = self._file_entry(inode)
        if handle is None:
            return b""
        try:
            return handle.read_buffer_at_offset(length, offset)
        except OSError as exc:
            raise self._fail("read a file", exc) from exc

    def _raw_inode(self, inode: int) -> bytes:
        return self._dev.read(self._sb.inode_offset(inode), self._sb.inode_size)

    def _literal_area(self, raw: bytes) -> bytes:
        return raw[176:] if raw[4] >= 3 else raw[100:]

    def _extents(self, handle: Any) -> list[tuple[int, int]]:  # noqa: ANN401
        """(byte offset, size) of the allocated extents of an inode's data, in file order."""
        try:
            found = [handle.get_extent(i) for i in range(handle.number_of_extents)]
        except OSError as exc:
            raise self._fail("read an inode's extents", exc) from exc
        return [(offset, size) for offset, size, flags in found if not flags & _HOLE]

    def _parse_directory(self, inode: int, handle: Any) -> dict[str, int]:  # noqa: ANN401
        raw = self._raw_inode(inode)
        if raw[5] == 1:  # short form: the entries are in the inode itself
            return self._parse_short_form(self._literal_area(raw))
        names: dict[str, int] = {}
        total = 0
        size = self._sb.dir_block_size
        for offset, length in self._extents(handle):
            total += length
            if total > MAX_DIR_BYTES:
                raise unsupported("a directory is too large", device=self.device_name)
            for start in range(offset, offset + length - size + 1, size):
                self._parse_data_block(self._dev.read(start, size), names)
        return names

    def _parse_short_form(self, area: bytes) -> dict[str, int]:
        count, count8 = area[0], area[1]
        width = 8 if count8 else 4
        pos = 2 + width  # past the parent's inode number
        names: dict[str, int] = {}
        for _ in range(count or count8):
            length = area[pos]
            name = area[pos + 3:pos + 3 + length]
            pos += 3 + length + (1 if self._sb.ftype else 0)
            names[name.decode("utf-8", "surrogateescape")] = int.from_bytes(area[pos:pos + width], "big")
            pos += width
        return names

    def _parse_data_block(self, block: bytes, names: dict[str, int]) -> None:
        magic = block[:4]
        if magic not in _DATA_MAGICS:
            return  # an index block (leaf, node, free space)
        end = len(block)
        if magic in _SINGLE_BLOCK:  # the hash index and the tail share the block's end
            count, = struct.unpack_from(">I", block, end - 8)
            end -= 8 + count * 8
        pos = 64 if self._sb.v5 else 16
        extra = 1 if self._sb.ftype else 0
        while pos + 8 <= end:
            if block[pos:pos + 2] == b"\xff\xff":  # free space: its length follows
                length, = struct.unpack_from(">H", block, pos + 2)
                if length < 8:
                    return
                pos += length
                continue
            child, = struct.unpack_from(">Q", block, pos)
            name = block[pos + 9:pos + 9 + block[pos + 8]]
            pos += (9 + len(name) + extra + 2 + 7) & ~7
            if name not in (b".", b".."):
                names[name.decode("utf-8", "surrogateescape")] = child
                if len(names) > MAX_DIR_ENTRIES:
                    raise self._too_many()

    def _link_target(self, inode: int, handle: Any, size: int) -> str:  # noqa: ANN401
        try:
            target = handle.symbolic_link_target
            encoded = target.encode("utf-8") if target is not None else None
        except (OSError, UnicodeError):
            encoded = None
        if encoded is None or len(encoded) != size or encoded.startswith(b"XSLM"):
            encoded = self._read_link_blocks(inode, handle, min(size, MAX_LINK_BYTES))
        return encoded.decode("utf-8", "surrogateescape")

    def _read_link_blocks(self, inode: int, handle: Any, size: int) -> bytes:  # noqa: ANN401
        raw = self._raw_inode(inode)
        if raw[5] == 1:  # kept in the inode
            return self._literal_area(raw)[:size]
        out = b""
        for offset, length in self._extents(handle):
            for start in range(offset, offset + length, self._sb.block_size):
                block = self._dev.read(start, self._sb.block_size)
                if block[:4] == b"XSLM":  # v5: a 56-byte header, then this block's part of the target
                    count, = struct.unpack_from(">I", block, 8)
                    out += block[56:56 + count]
                else:
                    out += block[:size - len(out)]
                if len(out) >= size:
                    return out[:size]
        return out

    def _make_entry(self, inode: int) -> FsEntry | None:
        handle = self._file_entry(inode)
        if handle is None:
            return None
        try:
            mode = handle.file_mode
            kind: FileType = ("file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode)
                              else "symlink" if stat.S_ISLNK(mode) else "other")
            size = handle.size
            info = FileInfo(kind, size, mode & 0o7777, handle.owner_identifier, handle.group_identifier,
                            handle.get_modification_time_as_integer() / 1e9)  # nanoseconds
        except OSError as exc:
            raise self._fail(f"read inode {inode}", exc) from exc
        link = self._link_target(inode, handle, size) if kind == "symlink" else None
        return FsEntry(info, inode, link)

    def volume_label(self) -> str | None:
        return self._sb.label


def log_is_dirty(dev: BlockDevice) -> bool | None:
    """Whether the XFS on ``dev`` was not cleanly unmounted (its log holds changes not yet written in
    place); None when that cannot be told (an external log, an unreadable log).

    As the kernel's log recovery decides: find the log's head (the first sector whose cycle number
    is below the first sector's), then the last record header before it; the log is clean only if
    that record is a lone unmount record whose tail is the record itself.
    """
    try:
        sb = Superblock.parse(dev.read(0, 512))
    except ValueError:
        return None
    if sb.log_start == 0 or sb.log_blocks == 0:
        return None
    base = sb.block_offset(sb.log_start)
    sectors = sb.log_blocks * sb.block_size // 512

    def cycle(sector: int) -> int:
        first, second = struct.unpack(">II", dev.read(base + sector * 512, 8).ljust(8, b"\0"))
        return second if first == _LOG_MAGIC else first

    head_cycle = cycle(0)
    if head_cycle == 0:
        return None
    low, high = 0, sectors
    while low < high:
        middle = (low + high) // 2
        if cycle(middle) == head_cycle:
            low = middle + 1
        else:
            high = middle
    for sector in range(low - 1, max(-1, low - 1 - 4096), -1):
        header = dev.read(base + sector * 512, 512)
        if len(header) < 512:
            return None
        magic, record_cycle, version = struct.unpack_from(">III", header, 0)
        if magic != _LOG_MAGIC or record_cycle != head_cycle:
            continue
        lsn, tail_lsn = struct.unpack_from(">QQ", header, 16)
        operations, = struct.unpack_from(">I", header, 40)
        header_size, = struct.unpack_from(">I", header, 320) if version & 2 else (32768,)
        header_sectors = max(1, -(-header_size // 32768)) if version & 2 else 1
        first_op = dev.read(base + (sector + header_sectors) * 512, 16)
        clean = operations == 1 and len(first_op) == 16 and first_op[9] & _UNMOUNT_TRANS and tail_lsn == lsn
        return not clean
    return None
