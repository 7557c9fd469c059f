"""Scheduled tasks: system crontabs (/etc/crontab, /etc/cron.d) and per-user crontabs (cron's and
cronie's spool, busybox crond's /etc/crontabs on Alpine)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from handlers.guestos.common import content_lines
from handlers.tree import GuestTree, read_text

SYSTEM_CRONTABS = ("/etc/crontab",)
CRON_D = "/etc/cron.d"
USER_CRONTAB_DIRS = ("/var/spool/cron/crontabs", "/var/spool/cron", "/etc/crontabs")
_SKIP_NAME = re.compile(r"^\.|~$|\.dpkg-|\.rpm(new|save|orig)$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def parse_crontab(text: str, file: str, user: str | None) -> list[dict[str, Any]]:
    """Entries of a crontab; ``user`` None means the system format (a user field after the schedule)."""
    entries = []
    for number, line, _raw in content_lines(text):
        if _ENV.match(line):
            continue
        fields = line.split()
        width = 1 if fields[0].startswith("@") else 5
        needed = width + (1 if user is None else 0) + 1
        if len(fields) < needed:
            continue
        owner = fields[width] if user is None else user
        command = line.split(None, needed - 1)[-1]
        entries.append({"file": file, "line": number, "user": owner, "schedule": " ".join(fields[:width]),
                        "command": command})
    return entries


def read_cron(tree: GuestTree) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    system = list(SYSTEM_CRONTABS) + [posixpath.join(CRON_D, n) for n in tree.listdir(CRON_D) or []
                                      if not _SKIP_NAME.search(n)]
    for path in system:
        entries += parse_crontab(read_text(tree, path) or "", path, None)
    for directory in USER_CRONTAB_DIRS:
        for name in tree.listdir(directory) or []:
            path = posixpath.join(directory, name)
            text = read_text(tree, path)
            if text is not None and not _SKIP_NAME.search(name):
                entries += parse_crontab(text, path, name)
    return entries
