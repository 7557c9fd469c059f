"""Guest CPU architecture from the ELF header of a well-known binary."""

from __future__ import annotations

import struct

from handlers.tree import GuestTree

#: e_machine -> architecture name (64-bit / 32-bit, little-endian variant where it differs)
_MACHINES: dict[int, tuple[str, str]] = {
    3: ("i386", "i386"),
    8: ("mips64", "mips"),
    20: ("ppc", "ppc"),
    21: ("ppc64", "ppc64"),
    22: ("s390x", "s390"),
    40: ("arm", "arm"),
    62: ("x86_64", "x32"),
    183: ("aarch64", "aarch64"),
    243: ("riscv64", "riscv32"),
    258: ("loongarch64", "loongarch32"),
}

#: binaries present on practically every Linux guest, tried in order
PROBE_PATHS = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/ls", "/usr/bin/ls",
               "/sbin/init", "/usr/lib/systemd/systemd", "/bin/busybox")


def elf_architecture(header: bytes) -> str | None:
    """Architecture named by an ELF header (first 20 bytes are enough); None if not ELF."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    elf_class, data = header[4], header[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return None
    (machine,) = struct.unpack_from("<H" if data == 1 else ">H", header, 18)
    names = _MACHINES.get(machine)
    if names is None:
        return f"elf-machine-{machine}"
    name = names[0] if elf_class == 2 else names[1]
    if name == "ppc64" and data == 1:
        return "ppc64le"
    if name == "mips64" and data == 1:
        return "mips64el"
    return name


def detect_architecture(tree: GuestTree) -> str | None:
    """Architecture of the first probe binary that is a readable ELF file."""
    for path in PROBE_PATHS:
        header = tree.read_bytes(path, limit=64)
        arch = elf_architecture(header) if header else None
        if arch:
            return arch
    return None
