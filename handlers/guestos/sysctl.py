"""Kernel parameters set at boot: sysctl.d directories and /etc/sysctl.conf, as systemd-sysctl applies them."""

from __future__ import annotations

import posixpath

from handlers.guestos.common import Setting, read_settings
from handlers.tree import GuestTree

#: in priority order: a file name in an earlier directory hides the same name in later ones
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"


def normalize_key(key: str) -> str:
    return key.lstrip("-").replace("/", ".")


def sysctl_files(tree: GuestTree) -> list[str]:
    chosen: dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        for name in tree.listdir(directory) or []:
            if name.endswith(".conf"):
                chosen.setdefault(name, posixpath.join(directory, name))
    # /etc/sysctl.conf is read last unless a link such as 99-sysctl.conf already brings it in
    files = [SYSCTL_CONF if tree.readlink(chosen[name]) in ("../sysctl.conf", SYSCTL_CONF) else chosen[name]
             for name in sorted(chosen)]
    if SYSCTL_CONF not in files:
        files.append(SYSCTL_CONF)
    return files


def read_sysctl(tree: GuestTree) -> dict[str, Setting]:
    """Parameter (dotted) -> the setting that wins (the last one applied)."""
    effective: dict[str, Setting] = {}
    for path in sysctl_files(tree):
        for setting in read_settings(tree, path, comments="#;"):
            key = normalize_key(setting.key)
            effective[key] = Setting(key, setting.value, setting.file, setting.line, setting.text)
    return effective
