"""Kernel command-line arguments: /etc/default/grub, and the Boot Loader Specification entry grub2
boots where the RHEL family keeps them (``grubby --args`` edits the entry's ``options``; RHEL 8 puts
``$kernelopts`` there, from grubenv)."""

from __future__ import annotations

import shlex

from handlers.guestos.common import Setting, content_lines, last_wins, natural_key, parse_settings, read_settings
from handlers.guestos.kernels import GRUBENV, boot_entries
from handlers.tree import GuestTree, read_text

DEFAULT_GRUB = "/etc/default/grub"
_CMDLINE_KEYS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")


def cmdline_settings(tree: GuestTree) -> list[Setting]:
    """The lines that make the kernel command line, in the order they apply (the booted BLS entry's
    ``options`` last: that is what grub2 passes)."""
    settings = last_wins(read_settings(tree, DEFAULT_GRUB))
    found = [settings[key] for key in _CMDLINE_KEYS if key in settings]
    booted = booted_entry_options(tree)
    return found if booted is None else [*found, booted]


def booted_entry_options(tree: GuestTree) -> Setting | None:
    """The ``options`` line of the BLS entry grub2 boots (grubenv's saved_entry, else the newest),
    ``$kernelopts`` expanded from grubenv; None without BLS entries."""
    entries = list(boot_entries(tree).values())
    if not entries:
        return None
    entry = next((e for e in entries if e["default"]), max(entries, key=lambda e: natural_key(e["id"])))
    for number, stripped, raw in content_lines(read_text(tree, entry["file"], limit=65536) or ""):
        key, _, value = stripped.partition(" ")
        if key == "options":
            value = value.strip()
            if "$kernelopts" in value:
                kernelopts = next((s.value for path in GRUBENV
                                   for s in parse_settings(read_text(tree, path, limit=65536) or "", path)
                                   if s.key == "kernelopts"), "")
                value = value.replace("$kernelopts", kernelopts)
            return Setting("options", value, entry["file"], number, raw)
    return None


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
    """The line that sets kernel argument ``name`` last, for evidence."""
    found = None
    for setting in cmdline_settings(tree):
        if any(word.partition("=")[0] == name for word in setting.value.split()):
            found = setting
    return found
