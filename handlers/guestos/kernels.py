"""Installed kernels in /boot with their initramfs, module trees and boot loader entries.

Where grub2 reads Boot Loader Specification entries (RHEL 8 and later, Fedora 30 and later:
``/boot/loader/entries/*.conf``), each kernel carries the entry that boots it: its id, title and
kernel command line; ``default`` marks the one ``saved_entry`` in grubenv names.
"""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import content_lines, exists, natural_key, parse_settings
from handlers.tree import GuestTree, read_text

BOOT = "/boot"
LOADER_ENTRIES = "/boot/loader/entries"
GRUBENV = ("/boot/grub2/grubenv", "/boot/grub/grubenv")
MAX_ENTRIES = 256
_INITRAMFS_NAMES = ("initrd.img-{v}", "initramfs-{v}.img", "initrd-{v}", "initramfs-{v}", "initrd-{v}.img")
_MODULE_DIRS = ("/usr/lib/modules", "/lib/modules")


def read_kernels(tree: GuestTree) -> list[dict[str, Any]]:
    """One entry per ``/boot/vmlinuz-<version>`` (also ``vmlinux-``/``Image-``), sorted by version."""
    names = tree.listdir(BOOT) or []
    present = set(names)
    entries = boot_entries(tree)
    kernels = []
    for name in names:
        prefix = next((p for p in ("vmlinuz-", "vmlinux-", "Image-") if name.startswith(p)), None)
        if prefix is None or name.endswith((".hmac", ".sig", ".old")):
            continue
        version = name[len(prefix):]
        initramfs = next((f"{BOOT}/{pattern.format(v=version)}" for pattern in _INITRAMFS_NAMES
                          if pattern.format(v=version) in present), None)
        entry = entries.get(name)
        default = entry.pop("default") if entry is not None else False
        kernels.append({
            "version": version, "kernel": f"{BOOT}/{name}", "initramfs": initramfs,
            "modules": any(exists(tree, f"{d}/{version}") for d in _MODULE_DIRS),
            "boot_entry": entry, "default": default,
        })
    return sorted(kernels, key=lambda k: natural_key(k["version"]))


def boot_entries(tree: GuestTree) -> dict[str, dict[str, Any]]:
    """Kernel file name (``vmlinuz-…``) -> its BLS entry {id, file, title, options, default}."""
    saved = None
    for path in GRUBENV:
        settings = parse_settings(read_text(tree, path, limit=65536) or "", path)
        saved = next((s.value for s in settings if s.key == "saved_entry"), None)
        if saved is not None:
            break
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(tree.listdir(LOADER_ENTRIES) or [])[:MAX_ENTRIES]:
        if not name.endswith(".conf"):
            continue
        path = f"{LOADER_ENTRIES}/{name}"
        fields: dict[str, str] = {}
        for _, stripped, _ in content_lines(read_text(tree, path, limit=65536) or ""):
            key, _, value = stripped.partition(" ")
            fields.setdefault(key, value.strip())
        linux = fields.get("linux", "").split()
        if not linux:
            continue
        entry_id = name.removesuffix(".conf")
        found.setdefault(linux[0].rsplit("/", 1)[-1], {
            "id": entry_id, "file": path, "title": fields.get("title"), "options": fields.get("options"),
            "default": entry_id == saved})
    return found
