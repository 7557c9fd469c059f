"""Arch's netctl profiles: /etc/netctl/<profile>, shell assignments such as ``Interface=eth0``,
``IP=static``, ``Address=('192.0.2.5/24')``, ``Gateway='192.0.2.1'``, ``DNS=('192.0.2.53')``.

The profile is read as text, never run: an array is the quoted words between its parentheses.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Any

from handlers.guestos.common import content_lines
from handlers.guestos.network.iface import interface
from handlers.tree import GuestTree, read_text

NETCTL_DIR = "/etc/netctl"
_METHODS = {"dhcp": "dhcp", "static": "static", "no": "manual"}


def _words(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("(") and value.endswith(")"):
        value = value[1:-1]
    try:
        return shlex.split(value, comments=True)
    except ValueError:  # an unbalanced quote: the words as they stand
        return value.split()


def parse_profile(text: str, path: str) -> dict[str, Any] | None:
    """The interface a profile configures; None when it names no ``Interface``."""
    values: dict[str, list[str]] = {}
    for _, line, _ in content_lines(text):
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = _words(value)
    name = (values.get("Interface") or [None])[0]
    if not name:
        return None
    method = _METHODS.get((values.get("IP") or ["no"])[0], "manual")
    gateway = (values.get("Gateway") or [None])[0]
    return interface(name, "netctl", path, method, addresses=values.get("Address", []), gateway=gateway,
                     dns=values.get("DNS", []))


def read_netctl(tree: GuestTree) -> list[dict[str, Any]]:
    """Every profile in /etc/netctl (its sub-directories hold examples and hooks, not profiles)."""
    interfaces = []
    for name in tree.listdir(NETCTL_DIR) or []:
        path = posixpath.join(NETCTL_DIR, name)
        info = tree.stat(path)
        if info is None or info.type != "file":
            continue
        parsed = parse_profile(read_text(tree, path, limit=1024 * 1024) or "", path)
        if parsed is not None:
            interfaces.append(parsed)
    return interfaces
