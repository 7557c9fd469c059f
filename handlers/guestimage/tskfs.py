"""One filesystem read through pytsk3, over any BlockDevice. Paths here never follow symlinks:
``GuestView`` resolves them across all mounted filesystems.

Lookups walk directories by inode (not TSK's path lookup), so names that are not valid UTF-8
work, deleted names are never found, and FAT/NTFS names match case-insensitively.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import PurePosixPath

import pytsk3

from handlers.tree import FileInfo, FileType

from .blockdev import BlockDevice
from .errors import unsupported
from .fsentry import FsEntry

READ_CHUNK = 4 * 1024 * 1024
MAX_DIR_ENTRIES = 1_000_000
_META_TYPES: dict[int, FileType] = {
    int(pytsk3.TSK_FS_META_TYPE_REG): "file",
    int(pytsk3.TSK_FS_META_TYPE_DIR): "dir",
    int(pytsk3.TSK_FS_META_TYPE_LNK): "symlink",
}
_UNALLOC_NAME = int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC)
_UNALLOC_META = int(pytsk3.TSK_FS_META_FLAG_UNALLOC)
_HIDDEN_ANYWHERE = {b".", b"..", b"$OrphanFiles"}


class _DeviceImg(pytsk3.Img_Info):
    """Lets TSK read through our block device."""

    def __init__(self, dev: BlockDevice) -> None:
        self._dev = dev
        super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

    def close(self) -> None:
        pass

    def read(self, offset: int, size: int) -> bytes:
        return self._dev.read(offset, size)

    def get_size(self) -> int:
        return self._dev.size


class TskFilesystem:
    """Raw lookups on canonical (symlink-free) paths of one filesystem."""

    def __init__(self, dev: BlockDevice, fstype: str, device_name: str) -> None:
        self.device_name = device_name
        self.fstype = fstype
        self._img = _DeviceImg(dev)
        try:
            self._fs = pytsk3.FS_Info(self._img, offset=0)
        except OSError as exc:
            raise unsupported(f"{fstype} filesystem on {device_name} cannot be opened: {exc}",
                              device=device_name, type=fstype) from exc
        self._root_inode = int(self._fs.info.root_inum)
        self._entries: OrderedDict[str, FsEntry | None] = OrderedDict()
        self._dirs: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._casefold = fstype in ("vfat", "ntfs")

    # -- low level ----------------------------------------------------------------------------------------
    def _fail(self, what: str, exc: Exception) -> Exception:
        return unsupported(f"cannot {what} on {self.device_name}: {exc}", device=self.device_name, type=self.fstype)

    def _open_inode(self, inode: int):  # noqa: ANN202 - pytsk3 has no types
        try:
            return self._fs.open_meta(inode=inode)
        except OSError:
            return None

    def _read(self, handle, offset: int, length: int) -> bytes:  # noqa: ANN001
        try:
            return handle.read_random(offset, length)
        except OSError as exc:
            raise self._fail("read a file", exc) from exc

    def _directory(self, inode: int, is_root: bool) -> dict[str, int]:
        """name -> inode of the live entries of a directory (cached)."""
        cached = self._dirs.get(inode)
        if cached is not None:
            self._dirs.move_to_end(inode)
            return cached
        handle = self._open_inode(inode)
        names: dict[str, int] = {}
        if handle is not None:
            try:
                for child in handle.as_directory():
                    name = child.info.name
                    raw = name.name
                    if raw in _HIDDEN_ANYWHERE or int(name.flags) & _UNALLOC_NAME:
                        continue
                    if self._casefold and is_root and raw.startswith(b"$"):
                        continue  # NTFS metadata files and TSK's FAT pseudo-files
                    if self.fstype == "vfat" and raw.endswith(b"(Volume Label Entry)"):
                        continue
                    names.setdefault(raw.decode("utf-8", errors="surrogateescape"), int(name.meta_addr))
                    if len(names) > MAX_DIR_ENTRIES:
                        raise unsupported("a directory has too many entries", device=self.device_name)
            except OSError as exc:
                raise self._fail("list a directory", exc) from exc
        self._dirs[inode] = names
        if len(self._dirs) > 512:
            self._dirs.popitem(last=False)
        return names

    def _make_entry(self, inode: int) -> FsEntry | None:
        handle = self._open_inode(inode)
        if handle is None or handle.info.meta is None:
            return None
        meta = handle.info.meta
        if int(meta.flags) & _UNALLOC_META:
            return None
        kind: FileType = _META_TYPES.get(int(meta.type), "other")
        mtime = float(meta.mtime) + float(meta.mtime_nano or 0) / 1e9
        owned = self.fstype not in ("vfat", "ntfs")  # no POSIX owners there: report root
        info = FileInfo(kind, int(meta.size), int(meta.mode) & 0o7777, int(meta.uid) if owned else 0,
                        int(meta.gid) if owned else 0, mtime)
        link = None
        if kind == "symlink":
            raw = meta.link if meta.link else self._read(handle, 0, min(int(meta.size), 65536))
            link = raw.split(b"\0", 1)[0].decode("utf-8", errors="surrogateescape")
        return FsEntry(info, inode, link)

    # -- lookups --------------------------------------------------------------------------------------------
    def entry(self, path: str) -> FsEntry | None:
        """The entry at a canonical path (no symlink in it is followed); None if absent."""
        if path in self._entries:
            self._entries.move_to_end(path)
            return self._entries[path]
        if path in ("/", ""):
            result = self._make_entry(self._root_inode)
        else:
            pure = PurePosixPath(path)
            parent = self.entry(str(pure.parent))
            result = None
            if parent is not None and parent.info.type == "dir":
                names = self._directory(parent.inode, str(pure.parent) == "/")
                inode = names.get(pure.name)
                if inode is None and self._casefold:
                    wanted = pure.name.casefold()
                    inode = next((i for n, i in names.items() if n.casefold() == wanted), None)
                if inode is not None:
                    result = self._make_entry(inode)
        self._entries[path] = result
        if len(self._entries) > 8192:
            self._entries.popitem(last=False)
        return result

    def read(self, path: str, limit: int | None) -> bytes | None:
        entry = self.entry(path)
        if entry is None or entry.info.type != "file":
            return None
        handle = self._open_inode(entry.inode)
        if handle is None:
            return None
        size = entry.info.size if limit is None else min(limit, entry.info.size)
        out = bytearray()
        while len(out) < size:
            chunk = self._read(handle, len(out), min(READ_CHUNK, size - len(out)))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def listdir(self, path: str) -> list[str] | None:
        entry = self.entry(path)
        if entry is None or entry.info.type != "dir":
            return None
        return sorted(self._directory(entry.inode, path == "/"))

    def volume_label(self) -> str | None:
        """The NTFS volume name (the $Volume file's $VOLUME_NAME attribute); None elsewhere."""
        if self.fstype != "ntfs":
            return None
        try:
            volume = self._fs.open_meta(inode=3)
            for attr in volume:
                if int(attr.info.type) == 0x60:
                    raw = volume.read_random(0, min(int(attr.info.size), 512), attr.info.type, attr.info.id)
                    return raw.decode("utf-16-le", errors="replace") or None
        except OSError:
            return None
        return None
