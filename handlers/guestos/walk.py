"""Listing a directory subtree of a guest without following symlinks."""

from __future__ import annotations

import posixpath

from handlers.tree import FileInfo, GuestTree


class TooManyEntries(Exception):
    """The subtree holds more entries than the caller allowed."""


def walk(tree: GuestTree, top: str, limit: int = 100_000) -> dict[str, FileInfo]:
    """Guest path -> FileInfo for ``top`` and everything below it (symlinks listed, not followed)."""
    found: dict[str, FileInfo] = {}
    info = tree.stat(top)
    if info is None:
        return found
    pending = [top] if info.type == "dir" else []
    if info.type != "dir":
        found[top] = info
    while pending:
        directory = pending.pop()
        for name in tree.listdir(directory) or []:
            path = posixpath.join(directory, name)
            entry = tree.stat(path)
            if entry is None:
                continue
            found[path] = entry
            if len(found) > limit:
                raise TooManyEntries(f"more than {limit} entries under {top}")
            if entry.type == "dir":
                pending.append(path)
    return found
