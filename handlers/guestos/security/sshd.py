"""OpenSSH server configuration: sshd_config with its Include files, first value wins."""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Any

from handlers.guestos.common import Setting, exists, parse_settings, read_included
from handlers.tree import GuestTree

SSHD_CONFIG = "/etc/ssh/sshd_config"
DEFAULTS = {"permitrootlogin": "prohibit-password", "passwordauthentication": "yes",
            "permitemptypasswords": "no", "x11forwarding": "no", "port": "22"}


def _expand_include(tree: GuestTree, pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        pattern = posixpath.join("/etc/ssh", pattern)
    directory, name_pattern = posixpath.split(pattern)
    return [posixpath.join(directory, n) for n in tree.listdir(directory) or [] if fnmatch.fnmatch(n, name_pattern)]


def sshd_directives(tree: GuestTree, path: str = SSHD_CONFIG, seen: set[str] | None = None) -> list[Setting]:
    """Global directives (before the first ``Match``) in the order sshd reads them, includes inlined
    (each file once, at most ``MAX_INCLUDED_FILES``)."""
    seen = set() if seen is None else seen
    text = read_included(tree, path, seen)
    if text is None:
        return []
    directives: list[Setting] = []
    for setting in parse_settings(text, path, separator=" ", lower_keys=True):
        if setting.key == "match":
            break
        if setting.key == "include":
            for pattern in setting.value.split():
                for included in _expand_include(tree, pattern):
                    directives += sshd_directives(tree, included, seen)
            continue
        directives.append(setting)
    return directives


def effective_sshd(tree: GuestTree) -> dict[str, Setting]:
    """Keyword -> the directive sshd uses (its first occurrence)."""
    effective: dict[str, Setting] = {}
    for directive in sshd_directives(tree):
        effective.setdefault(directive.key, directive)
    return effective


def sshd_value(effective: dict[str, Setting], key: str) -> str:
    return effective[key].value.lower() if key in effective else DEFAULTS[key]


def read_sshd(tree: GuestTree) -> dict[str, Any] | None:
    """None when /etc/ssh/sshd_config is absent."""
    if not exists(tree, SSHD_CONFIG):
        return None
    directives = sshd_directives(tree)
    effective = effective_sshd(tree)
    ports = [int(d.value) for d in directives if d.key == "port" and d.value.isdigit()] or [22]
    return {
        "installed": True,
        "settings": {key: setting.value for key, setting in effective.items()},
        "permit_root_login": sshd_value(effective, "permitrootlogin"),
        "password_authentication": sshd_value(effective, "passwordauthentication") == "yes",
        "permit_empty_passwords": sshd_value(effective, "permitemptypasswords") == "yes",
        "x11_forwarding": sshd_value(effective, "x11forwarding") == "yes",
        "ports": ports,
    }
