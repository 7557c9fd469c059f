"""btrfs read through its on-disk format, over any BlockDevice: no mount, no root, read-only.

Ours because the only complete in-process reader (dissect.btrfs) is AGPL-3.0, and ``btrfs restore``
cannot read a filesystem at an offset in a disk image. What is read (the kernel's
``fs/btrfs/accessors.h`` and ``uapi/linux/btrfs_tree.h`` name every field used here):

- the superblock (the newest of the primary and its mirrors whose checksum holds), its system chunk
  array and the chunk tree: logical to physical addresses for the SINGLE, DUP and RAID1 profiles (a
  copy on this device; a metadata block whose checksum fails is read from the other copy);
- the root tree: subvolumes (ROOT_ITEM), their names and parents (ROOT_REF), the default subvolume;
- in a subvolume's tree: inodes, directory entries (DIR_INDEX), and file extents: inline and
  regular, holes and preallocated ranges read as zeros, compressed with zlib, LZO or zstd.

Every metadata block's checksum (crc32c) is verified, and its address, owner level and item bounds
checked; a bad one is an error naming the block. Trees are walked within a depth and block budget,
so a loop ends. Inodes passed to the shared path walker are ``tree << 64 | objectid``: a directory
entry that is a subvolume leads into that subvolume's tree, as the kernel shows it.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import google_crc32c
import zstandard

from handlers.tree import FileInfo, FileType

from .blockdev import BlockDevice
from .errors import unsupported
from .fsentry import MAX_DIR_ENTRIES, Filesystem, FsEntry
from .lzo import LzoError, decompress_btrfs

MAGIC = b"_BHRfS_M"
SUPERBLOCK_OFFSETS = (0x10000, 0x4000000, 0x4000000000)
SUPERBLOCK_SIZE = 4096
HEADER_SIZE = 101
KEY_SIZE = 17
ITEM_SIZE = KEY_SIZE + 8
KEY_PTR_SIZE = KEY_SIZE + 16
MAX_LEVEL = 8
#: tree blocks one walk may read: a loop in a tree, or a huge one, ends here
MAX_WALK_BLOCKS = 200_000
#: an extent's uncompressed size at most (the kernel's BTRFS_MAX_UNCOMPRESSED)
MAX_UNCOMPRESSED = 128 * 1024
_CACHED_BLOCKS = 2048

ROOT_TREE, CHUNK_TREE, FS_TREE = 1, 3, 5
ROOT_TREE_DIR = 6
FIRST_FREE = 256
FIRST_CHUNK_TREE = 256
INODE_ITEM, INODE_REF, XATTR_ITEM, DIR_ITEM, DIR_INDEX, EXTENT_DATA = 1, 12, 24, 84, 96, 108
ROOT_ITEM, ROOT_BACKREF, ROOT_REF, CHUNK_ITEM = 132, 144, 156, 228
_LAST = 0xFFFF_FFFF_FFFF_FFFF
_DUP, _RAID1, _RAID1C3, _RAID1C4 = 1 << 5, 1 << 4, 1 << 9, 1 << 10
_MIRRORED = _DUP | _RAID1 | _RAID1C3 | _RAID1C4
_STRIPED = (1 << 3) | (1 << 6) | (1 << 7) | (1 << 8)  # RAID0, RAID10, RAID5, RAID6
_METADATA_UUID = 1 << 10  # incompat: the blocks carry metadata_uuid, not fsid
_COMPRESSION = {0: "none", 1: "zlib", 2: "lzo", 3: "zstd"}

Key = tuple[int, int, int]
T = TypeVar("T")


class BtrfsError(ValueError):
    """Something in the filesystem does not hold together (the message names where)."""


@dataclass(frozen=True)
class Superblock:
    fsid: bytes
    metadata_uuid: bytes
    generation: int
    root: int
    chunk_root: int
    total_bytes: int
    sector_size: int
    node_size: int
    sys_chunks: bytes
    root_level: int
    chunk_root_level: int
    devid: int
    label: str | None

    @classmethod
    def parse(cls, raw: bytes) -> Superblock:
        if len(raw) < SUPERBLOCK_SIZE or raw[0x40:0x48] != MAGIC:
            raise BtrfsError("no btrfs superblock")
        csum_type, = struct.unpack_from("<H", raw, 0xC4)
        if csum_type != 0:
            raise BtrfsError(f"checksum type {csum_type} (only crc32c is read)")
        if google_crc32c.value(raw[0x20:SUPERBLOCK_SIZE]).to_bytes(4, "little") != raw[:4]:
            raise BtrfsError("the superblock's checksum does not match")
        generation, root, chunk_root = struct.unpack_from("<QQQ", raw, 0x48)
        total_bytes, = struct.unpack_from("<Q", raw, 0x70)
        sector_size, node_size = struct.unpack_from("<II", raw, 0x90)
        sys_size, = struct.unpack_from("<I", raw, 0xA0)
        incompat, = struct.unpack_from("<Q", raw, 0xBC)
        root_level, chunk_root_level = raw[0xC6], raw[0xC7]
        devid, = struct.unpack_from("<Q", raw, 0xC9)
        sizes = (4096, 8192, 16384, 32768, 65536)
        if sector_size not in sizes or node_size not in sizes:
            raise BtrfsError(f"sector size {sector_size} or node size {node_size} is not one btrfs uses")
        if sys_size > 2048:
            raise BtrfsError(f"system chunk array of {sys_size} bytes")
        label = raw[0x12B:0x22B].split(b"\0", 1)[0].decode("utf-8", errors="replace") or None
        fsid = raw[0x20:0x30]
        return cls(fsid, raw[0x23B:0x24B] if incompat & _METADATA_UUID else fsid, generation, root, chunk_root,
                   total_bytes, sector_size, node_size, raw[0x32B:0x32B + sys_size], root_level, chunk_root_level,
                   devid, label)


@dataclass(frozen=True)
class Chunk:
    logical: int
    length: int
    flags: int
    #: physical offsets on this device of each copy
    copies: tuple[int, ...]


@dataclass
class Node:
    level: int
    keys: list[Key]
    #: leaves: each item's data; nodes: each child's logical address
    values: list[bytes] | list[int]


def _key(raw: bytes, at: int) -> Key:
    objectid, kind, offset = struct.unpack_from("<QBQ", raw, at)
    return objectid, kind, offset


def _chunk(key: Key, raw: bytes, at: int, end: int, devid: int) -> tuple[Chunk, int]:
    if at + 48 > end:
        raise BtrfsError("a chunk item is cut short")
    length, _owner, _stripe_len, flags = struct.unpack_from("<QQQQ", raw, at)
    stripes, _sub = struct.unpack_from("<HH", raw, at + 44)
    size = 48 + 32 * stripes
    if stripes == 0 or at + size > end:
        raise BtrfsError(f"chunk at logical {key[2]} has {stripes} stripes that do not fit its item")
    copies = []
    for n in range(stripes):
        stripe_dev, offset = struct.unpack_from("<QQ", raw, at + 48 + 32 * n)
        if stripe_dev == devid:
            copies.append(offset)
    if flags & _STRIPED and stripes > 1:
        raise BtrfsError(f"chunk at logical {key[2]} is striped over {stripes} devices (RAID0/10/5/6)")
    if not flags & _MIRRORED:
        copies = copies[:1]
    return Chunk(key[2], length, flags, tuple(copies)), size


class BtrfsVolume:
    """One btrfs filesystem on a device: its superblock, chunk map and trees."""

    def __init__(self, dev: BlockDevice, device_name: str) -> None:
        self.dev = dev
        self.device_name = device_name
        self.sb = self._superblock()
        self._chunks: list[Chunk] = []
        self._blocks: OrderedDict[int, Node] = OrderedDict()
        at = 0
        while at < len(self.sb.sys_chunks):
            if at + KEY_SIZE > len(self.sb.sys_chunks):
                raise BtrfsError("the system chunk array is cut short")
            key = _key(self.sb.sys_chunks, at)
            chunk, size = _chunk(key, self.sb.sys_chunks, at + KEY_SIZE, len(self.sb.sys_chunks), self.sb.devid)
            self._chunks.append(chunk)
            at += KEY_SIZE + size
        for key, data in self.items(self.sb.chunk_root, self.sb.chunk_root_level, (FIRST_CHUNK_TREE, CHUNK_ITEM, 0),
                                    (FIRST_CHUNK_TREE, CHUNK_ITEM, _LAST)):
            chunk, _ = _chunk(key, data, 0, len(data), self.sb.devid)
            if not any(c.logical == chunk.logical for c in self._chunks):
                self._chunks.append(chunk)
        self._roots: dict[int, tuple[int, int]] = {}
        self._default: int | None = None
        self._paths: dict[int, str] | None = None

    def _superblock(self) -> Superblock:
        best: Superblock | None = None
        problems = []
        for offset in SUPERBLOCK_OFFSETS:
            if offset + SUPERBLOCK_SIZE > self.dev.size:
                break
            try:
                found = Superblock.parse(self.dev.read(offset, SUPERBLOCK_SIZE))
            except BtrfsError as exc:
                problems.append(f"at byte {offset}: {exc}")
                continue
            if best is None or found.generation > best.generation:
                best = found
        if best is None:
            raise BtrfsError("; ".join(problems) or "no btrfs superblock")
        return best

    # -- addresses and blocks -----------------------------------------------------------------
    def physical(self, logical: int, length: int) -> tuple[int, ...]:
        """The physical offsets of each copy of ``length`` bytes at ``logical`` (within one chunk)."""
        for chunk in self._chunks:
            if chunk.logical <= logical and logical + length <= chunk.logical + chunk.length:
                if not chunk.copies:
                    raise BtrfsError(f"logical {logical} lies in a chunk on another device")
                return tuple(copy + logical - chunk.logical for copy in chunk.copies)
        raise BtrfsError(f"logical address {logical} is in no chunk")

    def read_logical(self, logical: int, length: int) -> bytes:
        """Data bytes at a logical address (a range may span chunks)."""
        out = bytearray()
        while len(out) < length:
            at = logical + len(out)
            chunk = next((c for c in self._chunks if c.logical <= at < c.logical + c.length), None)
            if chunk is None or not chunk.copies:
                raise BtrfsError(f"logical address {at} is in no chunk on this device")
            piece = min(length - len(out), chunk.logical + chunk.length - at)
            data = self.dev.read(chunk.copies[0] + at - chunk.logical, piece)
            if len(data) < piece:
                raise BtrfsError(f"logical address {at} is past the end of the device")
            out += data
        return bytes(out)

    def node(self, logical: int, level: int | None = None) -> Node:
        cached = self._blocks.get(logical)
        if cached is None:
            cached = self._read_node(logical)
            self._blocks[logical] = cached
            if len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(logical)
        if level is not None and cached.level != level:
            raise BtrfsError(f"tree block at logical {logical} has level {cached.level}, not {level}")
        return cached

    def _read_node(self, logical: int) -> Node:
        size = self.sb.node_size
        problem = ""
        for physical in self.physical(logical, size):
            raw = self.dev.read(physical, size)
            if len(raw) < size:
                problem = f"tree block at logical {logical} (byte {physical}) is past the end of the device"
            elif google_crc32c.value(raw[32:]).to_bytes(4, "little") != raw[:4]:
                problem = f"tree block at logical {logical} (byte {physical}) fails its checksum"
            elif struct.unpack_from("<Q", raw, 48)[0] != logical or raw[32:48] != self.sb.metadata_uuid:
                problem = f"tree block at logical {logical} (byte {physical}) belongs elsewhere"
            else:
                return self._parse_node(raw, logical)
        raise BtrfsError(problem)

    def _parse_node(self, raw: bytes, logical: int) -> Node:
        count, = struct.unpack_from("<I", raw, 96)
        level = raw[100]
        if level > MAX_LEVEL:
            raise BtrfsError(f"tree block at logical {logical} has level {level}")
        keys: list[Key] = []
        if level:
            if HEADER_SIZE + count * KEY_PTR_SIZE > len(raw):
                raise BtrfsError(f"tree block at logical {logical} claims {count} pointers")
            children = []
            for n in range(count):
                at = HEADER_SIZE + n * KEY_PTR_SIZE
                keys.append(_key(raw, at))
                children.append(struct.unpack_from("<Q", raw, at + KEY_SIZE)[0])
            return Node(level, keys, children)
        if HEADER_SIZE + count * ITEM_SIZE > len(raw):
            raise BtrfsError(f"tree block at logical {logical} claims {count} items")
        values = []
        for n in range(count):
            at = HEADER_SIZE + n * ITEM_SIZE
            keys.append(_key(raw, at))
            offset, size = struct.unpack_from("<II", raw, at + KEY_SIZE)
            start = HEADER_SIZE + offset
            if start < HEADER_SIZE + count * ITEM_SIZE or start + size > len(raw):
                raise BtrfsError(f"item {n} of tree block at logical {logical} lies outside it")
            values.append(raw[start:start + size])
        return Node(level, keys, values)

    # -- trees ----------------------------------------------------------------------------------
    def items(self, root: int, level: int, low: Key, high: Key) -> Iterator[tuple[Key, bytes]]:
        """Every item of the tree at ``root`` whose key lies in [low, high], in key order."""
        budget = [MAX_WALK_BLOCKS]

        def walk(logical: int, expected: int) -> Iterator[tuple[Key, bytes]]:
            budget[0] -= 1
            if budget[0] < 0:
                raise BtrfsError(f"a walk of the tree at logical {root} reads more than {MAX_WALK_BLOCKS} blocks")
            node = self.node(logical, expected)
            if node.level == 0:
                for key, value in zip(node.keys, node.values, strict=True):
                    if low <= key <= high:
                        yield key, value  # type: ignore[misc]
                    elif key > high:
                        return
                return
            for n, key in enumerate(node.keys):
                upper = node.keys[n + 1] if n + 1 < len(node.keys) else None
                if upper is not None and upper <= low:
                    continue  # the next child starts at or before ``low``: this one ends before it
                if key > high:
                    return
                yield from walk(node.values[n], node.level - 1)  # type: ignore[arg-type]

        if level > MAX_LEVEL:
            raise BtrfsError(f"tree at logical {root} has level {level}")
        yield from walk(root, level)

    def first(self, root: int, level: int, low: Key, high: Key) -> tuple[Key, bytes] | None:
        return next(self.items(root, level, low, high), None)

    def tree_root(self, tree: int) -> tuple[int, int]:
        """The logical address and level of subvolume (or other tree) ``tree``'s root block."""
        found = self._roots.get(tree)
        if found is None:
            item = self.first(self.sb.root, self.sb.root_level, (tree, ROOT_ITEM, 0), (tree, ROOT_ITEM, _LAST))
            if item is None or len(item[1]) < 239:
                raise BtrfsError(f"no tree {tree} in the root tree")
            bytenr, = struct.unpack_from("<Q", item[1], 176)
            found = (bytenr, item[1][238])
            self._roots[tree] = found
        return found

    def default_subvolume(self) -> int:
        """The subvolume mounted when no ``subvol=`` is given (``btrfs subvolume set-default``)."""
        if self._default is None:
            self._default = self._read_default()
        return self._default

    def _read_default(self) -> int:
        for _, data in self.items(self.sb.root, self.sb.root_level, (ROOT_TREE_DIR, DIR_ITEM, 0),
                                      (ROOT_TREE_DIR, DIR_ITEM, _LAST)):
            for location, _kind, name in _dir_entries(data):
                if name == b"default" and location[1] == ROOT_ITEM:
                    return location[0]
        return FS_TREE

    def subvolumes(self) -> dict[int, tuple[int, str]]:
        """Subvolume id -> (parent id, name in its parent) of every subvolume but the top level."""
        found: dict[int, tuple[int, str]] = {}
        for key, data in self.items(self.sb.root, self.sb.root_level, (0, ROOT_REF, 0), (_LAST, ROOT_REF, _LAST)):
            if key[1] != ROOT_REF or len(data) < 18:
                continue
            dirid, = struct.unpack_from("<Q", data, 0)
            length, = struct.unpack_from("<H", data, 16)
            name = data[18:18 + length].decode("utf-8", errors="surrogateescape")
            where = self._directory_path(key[0], dirid)
            found[key[2]] = (key[0], f"{where}/{name}" if where else name)
        return found

    def _directory_path(self, tree: int, inode: int) -> str:
        """The path of directory ``inode`` from the top of subvolume ``tree`` (its INODE_REF chain)."""
        parts: list[str] = []
        root, level = self.tree_root(tree)
        for _ in range(256):
            if inode == FIRST_FREE:
                return "/".join(reversed(parts))
            item = self.first(root, level, (inode, INODE_REF, 0), (inode, INODE_REF, _LAST))
            if item is None or len(item[1]) < 10:
                break
            length, = struct.unpack_from("<H", item[1], 8)
            parts.append(item[1][10:10 + length].decode("utf-8", errors="surrogateescape"))
            inode = item[0][2]
        raise BtrfsError(f"directory {inode} of subvolume {tree} has no path to its top")

    def subvolume_paths(self) -> dict[int, str]:
        """Subvolume id -> its path from the top level (``@/home``), as ``subvol=`` names it (read once:
        the filesystem is read-only here)."""
        if self._paths is None:
            self._paths = self._read_paths()
        return self._paths

    def _read_paths(self) -> dict[int, str]:
        refs = self.subvolumes()
        paths: dict[int, str] = {FS_TREE: ""}

        def path(tree: int, depth: int = 0) -> str | None:
            if tree in paths:
                return paths[tree]
            if tree not in refs or depth > 256:
                return None
            parent, name = refs[tree]
            above = path(parent, depth + 1)
            if above is None:
                return None
            paths[tree] = f"{above}/{name}".lstrip("/") if above else name
            return paths[tree]

        for tree in refs:
            path(tree)
        return paths


