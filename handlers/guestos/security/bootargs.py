"""Kernel command-line arguments configured in /etc/default/grub."""

from __future__ import annotations

import shlex

from handlers.guestos.common import Setting, last_wins, read_settings
from handlers.tree import GuestTree

DEFAULT_GRUB = "/etc/default/grub"
_CMDLINE_KEYS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")


def cmdline_settings(tree: GuestTree) -> list[Setting]:
    settings = last_wins(read_settings(tree, DEFAULT_GRUB))
    return [settings[key] for key in _CMDLINE_KEYS if key in settings]


def kernel_arguments(tree: GuestTree) -> dict[str, str]:
    """``name -> value`` (``""`` for a bare flag); the last occurrence wins, as in the kernel."""
    arguments: dict[str, str] = {}
    for setting in cmdline_settings(tree):
        try:
            words = shlex.split(setting.value)
        except ValueError:
            words = setting.value.split()
        for word in words:
            name, _, value = word.partition("=")
            arguments[name] = value
    return arguments


def argument_setting(tree: GuestTree, name: str) -> Setting | None:
    """The /etc/default/grub line that sets kernel argument ``name``, for evidence."""
    found = None
    for setting in cmdline_settings(tree):
        if any(word.partition("=")[0] == name for word in setting.value.split()):
            found = setting
    return found
