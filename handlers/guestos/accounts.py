"""Users and groups from /etc/passwd, /etc/shadow, /etc/group and sudoers."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from handlers.guestos.common import content_lines, read_included
from handlers.tree import GuestTree, read_text

NOLOGIN_SHELLS = frozenset({
    "/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync", "/usr/bin/sync",
    "/sbin/shutdown", "/usr/sbin/shutdown", "/sbin/halt", "/usr/sbin/halt", "/bin/nologin", "/usr/bin/nologin", "",
})


@dataclass(frozen=True)
class Record:
    """One colon-separated line of passwd/shadow/group, with its position."""

    fields: list[str]
    file: str
    line: int
    text: str

    def evidence(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "text": self.text}


def read_records(tree: GuestTree, path: str, min_fields: int) -> list[Record]:
    text = read_text(tree, path)
    if text is None:
        return []
    records = []
    for number, stripped, raw in content_lines(text):
        fields = stripped.split(":")
        if len(fields) >= min_fields and not stripped.startswith(("+", "-")):
            records.append(Record(fields, path, number, raw))
    return records


def password_state(field: str | None) -> str:
    """``empty``, ``locked`` (``!``/``*`` prefix), ``set``, or ``none`` without a shadow entry."""
    if field is None:
        return "none"
    if field == "":
        return "empty"
    if field[0] in "!*":
        return "locked"
    return "set"


def sudoers_files(tree: GuestTree, path: str, seen: set[str] | None = None) -> list[tuple[str, str]]:
    """(path, text) of sudoers and everything it includes (``@include``/``#include`` and dirs),
    each file once and at most ``MAX_INCLUDED_FILES`` of them (a hostile guest may loop)."""
    seen = set() if seen is None else seen
    text = read_included(tree, path, seen)
    if text is None:
        return []
    found = [(path, text)]
    for line in text.splitlines():
        match = re.match(r"^\s*[@#](include|includedir)\s+(\S+)", line)
        if not match:
            continue
        target = match.group(2)
        if not target.startswith("/"):
            target = posixpath.join(posixpath.dirname(path), target)
        if match.group(1) == "include":
            found += sudoers_files(tree, target, seen)
            continue
        for name in tree.listdir(target) or []:
            # sudo skips names ending in ~ or containing a dot
            if not name.endswith("~") and "." not in name:
                found += sudoers_files(tree, posixpath.join(target, name), seen)
    return found


def sudo_principals(tree: GuestTree) -> tuple[set[str], set[str]]:
    """(users, groups) granted a command specification in sudoers."""
    users: set[str] = set()
    groups: set[str] = set()
    for _path, text in sudoers_files(tree, "/etc/sudoers"):
        for _number, line, _raw in content_lines(text):
            if line.startswith(("Defaults", "User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "@")):
                continue
            match = re.match(r"^(\S+)\s+\S+\s*=", line)
            if not match:
                continue
            for principal in match.group(1).split(","):
                if principal.startswith("%"):
                    groups.add(principal[1:])
                else:
                    users.add(principal)
    return users, groups


def read_groups(tree: GuestTree) -> list[dict[str, Any]]:
    groups = []
    for record in read_records(tree, "/etc/group", 4):
        name, _password, gid, members = record.fields[:4]
        if gid.isdigit():
            groups.append({"name": name, "gid": int(gid), "members": [m for m in members.split(",") if m]})
    return groups


def read_users(tree: GuestTree) -> list[dict[str, Any]]:
    """Users in /etc/passwd order with password state, login shell and sudo rights."""
    shadow = {r.fields[0]: r.fields[1] for r in read_records(tree, "/etc/shadow", 2)}
    groups = read_groups(tree)
    sudo_users, sudo_groups = sudo_principals(tree)
    users = []
    for record in read_records(tree, "/etc/passwd", 7):
        name, password, uid, gid, gecos, home, shell = record.fields[:7]
        if not (uid.isdigit() and gid.isdigit()):
            continue
        member_of = sorted(g["name"] for g in groups if name in g["members"])
        primary = next((g["name"] for g in groups if g["gid"] == int(gid)), None)
        all_groups = set(member_of) | ({primary} if primary else set())
        users.append({
            "name": name, "uid": int(uid), "gid": int(gid), "gecos": gecos, "home": home, "shell": shell,
            "password": password_state(shadow.get(name, None if password == "x" else password)),
            "login_allowed": shell not in NOLOGIN_SHELLS,
            "groups": member_of,
            "sudo": name in sudo_users or "ALL" in sudo_users or bool(sudo_groups & all_groups),
        })
    return users
