"""Local users and groups from the SAM hive.

Each user is a key ``SAM\\Domains\\Account\\Users\\<RID in hex>`` with two binary values: ``F``
(fixed: the last logon as a FILETIME at 0x08, the account control bits at 0x38) and ``V`` (a table
of (offset, length) pairs from 0x0C, pointing past its 0xCC-byte header: name, full name, comment).
Each local group is an alias, ``Aliases\\<RID in hex>`` of the Builtin or the Account domain, whose
``C`` value holds its name, comment and member SIDs (offsets past its 0x34-byte header). Every offset
and length is checked against the value's size: a damaged record is left out.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.guestos.windows.hives import Hive, sid_text

USERS = "SAM\\Domains\\Account\\Users"
ALIAS_DOMAINS = ("SAM\\Domains\\Builtin\\Aliases", "SAM\\Domains\\Account\\Aliases")
ACB_DISABLED, ACB_PWNOEXP = 0x0001, 0x0200
_V_HEADER, _C_HEADER = 0xCC, 0x34
_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def _filetime(value: int) -> str | None:
    if value in (0, 0x7FFFFFFFFFFFFFFF) or value > 0x0FFFFFFFFFFFFFFF:
        return None
    return (_EPOCH + timedelta(microseconds=value // 10)).isoformat().replace("+00:00", "Z")


def _field(data: bytes, table_at: int, base: int) -> str | None:
    """The UTF-16LE text a (offset, length) pair at ``table_at`` points to, past ``base``."""
    if len(data) < table_at + 8:
        return None
    offset, length = struct.unpack_from("<II", data, table_at)
    start = base + offset
    if length == 0 or length % 2 or start + length > len(data):
        return None
    return data[start:start + length].decode("utf-16-le", errors="replace")


def machine_sid(sam: Hive) -> str | None:
    """The local domain's SID: the last 24 bytes of ``SAM\\Domains\\Account``'s ``V``."""
    data = sam.value("SAM\\Domains\\Account", "V")
    if not isinstance(data, bytes) or len(data) < 24:
        return None
    found = sid_text(data[-24:])
    return found[0] if found else None


def local_users(sam: Hive) -> list[dict[str, Any]]:
    users = []
    for key in sam.subkeys(USERS):
        try:
            rid = int(key.name, 16)
        except ValueError:
            continue  # "Names"
        fixed, variable = sam.value(key, "F"), sam.value(key, "V")
        if not isinstance(fixed, bytes) or len(fixed) < 0x3A or not isinstance(variable, bytes):
            continue
        name = _field(variable, 0x0C, _V_HEADER)
        if name is None:
            continue
        (last_logon,) = struct.unpack_from("<Q", fixed, 0x08)
        (control,) = struct.unpack_from("<H", fixed, 0x38)
        users.append({"name": name, "rid": rid, "full_name": _field(variable, 0x18, _V_HEADER) or None,
                      "comment": _field(variable, 0x24, _V_HEADER) or None, "disabled": bool(control & ACB_DISABLED),
                      "password_never_expires": bool(control & ACB_PWNOEXP), "last_logon": _filetime(last_logon),
                      "groups": []})
    return sorted(users, key=lambda user: user["rid"])


def local_groups(sam: Hive, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Local groups with their members: a member of this machine by its user name, any other
    (a domain account or group) by its SID. Fills each user's ``groups``."""
    local = machine_sid(sam)
    by_rid = {user["rid"]: user for user in users}
    groups = []
    for domain in ALIAS_DOMAINS:
        for key in sam.subkeys(domain):
            data = sam.value(key, "C")
            if not isinstance(data, bytes) or len(data) < _C_HEADER:
                continue
            name = _field(data, 0x10, _C_HEADER)
            if name is None:
                continue
            (members_offset,), (count,) = struct.unpack_from("<I", data, 0x28), struct.unpack_from("<I", data, 0x30)
            members_at = _C_HEADER + members_offset
            members = []
            for _ in range(min(count, 10_000)):
                found = sid_text(data[members_at:])
                if found is None:
                    break
                sid, size = found
                members_at += size
                prefix, _, rid = sid.rpartition("-")
                user = by_rid.get(int(rid)) if prefix == local and rid.isdigit() else None
                if user is not None:
                    user["groups"].append(name)
                members.append(user["name"] if user is not None else sid)
            try:
                rid_value = int(key.name, 16)
            except ValueError:
                continue
            groups.append({"name": name, "rid": rid_value, "comment": _field(data, 0x1C, _C_HEADER) or None,
                           "members": members})
    for user in users:
        user["groups"].sort()
    return sorted(groups, key=lambda group: group["name"].casefold())
