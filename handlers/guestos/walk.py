"""Listing a directory subtree of a guest without following symlinks."""

from __future__ import annotations

import posixpath

from handlers.tree import FileInfo, GuestTree, note_truncation


class TooManyEntries(Exception):
    """The subtree holds more entries than the job may walk."""


def walk(tree: GuestTree, top: str) -> dict[str, FileInfo]:
    """Guest path -> FileInfo for ``top`` and everything below it (symlinks listed, not followed),
    within the tree's limits: directories deeper than ``max_tree_depth`` levels below ``top`` are
    listed but not entered, and more than ``max_tree_entries`` entries raise ``TooManyEntries``;
    either cut is noted in the tree's ``truncated`` under ``top``."""
    most, deepest = tree.limits.max_tree_entries, tree.limits.max_tree_depth
    found: dict[str, FileInfo] = {}
    info = tree.stat(top)
    if info is None:
        return found
    pending = [(top, 0)] if info.type == "dir" else []
    if info.type != "dir":
        found[top] = info
    while pending:
        directory, depth = pending.pop()
        for name in tree.listdir(directory) or []:
            path = posixpath.join(directory, name)
            entry = tree.stat(path)
            if entry is None:
                continue
            found[path] = entry
            if len(found) > most:
                note_truncation(tree, top, "max_tree_entries", most, None)
                raise TooManyEntries(f"more than {most} entries under {top} (GUESTKIT_MAX_TREE_ENTRIES)")
            if entry.type == "dir":
                if depth + 1 < deepest:
                    pending.append((path, depth + 1))
                else:
                    note_truncation(tree, top, "max_tree_depth", deepest, None)
    return found
