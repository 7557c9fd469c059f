"""Installed kernels in /boot with their initramfs, module trees, configuration and boot loader entries.

A kernel file is named after its version on Debian, RHEL and SUSE (``vmlinuz-6.1.0-18-amd64``) and
after its package on Arch (``vmlinuz-linux``: the module tree whose ``pkgbase`` names that package
gives the version) and Alpine (``vmlinuz-lts``: the module tree ``<version>-lts``).

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
#: where a kernel's build configuration is kept, the most common first (``{v}``: its version)
_CONFIG_PATHS = ("/boot/config-{v}", "/usr/lib/modules/{v}/config", "/lib/modules/{v}/config",
                 "/usr/lib/modules/{v}/build/.config")


def read_kernels(tree: GuestTree) -> list[dict[str, Any]]:
    """One entry per ``/boot/vmlinuz-<version>`` (also ``vmlinux-``/``Image-``), sorted by version."""
    names = tree.listdir(BOOT) or []
    present = set(names)
    entries = boot_entries(tree)
    module_trees = _module_trees(tree)
    kernels = []
    for name in names:
        prefix = next((p for p in ("vmlinuz-", "vmlinux-", "Image-") if name.startswith(p)), None)
        if prefix is None or name.endswith((".hmac", ".sig", ".old")):
            continue
        suffix = name[len(prefix):]
        version = module_trees.get(suffix, suffix)
        initramfs = next((f"{BOOT}/{pattern.format(v=suffix)}" for pattern in _INITRAMFS_NAMES
                          if pattern.format(v=suffix) in present), None)
        entry = entries.get(name)
        default = entry.pop("default") if entry is not None else False
        kernels.append({
            "version": version, "kernel": f"{BOOT}/{name}", "initramfs": initramfs,
            "modules": any(exists(tree, f"{d}/{version}") for d in _MODULE_DIRS),
            "config": next((path.format(v=version) for path in _CONFIG_PATHS if exists(tree, path.format(v=version))),
                           None),
            "boot_entry": entry, "default": default,
        })
    return sorted(kernels, key=lambda k: natural_key(k["version"]))


def _module_trees(tree: GuestTree) -> dict[str, str]:
    """Kernel file suffix -> version, for kernels named after their package: a module tree's
    ``pkgbase`` file (Arch), or its version's last part (Alpine's ``6.6.14-0-lts`` for ``lts``);
    where two trees claim one name, the newest version. A tree named as a version maps to itself."""
    found: dict[str, str] = {}
    for directory in _MODULE_DIRS:
        for version in sorted(tree.listdir(directory) or [], key=natural_key):
            found[version] = version
            pkgbase = (read_text(tree, f"{directory}/{version}/pkgbase", limit=256) or "").strip()
            for name in (pkgbase, version.rsplit("-", 1)[-1] if "-" in version else ""):
                if name and found.get(name) != name:  # a tree named ``name`` is that version itself
                    found[name] = version
    return found


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
