"""AppArmor: profiles in /etc/apparmor.d and their modes (enforce, complain, disabled)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from handlers.guestos.common import files_in
from handlers.guestos.security.bootargs import kernel_arguments
from handlers.tree import GuestTree, read_text

APPARMOR_DIR = "/etc/apparmor.d"
_SKIP = re.compile(r"(\.dpkg-\w+|\.rpm\w+|~|\.orig|\.bak)$|^\.|^README")
_FLAGS = re.compile(r"flags\s*=\s*\(([^)]*)\)")


def profile_mode(text: str) -> str:
    for match in _FLAGS.finditer(text):
        flags = re.split(r"[\s,]+", match.group(1))
        if "complain" in flags:
            return "complain"
        if "kill" in flags or "unconfined" in flags:
            return flags[0]
    return "enforce"


def read_apparmor(tree: GuestTree) -> dict[str, Any] | None:
    """None when /etc/apparmor.d does not exist. ``enabled`` is False when the boot arguments
    turn AppArmor off (``apparmor=0`` or another ``security=`` module)."""
    if tree.listdir(APPARMOR_DIR) is None:
        return None
    disabled = set(tree.listdir(posixpath.join(APPARMOR_DIR, "disable")) or [])
    profiles = {}
    for path in files_in(tree, APPARMOR_DIR):
        name = posixpath.basename(path)
        if _SKIP.search(name):
            continue
        profiles[name] = "disabled" if name in disabled else profile_mode(read_text(tree, path) or "")
    arguments = kernel_arguments(tree)
    enabled = arguments.get("apparmor") != "0" and arguments.get("security", "apparmor") == "apparmor"
    return {"enabled": enabled, "profiles": profiles}
