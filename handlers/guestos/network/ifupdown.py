"""Debian ifupdown: /etc/network/interfaces and the files it sources (IPv4 ``iface`` stanzas)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any

from handlers.guestos.common import content_lines, read_included
from handlers.guestos.network.iface import interface, with_prefix
from handlers.tree import GuestTree

INTERFACES = "/etc/network/interfaces"
_VALID_SOURCE_DIR_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")  # run-parts names used by source-directory


def _expand(tree: GuestTree, pattern: str, base: str) -> list[str]:
    if not pattern.startswith("/"):
        pattern = posixpath.join(base, pattern)
    directory, name_pattern = posixpath.split(pattern)
    names = tree.listdir(directory) or []
    return [posixpath.join(directory, n) for n in names if fnmatch.fnmatch(n, name_pattern)]


def _stanzas(tree: GuestTree, path: str, seen: set[str]) -> list[tuple[str, list[str], dict[str, str]]]:
    """(file, iface words, options) for each ``iface`` stanza, following ``source`` directives."""
    text = read_included(tree, path, seen)
    if text is None:
        return []
    stanzas: list[tuple[str, list[str], dict[str, str]]] = []
    current: tuple[str, list[str], dict[str, str]] | None = None
    for _number, line, _raw in content_lines(text):
        words = line.split()
        keyword = words[0]
        if keyword == "iface" and len(words) >= 4:
            current = (path, words[1:4], {})
            stanzas.append(current)
        elif keyword in ("source", "source-directory") and len(words) > 1:
            current = None
            if keyword == "source":
                targets = _expand(tree, words[1], posixpath.dirname(path))
            else:
                directory = words[1] if words[1].startswith("/") else posixpath.join(posixpath.dirname(path), words[1])
                targets = [posixpath.join(directory, n) for n in tree.listdir(directory) or []
                           if _VALID_SOURCE_DIR_NAME.match(n)]
            for target in targets:
                stanzas += _stanzas(tree, target, seen)
        elif keyword in ("auto", "allow-hotplug", "mapping") or keyword.startswith("allow-"):
            current = None
        elif current is not None and len(words) > 1:
            current[2][keyword] = " ".join(words[1:])
    return stanzas


def read_ifupdown(tree: GuestTree) -> list[dict[str, Any]]:
    interfaces = []
    for path, (name, family, method), options in _stanzas(tree, INTERFACES, set()):
        if family != "inet":
            continue
        addresses = [with_prefix(options["address"], options.get("netmask"))] if "address" in options else []
        hwaddress = options.get("hwaddress", "").split()  # "hwaddress [ether] 52:54:00:..."
        interfaces.append(interface(
            name, "ifupdown", path, method, addresses=addresses, gateway=options.get("gateway"),
            dns=options.get("dns-nameservers", "").split(), mac=hwaddress[-1] if hwaddress else None,
        ))
    return interfaces
