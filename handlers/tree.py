"""Read-only view of a guest's file tree, whatever it is backed by.

The OS parsers (``handlers.guestos``) read through this interface only; the image engine
(``handlers.guestimage``) provides it over a disk image, and ``DirectoryTree`` over a plain
host directory (tests, and the ground-truth trees the test images are built from).
Paths are absolute guest paths (``/etc/os-release``). Symlinks inside the guest are resolved
inside the guest, never on the host.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

FileType = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class FileInfo:
    type: FileType
    size: int
    mode: int  # permission bits only (0o777 plus setuid/setgid/sticky)
    uid: int
    gid: int
    mtime: float


class GuestTree(Protocol):
    def stat(self, path: str) -> FileInfo | None:
        """Information on ``path`` without following a final symlink; None if absent."""

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """Content of a regular file (following symlinks inside the guest); None if absent."""

    def listdir(self, path: str) -> list[str] | None:
        """Sorted entry names of a directory; None if it is absent or not a directory."""

    def readlink(self, path: str) -> str | None:
        """Target of a symlink, as stored; None if ``path`` is not a symlink."""


def read_text(tree: GuestTree, path: str, limit: int | None = 4 * 1024 * 1024) -> str | None:
    """File content decoded as UTF-8 (bad bytes replaced); None if absent."""
    raw = tree.read_bytes(path, limit)
    return None if raw is None else raw.decode("utf-8", errors="replace")


class DirectoryTree:
    """A host directory seen as a guest root. Guest symlinks are resolved against ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _host(self, path: str, follow: bool) -> Path | None:
        parts = PurePosixPath("/", path).parts[1:]
        current = PurePosixPath("/")
        hops = 0
        index = 0
        parts = list(parts)
        while index < len(parts):
            name = parts[index]
            index += 1
            if name in ("", "."):
                continue
            if name == "..":
                current = current.parent
                continue
            candidate = current / name
            host = self.root / candidate.relative_to("/")
            is_last = index == len(parts)
            if host.is_symlink() and (follow or not is_last):
                hops += 1
                if hops > 40:
                    return None
                target = os.readlink(host)
                base = PurePosixPath("/") if target.startswith("/") else current
                rest = parts[index:]
                parts = list(PurePosixPath(base, target).parts[1:]) + rest
                current = PurePosixPath("/")
                index = 0
                continue
            current = candidate
        return self.root / current.relative_to("/")

    def stat(self, path: str) -> FileInfo | None:
        host = self._host(path, follow=False)
        if host is None:
            return None
        try:
            st = host.lstat()
        except OSError:
            return None
        if stat_module.S_ISLNK(st.st_mode):
            kind: FileType = "symlink"
        elif stat_module.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat_module.S_ISREG(st.st_mode):
            kind = "file"
        else:
            kind = "other"
        return FileInfo(kind, st.st_size, stat_module.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime)

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        host = self._host(path, follow=True)
        if host is None or not host.is_file():
            return None
        with open(host, "rb") as handle:
            return handle.read(-1 if limit is None else limit)

    def listdir(self, path: str) -> list[str] | None:
        host = self._host(path, follow=True)
        if host is None or not host.is_dir():
            return None
        return sorted(os.listdir(host))

    def readlink(self, path: str) -> str | None:
        host = self._host(path, follow=False)
        if host is None or not host.is_symlink():
            return None
        return os.readlink(host)
