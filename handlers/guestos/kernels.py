"""Installed kernels in /boot with their initramfs and module trees."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import exists, natural_key
from handlers.tree import GuestTree

BOOT = "/boot"
_INITRAMFS_NAMES = ("initrd.img-{v}", "initramfs-{v}.img", "initrd-{v}", "initramfs-{v}", "initrd-{v}.img")
_MODULE_DIRS = ("/usr/lib/modules", "/lib/modules")


def read_kernels(tree: GuestTree) -> list[dict[str, Any]]:
    """One entry per ``/boot/vmlinuz-<version>`` (also ``vmlinux-``/``Image-``), sorted by version."""
    names = tree.listdir(BOOT) or []
    present = set(names)
    kernels = []
    for name in names:
        prefix = next((p for p in ("vmlinuz-", "vmlinux-", "Image-") if name.startswith(p)), None)
        if prefix is None or name.endswith((".hmac", ".sig", ".old")):
            continue
        version = name[len(prefix):]
        initramfs = next((f"{BOOT}/{pattern.format(v=version)}" for pattern in _INITRAMFS_NAMES
                          if pattern.format(v=version) in present), None)
        kernels.append({
            "version": version, "kernel": f"{BOOT}/{name}", "initramfs": initramfs,
            "modules": any(exists(tree, f"{d}/{version}") for d in _MODULE_DIRS),
        })
    return sorted(kernels, key=lambda k: natural_key(k["version"]))
