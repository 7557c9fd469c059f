"""Enabled services: systemd ``*.wants``/``*.requires`` links, masked units, SysV rc links, OpenRC runlevels;
and the init system that runs them."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from handlers.guestos.initsystem import detect_init
from handlers.tree import GuestTree

SYSTEMD_CONFIG_DIR = "/etc/systemd/system"
OPENRC_RUNLEVELS = "/etc/runlevels"
_RC_LINK = re.compile(r"^([SK])(\d\d)(.+)$")


def systemd_enabled(tree: GuestTree) -> dict[str, list[str]]:
    """Unit name -> targets (or units) that want/require it, from links under /etc/systemd/system."""
    wanted: dict[str, set[str]] = {}
    for entry in tree.listdir(SYSTEMD_CONFIG_DIR) or []:
        for suffix in (".wants", ".requires"):
            if not entry.endswith(suffix):
                continue
            owner = entry[: -len(suffix)]
            for unit in tree.listdir(posixpath.join(SYSTEMD_CONFIG_DIR, entry)) or []:
                wanted.setdefault(unit, set()).add(owner)
    return {unit: sorted(owners) for unit, owners in sorted(wanted.items())}


def systemd_masked(tree: GuestTree) -> list[str]:
    masked = []
    for entry in tree.listdir(SYSTEMD_CONFIG_DIR) or []:
        if tree.readlink(posixpath.join(SYSTEMD_CONFIG_DIR, entry)) == "/dev/null":
            masked.append(entry)
    return masked


def default_target(tree: GuestTree) -> str | None:
    target = tree.readlink(posixpath.join(SYSTEMD_CONFIG_DIR, "default.target"))
    return posixpath.basename(target) if target else None


def _rc_dir(tree: GuestTree, level: int) -> str | None:
    for path in (f"/etc/rc{level}.d", f"/etc/rc.d/rc{level}.d"):
        if tree.listdir(path) is not None:
            return path
    return None


def sysv_enabled(tree: GuestTree) -> list[dict[str, Any]]:
    """SysV services with a start (``S``) link, and the runlevels 0-6 that start them."""
    levels: dict[str, set[int]] = {}
    for level in range(7):
        directory = _rc_dir(tree, level)
        for name in (tree.listdir(directory) or []) if directory else []:
            match = _RC_LINK.match(name)
            if match and match.group(1) == "S":
                levels.setdefault(match.group(3), set()).add(level)
    return [{"name": name, "runlevels": sorted(runlevels)} for name, runlevels in sorted(levels.items())]


def openrc_enabled(tree: GuestTree) -> list[dict[str, Any]]:
    """OpenRC services added to a runlevel (links in ``/etc/runlevels/<runlevel>/``), and those runlevels."""
    levels: dict[str, set[str]] = {}
    for level in tree.listdir(OPENRC_RUNLEVELS) or []:
        for name in tree.listdir(posixpath.join(OPENRC_RUNLEVELS, level)) or []:
            levels.setdefault(name, set()).add(level)
    return [{"name": name, "runlevels": sorted(runlevels)} for name, runlevels in sorted(levels.items())]


def read_services(tree: GuestTree) -> dict[str, Any]:
    return {
        "init": detect_init(tree),
        "default_target": default_target(tree),
        "enabled": [{"name": unit, "wanted_by": owners} for unit, owners in systemd_enabled(tree).items()],
        "masked": systemd_masked(tree),
        "sysv": sysv_enabled(tree),
        "openrc": openrc_enabled(tree),
    }


def enabled_unit_names(services: dict[str, Any]) -> set[str]:
    """Names of enabled units, SysV and OpenRC services (``ssh.service`` and ``ssh``) from ``read_services``."""
    names = {unit["name"] for unit in services["enabled"]}
    names |= {service["name"] for service in services["sysv"] + services["openrc"]}
    return names


def is_enabled(services: dict[str, Any], *names: str) -> bool:
    """True if any of ``names`` (``sshd``, ``sshd.service``) is enabled by systemd or SysV."""
    enabled = enabled_unit_names(services)
    return any(name in enabled or f"{name}.service" in enabled for name in names)
