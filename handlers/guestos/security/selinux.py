"""SELinux mode and policy from /etc/selinux/config (and a ``selinux=0`` kernel argument)."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import Setting, last_wins, read_settings
from handlers.guestos.security.bootargs import kernel_arguments
from handlers.tree import GuestTree

SELINUX_CONFIG = "/etc/selinux/config"


def selinux_settings(tree: GuestTree) -> dict[str, Setting]:
    return last_wins(read_settings(tree, SELINUX_CONFIG))


def read_selinux(tree: GuestTree) -> dict[str, Any] | None:
    """None when the guest has no SELinux configuration; mode ``disabled`` when the boot
    arguments in /etc/default/grub turn it off (``selinux=0``)."""
    settings = selinux_settings(tree)
    if not settings:
        return None
    mode = settings["SELINUX"].value.lower() if "SELINUX" in settings else "disabled"
    if kernel_arguments(tree).get("selinux") == "0":
        mode = "disabled"
    policy = settings["SELINUXTYPE"].value if "SELINUXTYPE" in settings else None
    return {"mode": mode, "policy": policy}
