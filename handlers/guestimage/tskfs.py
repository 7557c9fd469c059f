"""One filesystem read through pytsk3, over any BlockDevice. Paths here never follow symlinks:
``GuestView`` resolves them across all mounted filesystems.

Lookups walk directories by inode (not TSK's path lookup), so names that are not valid UTF-8
work, deleted names are never found, and FAT/NTFS names match case-insensitively.
"""

from __future__ import annotations

import pytsk3

from handlers.tree import FileInfo, FileType

from .blockdev import BlockDevice
from .errors import unsupported
from .fsentry import MAX_DIR_ENTRIES, Filesystem, FsEntry

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


class TskFilesystem(Filesystem):
    """ext2/3/4, FAT and NTFS through pytsk3."""

    def __init__(self, dev: BlockDevice, fstype: str, device_name: str) -> None:
        self._img = _DeviceImg(dev)
        try:
            self._fs = pytsk3.FS_Info(self._img, offset=0)
        except OSError as exc:
            raise unsupported(f"{fstype} filesystem on {device_name} cannot be opened: {exc}",
                              device=device_name, type=fstype) from exc
        super().__init__(device_name, fstype, int(self._fs.info.root_inum))
        self.casefold = fstype in ("vfat", "ntfs")

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

    def _read_at(self, inode: int, offset: int, length: int) -> bytes:
        handle = self._open_inode(inode)
        return b"" if handle is None else self._read(handle, offset, length)

    def _list(self, inode: int, is_root: bool) -> dict[str, int]:
        handle = self._open_inode(inode)
        names: dict[str, int] = {}
        if handle is None:
            return names
        try:
            for child in handle.as_directory():
                name = child.info.name
                raw = name.name
                if raw in _HIDDEN_ANYWHERE or int(name.flags) & _UNALLOC_NAME:
                    continue
                if self.casefold and is_root and raw.startswith(b"$"):
                    continue  # NTFS metadata files and TSK's FAT pseudo-files
                if self.fstype == "vfat" and raw.endswith(b"(Volume Label Entry)"):
                    continue
                names.setdefault(raw.decode("utf-8", errors="surrogateescape"), int(name.meta_addr))
                if len(names) > MAX_DIR_ENTRIES:
                    raise self._too_many()
        except OSError as exc:
            raise self._fail("list a directory", exc) from exc
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
