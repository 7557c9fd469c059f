"""A merged guest file tree: filesystems at their mountpoints, symlinks resolved inside the guest."""

from __future__ import annotations

from typing import Any

from app.plugin.limits import Limits
from handlers.tree import FileInfo, FileType, capped, resolve_path

from .fsentry import Filesystem


class GuestView:
    """Implements ``handlers.tree.GuestTree`` over one or more mounted filesystems."""

    def __init__(self, mounts: dict[str, Filesystem], limits: Limits | None = None,
                 truncated: list[dict[str, Any]] | None = None) -> None:
        """``truncated``: the list cuts are recorded in (the guest's, shared by its views)."""
        if "/" not in mounts:
            raise ValueError("a root filesystem is required")
        self.mounts = dict(sorted(mounts.items(), key=lambda item: -len(item[0])))
        self.limits = limits or Limits()
        self.truncated: list[dict[str, Any]] = [] if truncated is None else truncated

    def locate(self, canonical: str) -> tuple[Filesystem, str]:
        """The filesystem holding a canonical guest path, and the path inside it."""
        for mountpoint, fs in self.mounts.items():
            if mountpoint == "/":
                return fs, canonical
            if canonical == mountpoint or canonical.startswith(mountpoint + "/"):
                return fs, canonical[len(mountpoint):] or "/"
        raise AssertionError("unreachable: '/' is always mounted")

    def _lstat_canonical(self, canonical: str) -> tuple[FileInfo, str | None] | None:
        fs, inner = self.locate(canonical)
        entry = fs.entry(inner)
        return None if entry is None else (entry.info, entry.link)

    def resolve(self, path: str, follow: bool) -> str | None:
        """The canonical path of ``path`` (parents always followed, the last part if ``follow``)."""
        return resolve_path(path, follow, self._kind_and_link)

    def _kind_and_link(self, canonical: str) -> tuple[FileType, str | None] | None:
        found = self._lstat_canonical(canonical)
        return None if found is None else (found[0].type, found[1])

    def stat(self, path: str) -> FileInfo | None:
        canonical = self.resolve(path, follow=False)
        if canonical is None:
            return None
        found = self._lstat_canonical(canonical)
        return None if found is None else found[0]

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        canonical = self.resolve(path, follow=True)
        if canonical is None:
            return None
        fs, inner = self.locate(canonical)
        entry = fs.entry(inner)
        if entry is None:
            return None
        return fs.read(inner, capped(self, path, entry.info.size, limit))

    def listdir(self, path: str) -> list[str] | None:
        canonical = self.resolve(path, follow=True)
        if canonical is None:
            return None
        fs, inner = self.locate(canonical)
        return fs.listdir(inner)

    def readlink(self, path: str) -> str | None:
        canonical = self.resolve(path, follow=False)
        if canonical is None:
            return None
        found = self._lstat_canonical(canonical)
        return None if found is None else found[1]