def _dir_entries(data: bytes) -> Iterator[tuple[Key, int, bytes]]:
    """(location key, file type, name) of each entry packed in a DIR_ITEM or DIR_INDEX item."""
    at = 0
    while at + 30 <= len(data):
        location = _key(data, at)
        data_len, name_len, kind = struct.unpack_from("<HHB", data, at + 25)
        end = at + 30 + name_len + data_len
        if end > len(data):
            raise BtrfsError("a directory entry does not fit its item")
        yield location, kind, data[at + 30:at + 30 + name_len]
        at = end


_FILE_TYPES: dict[int, FileType] = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink"}


class BtrfsFilesystem(Filesystem):
    """One subvolume of a btrfs filesystem, as the shared path walker wants it."""

    def __init__(self, volume: BtrfsVolume, subvolume: int, device_name: str) -> None:
        self.volume = volume
        self.subvolume = subvolume
        try:
            volume.tree_root(subvolume)
        except BtrfsError as exc:
            raise unsupported(f"cannot open subvolume {subvolume} on {device_name}: {exc}", device=device_name,
                              type="btrfs") from exc
        super().__init__(device_name, "btrfs", subvolume << 64 | FIRST_FREE)

    def volume_label(self) -> str | None:
        return self.volume.sb.label

    def _items(self, inode: int, kind: int, low: int = 0, high: int = _LAST) -> Iterator[tuple[Key, bytes]]:
        tree, objectid = inode >> 64, inode & _LAST
        root, level = self.volume.tree_root(tree)
        yield from self.volume.items(root, level, (objectid, kind, low), (objectid, kind, high))

    def _guarded(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except (BtrfsError, struct.error, zlib.error, zstandard.ZstdError, LzoError) as exc:
            raise self._fail(what, exc) from exc

    def _make_entry(self, inode: int) -> FsEntry | None:
        return self._guarded(f"read inode {inode & _LAST} of subvolume {inode >> 64}", lambda: self._entry(inode))

    def _entry(self, inode: int) -> FsEntry | None:
        item = next(self._items(inode, INODE_ITEM, 0, 0), None)
        if item is None or len(item[1]) < 160:
            return None
        data = item[1]
        size, = struct.unpack_from("<Q", data, 16)
        uid, gid, mode = struct.unpack_from("<III", data, 44)
        mtime_s, mtime_ns = struct.unpack_from("<QI", data, 136)
        kind = _FILE_TYPES.get(mode & 0o170000, "other")
        info = FileInfo(kind, size, mode & 0o7777, uid, gid, mtime_s + mtime_ns / 1e9)
        link = None
        if kind == "symlink":
            link = self._read(inode, 0, min(size, 4096)).decode("utf-8", errors="surrogateescape")
        return FsEntry(info, inode, link)

    def _list(self, inode: int, is_root: bool) -> dict[str, int]:
        return self._guarded(f"list directory inode {inode & _LAST}", lambda: self._listing(inode))

    def _listing(self, inode: int) -> dict[str, int]:
        tree = inode >> 64
        names: dict[str, int] = {}
        for _, data in self._items(inode, DIR_INDEX):
            for location, _kind, name in _dir_entries(data):
                if location[1] == ROOT_ITEM:  # a subvolume: its own tree, from its top directory
                    target = location[0] << 64 | FIRST_FREE
                elif location[1] == INODE_ITEM:
                    target = tree << 64 | location[0]
                else:
                    continue
                text = name.decode("utf-8", errors="surrogateescape")
                if not text or text in (".", "..") or "/" in text or "\0" in text:
                    continue  # not a name a directory can hold: it would point somewhere else in a path
                names[text] = target
                if len(names) > MAX_DIR_ENTRIES:
                    raise self._too_many()
        return names

    def _read_at(self, inode: int, offset: int, length: int) -> bytes:
        return self._guarded(f"read file inode {inode & _LAST}", lambda: self._read(inode, offset, length))

    def _read(self, inode: int, offset: int, length: int) -> bytes:
        entry_size = self._size(inode)
        end = min(offset + length, entry_size)
        out = bytearray(max(0, end - offset))  # holes (no extent, or none written yet) read as zeros
        for key, data in self._items(inode, EXTENT_DATA, 0, max(end - 1, 0)):
            start = key[2]
            piece, piece_len = self._extent(data, start)
            lo, hi = max(start, offset), min(start + piece_len, end)
            if lo < hi and piece is not None:
                out[lo - offset:hi - offset] = piece(lo - start, hi - lo)
        return bytes(out)

    def _size(self, inode: int) -> int:
        item = next(self._items(inode, INODE_ITEM, 0, 0), None)
        if item is None or len(item[1]) < 24:
            raise BtrfsError(f"inode {inode & _LAST} has no inode item")
        return struct.unpack_from("<Q", item[1], 16)[0]

    def _extent(self, data: bytes, file_offset: int) -> tuple[Callable[[int, int], bytes] | None, int]:
        """How to read ``n`` bytes at ``at`` within one file extent (None: zeros), and its length in the file."""
        if len(data) < 21:
            raise BtrfsError(f"file extent at {file_offset} is cut short")
        ram_bytes, = struct.unpack_from("<Q", data, 8)
        compression, encryption, encoding, kind = struct.unpack_from("<BBHB", data, 16)
        if encryption or encoding:
            raise BtrfsError(f"file extent at {file_offset} is encrypted or encoded")
        if compression not in _COMPRESSION:
            raise BtrfsError(f"file extent at {file_offset} uses compression {compression}")
        if kind == 0:  # inline: the data is in the item
            inline = data[21:]
            plain = self._decompress(inline, compression, ram_bytes) if compression else inline
            return (lambda at, n: plain[at:at + n]), len(plain)
        if len(data) < 53 or kind not in (1, 2):
            raise BtrfsError(f"file extent at {file_offset} is malformed")
        disk_bytenr, disk_bytes, extent_offset, num_bytes = struct.unpack_from("<QQQQ", data, 21)
        if disk_bytenr == 0 or kind == 2:  # a hole, or preallocated and never written: zeros
            return None, num_bytes
        if compression:
            if disk_bytes > MAX_UNCOMPRESSED or ram_bytes > MAX_UNCOMPRESSED:
                raise BtrfsError(f"compressed extent at {file_offset} is larger than btrfs writes")
            cache: list[bytes] = []

            def compressed(at: int, n: int) -> bytes:
                if not cache:
                    cache.append(self._decompress(self.volume.read_logical(disk_bytenr, disk_bytes), compression,
                                                  ram_bytes))
                return cache[0][extent_offset + at:extent_offset + at + n].ljust(n, b"\0")

            return compressed, num_bytes
        return (lambda at, n: self.volume.read_logical(disk_bytenr + extent_offset + at, n)), num_bytes

    def _decompress(self, raw: bytes, compression: int, ram_bytes: int) -> bytes:
        limit = min(ram_bytes, MAX_UNCOMPRESSED)
        if compression == 1:
            return zlib.decompressobj().decompress(raw, limit)
        if compression == 3:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
                return reader.read(limit)
        return decompress_btrfs(raw, limit, self.volume.sb.sector_size)
