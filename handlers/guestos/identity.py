"""Small identity facts: hostname, machine-id, timezone."""

from __future__ import annotations

import re

from handlers.guestos.common import content_lines, last_wins, read_settings
from handlers.tree import GuestTree, read_text

_ZONEINFO = re.compile(r"(?:^|/)zoneinfo/(?:posix/|right/)?(.+)$")


def read_hostname(tree: GuestTree) -> str | None:
    """/etc/hostname (first non-comment line), else HOSTNAME= in /etc/sysconfig/network."""
    text = read_text(tree, "/etc/hostname")
    if text is not None:
        for _number, line, _raw in content_lines(text):
            return line.split()[0]
    setting = last_wins(read_settings(tree, "/etc/sysconfig/network")).get("HOSTNAME")
    return setting.value if setting and setting.value else None


def read_machine_id(tree: GuestTree) -> str | None:
    """/etc/machine-id when it holds a real id (an empty or ``uninitialized`` file gives None)."""
    value = (read_text(tree, "/etc/machine-id") or "").strip().lower()
    return value if re.fullmatch(r"[0-9a-f]{32}", value) else None


def read_timezone(tree: GuestTree) -> str | None:
    """Zone name from the /etc/localtime link, else /etc/timezone, else ZONE= in /etc/sysconfig/clock."""
    target = tree.readlink("/etc/localtime")
    if target:
        match = _ZONEINFO.search(target)
        if match:
            return match.group(1)
    text = read_text(tree, "/etc/timezone")
    if text and text.strip():
        return text.strip().split()[0]
    zone = last_wins(read_settings(tree, "/etc/sysconfig/clock")).get("ZONE")
    return zone.value if zone and zone.value else None
