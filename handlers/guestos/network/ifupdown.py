"""ifupdown's /etc/network/interfaces and the files it sources (IPv4 ``iface`` stanzas): Debian's
``iface eth0 inet static``, and Alpine's ifupdown-ng, whose stanzas may leave out the family and
method (``iface eth0`` with ``use dhcp``, or one ``address 192.0.2.5/24`` line per address)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any

from handlers.guestos.common import content_lines, read_included
from handlers.guestos.network.iface import interface, with_prefix
from handlers.tree import GuestTree

INTERFACES = "/etc/network/interfaces"
#: options a stanza may give more than once (ifupdown-ng), kept together, space-separated
_REPEATED = ("address", "use")
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
        if keyword == "iface" and len(words) >= 2:
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
            value = " ".join(words[1:])
            repeated = keyword in _REPEATED and keyword in current[2]
            current[2][keyword] = f"{current[2][keyword]} {value}" if repeated else value
    return stanzas


def read_ifupdown(tree: GuestTree) -> list[dict[str, Any]]:
    interfaces = []
    for path, words, options in _stanzas(tree, INTERFACES, set()):
        name = words[0]
        family = words[1] if len(words) > 1 else "inet"
        method = words[2] if len(words) > 2 else _ng_method(options)
        if family != "inet":
            continue
        addresses = [with_prefix(address, options.get("netmask")) for address in options.get("address", "").split()
                     if ":" not in address]  # IPv6 addresses belong to inet6 stanzas
        hwaddress = options.get("hwaddress", "").split()  # "hwaddress [ether] 52:54:00:..."
        interfaces.append(interface(
            name, "ifupdown", path, method, addresses=addresses, gateway=options.get("gateway"),
            dns=options.get("dns-nameservers", "").split(), mac=hwaddress[-1] if hwaddress else None,
        ))
    return interfaces


def _ng_method(options: dict[str, str]) -> str:
    """The method of an ifupdown-ng stanza that names none: from its ``use`` lines and addresses."""
    uses = options.get("use", "").split()
    for method in ("dhcp", "loopback"):
        if method in uses:
            return method
    return "static" if "address" in options else "manual"
