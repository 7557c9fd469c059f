"""What a filesystem reader gives for one path, and the path walking every reader shares (pytsk3's,
libfsxfs'): directories are walked by inode, entries and directories cached."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath

from app.plugin.errors import JobError
from handlers.tree import FileInfo

from .errors import unsupported

READ_CHUNK = 4 * 1024 * 1024
MAX_DIR_ENTRIES = 1_000_000
_CACHED_ENTRIES = 8192
_CACHED_DIRECTORIES = 512


@dataclass
class FsEntry:
    info: FileInfo
    inode: int
    #: the symlink's target, for a symlink
    link: str | None


class Filesystem(ABC):
    """Raw lookups on canonical (symlink-free) paths of one filesystem. A reader says how to make
    an entry of an inode, list a directory inode and read a file inode's bytes."""

    #: names match whatever their case (FAT, NTFS)
    casefold = False

    def __init__(self, device_name: str, fstype: str, root_inode: int) -> None:
        self.device_name = device_name
        self.fstype = fstype
        self._root_inode = root_inode
        self._entries: OrderedDict[str, FsEntry | None] = OrderedDict()
        self._dirs: OrderedDict[int, dict[str, int]] = OrderedDict()

    @abstractmethod
    def _make_entry(self, inode: int) -> FsEntry | None: ...

    @abstractmethod
    def _list(self, inode: int, is_root: bool) -> dict[str, int]:
        """name -> inode of a directory's live entries (``.`` and ``..`` left out)."""

    @abstractmethod
    def _read_at(self, inode: int, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a file inode from ``offset`` (fewer at its end)."""

    def volume_label(self) -> str | None:
        return None

    def _fail(self, what: str, exc: Exception) -> JobError:
        return unsupported(f"cannot {what} on {self.device_name}: {exc}", device=self.device_name, type=self.fstype)

    def _too_many(self) -> JobError:
        return unsupported("a directory has too many entries", device=self.device_name)

    def _directory(self, inode: int, is_root: bool) -> dict[str, int]:
        cached = self._dirs.get(inode)
        if cached is not None:
            self._dirs.move_to_end(inode)
            return cached
        names = self._list(inode, is_root)
        self._dirs[inode] = names
        if len(self._dirs) > _CACHED_DIRECTORIES:
            self._dirs.popitem(last=False)
        return names

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
                if inode is None and self.casefold:
                    wanted = pure.name.casefold()
                    inode = next((i for n, i in names.items() if n.casefold() == wanted), None)
                if inode is not None:
                    result = self._make_entry(inode)
        self._entries[path] = result
        if len(self._entries) > _CACHED_ENTRIES:
            self._entries.popitem(last=False)
        return result

    def read(self, path: str, limit: int | None) -> bytes | None:
        entry = self.entry(path)
        if entry is None or entry.info.type != "file":
            return None
        size = entry.info.size if limit is None else min(limit, entry.info.size)
        out = bytearray()
        while len(out) < size:
            chunk = self._read_at(entry.inode, len(out), min(READ_CHUNK, size - len(out)))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def listdir(self, path: str) -> list[str] | None:
        entry = self.entry(path)
        if entry is None or entry.info.type != "dir":
            return None
        return sorted(self._directory(entry.inode, path == "/"))
