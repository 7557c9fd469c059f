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
from collections.abc import Callable
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


MAX_SYMLINK_HOPS = 40
#: canonical guest path -> (its type, its link target if a symlink), or None when absent
KindAndLink = Callable[[str], "tuple[FileType, str | None] | None"]


def resolve_path(path: str, follow: bool, lookup: KindAndLink) -> str | None:
    """The canonical guest path of ``path``, resolving symlinks inside the guest.

    Parent components are always followed, the last one only if ``follow``. None when a parent
    is missing or not a directory, or after ``MAX_SYMLINK_HOPS`` links (a loop). A missing last
    component still yields its canonical path.
    """
    parts = list(PurePosixPath("/", path).parts[1:])
    current = PurePosixPath("/")
    hops = 0
    index = 0
    while index < len(parts):
        name = parts[index]
        index += 1
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        is_last = index == len(parts)
        found = lookup(str(candidate))
        if found is None:
            return str(candidate) if is_last else None
        kind, link = found
        if kind == "symlink" and (follow or not is_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS or link is None:
                return None
            base = PurePosixPath("/") if link.startswith("/") else current
            parts = list(PurePosixPath(base, link).parts[1:]) + parts[index:]
            current = PurePosixPath("/")
            index = 0
            continue
        if not is_last and kind != "dir":
            return None
        current = candidate
    return str(current)


def read_text(tree: GuestTree, path: str, limit: int | None = 4 * 1024 * 1024) -> str | None:
    """File content decoded as UTF-8 (bad bytes replaced); None if absent."""
    raw = tree.read_bytes(path, limit)
    return None if raw is None else raw.decode("utf-8", errors="replace")


class DirectoryTree:
    """A host directory seen as a guest root. Guest symlinks are resolved against ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _host(self, path: str, follow: bool) -> Path | None:
        canonical = resolve_path(path, follow, self._kind_and_link)
        return None if canonical is None else self.root / canonical.lstrip("/")

    def _kind_and_link(self, canonical: str) -> tuple[FileType, str | None] | None:
        host = self.root / canonical.lstrip("/")
        try:
            mode = host.lstat().st_mode
        except OSError:
            return None
        if stat_module.S_ISLNK(mode):
            return "symlink", os.readlink(host)
        return ("dir" if stat_module.S_ISDIR(mode) else "file" if stat_module.S_ISREG(mode) else "other"), None

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
