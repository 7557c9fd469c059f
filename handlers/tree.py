"""Read-only view of a guest's file tree, whatever it is backed by.

The OS parsers (``handlers.guestos``) read through this interface only; the image engine
(``handlers.guestimage``) provides it over a disk image, and ``DirectoryTree`` over a plain
host directory (tests, and the ground-truth trees the test images are built from).
Paths are absolute guest paths (``/etc/os-release``). Symlinks inside the guest are resolved
inside the guest, never on the host.

Every tree carries the job's ``limits`` (``app.plugin.limits``): no read takes more than
``max_file_bytes`` of one file, a configuration file is read to ``max_entries`` lines, and a
package database reader stops at ``max_entries`` packages. What a limit cut is listed in the
tree's ``truncated`` (file, limit, its value, what there was), which the reports carry.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from app.plugin.limits import Limits

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
    limits: Limits
    #: what the limits cut: {"file", "limit", "value", "found"}, once per file and limit
    truncated: list[dict[str, Any]]

    def stat(self, path: str) -> FileInfo | None:
        """Information on ``path`` without following a final symlink; None if absent."""

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """Content of a regular file (following symlinks inside the guest), ``limit`` bytes at most
        and never more than ``limits.max_file_bytes`` (``capped``); None if absent."""

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


def record_truncation(truncated: list[dict[str, Any]], file: str, limit: str, value: int, found: int | None) -> None:
    """Add to ``truncated`` that limit ``limit`` (a ``Limits`` field) of ``value`` cut ``file``
    (``found``: what it held, if known), once."""
    entry = {"file": file, "limit": Limits.setting(limit), "value": value, "found": found}
    if entry not in truncated:
        truncated.append(entry)


def note_truncation(tree: GuestTree, file: str, limit: str, value: int, found: int | None) -> None:
    """Record in ``tree.truncated`` that limit ``limit`` of ``value`` cut ``file``."""
    record_truncation(tree.truncated, file, limit, value, found)


def capped(tree: GuestTree, path: str, size: int, limit: int | None) -> int:
    """Bytes a read of ``path`` (``size`` bytes long) may take: the caller's ``limit`` (a bound of
    its own, such as a header's length), within the tree's ``max_file_bytes``; a file that limit
    cuts is noted."""
    cap = tree.limits.max_file_bytes
    if limit is not None and limit <= cap:
        return limit
    if size > cap:
        note_truncation(tree, path, "max_file_bytes", cap, size)
    return cap


def read_text(tree: GuestTree, path: str, limit: int | None = None, *, config: bool = True) -> str | None:
    """File content decoded as UTF-8 (bad bytes replaced); None if absent. ``limit``: the caller's
    own bound in bytes. A configuration file (``config``) is read to ``max_entries`` lines; a
    database reader (``config=False``) bounds its own entries."""
    raw = tree.read_bytes(path, limit)
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    return _first_lines(tree, path, text) if config else text


def _first_lines(tree: GuestTree, path: str, text: str) -> str:
    most = tree.limits.max_entries
    lines = text.count("\n")
    if lines <= most:
        return text
    end = -1
    for _ in range(most):
        end = text.find("\n", end + 1)
    note_truncation(tree, path, "max_entries", most, lines + (not text.endswith("\n")))
    return text[:end + 1]


class DirectoryTree:
    """A host directory seen as a guest root. Guest symlinks are resolved against ``root``."""

    def __init__(self, root: str | os.PathLike[str], limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or Limits()
        self.truncated: list[dict[str, Any]] = []

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
            return handle.read(capped(self, path, os.fstat(handle.fileno()).st_size, limit))

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
