"""What a filesystem reader gives for one path, and what every reader offers (pytsk3's, libfsxfs')."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from handlers.tree import FileInfo


@dataclass
class FsEntry:
    info: FileInfo
    inode: int
    #: the symlink's target, for a symlink
    link: str | None


class Filesystem(Protocol):
    """Raw lookups on canonical (symlink-free) paths of one filesystem."""

    device_name: str
    fstype: str

    def entry(self, path: str) -> FsEntry | None: ...

    def read(self, path: str, limit: int | None) -> bytes | None: ...

    def listdir(self, path: str) -> list[str] | None: ...

    def volume_label(self) -> str | None: ...
