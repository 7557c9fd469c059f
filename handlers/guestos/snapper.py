"""snapper's record of the snapshot a SUSE guest boots: its root is the btrfs subvolume
``@/.snapshots/N/snapshot`` (the default subvolume), described by ``/.snapshots/N/info.xml``.

info.xml is read with patterns for its few flat elements, not an XML parser: it comes from the guest,
and nothing in it needs more."""

from __future__ import annotations

import re
from typing import Any

from handlers.tree import GuestTree, read_text

_SNAPSHOT = re.compile(r"(?:^|/)\.snapshots/(\d{1,9})/snapshot$")
_FIELDS = ("type", "date", "description", "cleanup")
_INFO_BYTES = 64 * 1024


def _element(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>([^<]{{0,1024}})</{name}>", text)
    if match is None:
        return None
    return match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def read_root_snapshot(tree: GuestTree, root_subvolume: str | None) -> dict[str, Any] | None:
    """{number, type, date, description, cleanup} of the snapper snapshot the root is, or None when the
    root is not a snapper snapshot (its info.xml fields are None where it is missing)."""
    match = _SNAPSHOT.search(root_subvolume or "")
    if match is None:
        return None
    number = int(match.group(1))
    text = read_text(tree, f"/.snapshots/{number}/info.xml", limit=_INFO_BYTES) or ""
    found: dict[str, Any] = {"number": number, "subvolume": root_subvolume}
    for name in _FIELDS:
        found[name] = _element(text, name)
    return found
