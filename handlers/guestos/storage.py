"""The fstab section of a guest, through the engine's fstab parser.

The engine package is imported lazily: importing it loads pytsk3 and the image code, which
parsers working on a plain directory tree do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handlers.tree import GuestTree, read_text

if TYPE_CHECKING:
    from handlers.guestimage.fstab import FstabEntry

FSTAB = "/etc/fstab"


def read_fstab_entries(tree: GuestTree) -> list[FstabEntry]:
    from handlers.guestimage.fstab import parse_fstab

    return parse_fstab(read_text(tree, FSTAB) or "")


def fstab_as_dicts(entries: list[FstabEntry]) -> list[dict[str, Any]]:
    return [{"spec": e.spec, "mountpoint": e.mountpoint, "fstype": e.fstype, "options": list(e.options),
             "dump": e.dump, "passno": e.passno, "line": e.line} for e in entries]
