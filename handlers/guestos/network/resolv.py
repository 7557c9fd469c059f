"""/etc/resolv.conf: name servers and search domains."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import content_lines
from handlers.tree import GuestTree, read_text

RESOLV_CONF = "/etc/resolv.conf"


def parse_resolv_conf(text: str) -> dict[str, Any]:
    nameservers: list[str] = []
    search: list[str] = []
    for _number, line, _raw in content_lines(text, comments="#;"):
        words = line.split()
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]  # the last search/domain line wins
    return {"nameservers": nameservers, "search": search}


def read_resolv_conf(tree: GuestTree) -> dict[str, Any]:
    """Name servers and search list; ``link`` is the target when resolv.conf is a symlink
    (often to a file under /run, which an offline image does not have)."""
    result = parse_resolv_conf(read_text(tree, RESOLV_CONF) or "")
    link = tree.readlink(RESOLV_CONF)
    if link:
        result["link"] = link
    return result
