"""Security posture of a guest: SELinux, AppArmor, sshd, firewall."""

from __future__ import annotations

from typing import Any

from handlers.guestos.security.apparmor import read_apparmor
from handlers.guestos.security.firewall import read_firewall
from handlers.guestos.security.selinux import read_selinux
from handlers.guestos.security.sshd import read_sshd
from handlers.tree import GuestTree

__all__ = ["read_security"]


def read_security(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any]:
    """``services`` is ``handlers.guestos.services.read_services(tree)`` (firewall state needs it)."""
    return {
        "selinux": read_selinux(tree),
        "apparmor": read_apparmor(tree),
        "ssh": read_sshd(tree),
        "firewall": read_firewall(tree, services),
    }
