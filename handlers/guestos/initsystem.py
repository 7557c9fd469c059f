"""Which init system a guest boots, decided from what it would run, never from its distribution's name.

``/sbin/init`` (followed through its links inside the guest) says it first: a link to systemd's
binary is systemd; busybox's or sysvinit's init hands over to OpenRC when OpenRC is installed
(Alpine: busybox init runs ``openrc`` from ``/etc/inittab``), else runs SysV rc scripts. A guest
without ``/sbin/init`` that holds ``/usr/lib/systemd/systemd`` boots systemd (the kernel falls back
to it through ``init=`` on such images); a guest with neither has no init system (a container's
root file system, a data disk).
"""

from __future__ import annotations

import posixpath
from typing import Any

from handlers.guestos.common import exists
from handlers.tree import FileType, GuestTree, resolve_path

INIT_PATHS = ("/sbin/init", "/usr/sbin/init", "/bin/init")
SYSTEMD_BINARIES = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")
OPENRC_FILES = ("/sbin/openrc", "/usr/sbin/openrc", "/sbin/openrc-run", "/usr/sbin/openrc-run")
INIT_SYSTEMS = ("systemd", "openrc", "sysvinit")


def _resolved(tree: GuestTree, path: str) -> str | None:
    """Canonical guest path of ``path`` with every link followed; None if it leads nowhere."""
    def lookup(candidate: str) -> tuple[FileType, str | None] | None:
        info = tree.stat(candidate)
        if info is None:
            return None
        return info.type, tree.readlink(candidate) if info.type == "symlink" else None

    canonical = resolve_path(path, True, lookup)
    return canonical if canonical is not None and tree.stat(canonical) is not None else None


def detect_init(tree: GuestTree) -> dict[str, Any]:
    """``{"name": "systemd" | "openrc" | "sysvinit" | None, "evidence": what decided it}``; another
    init (runit, s6) is named after the binary ``/sbin/init`` leads to."""
    openrc = next((path for path in OPENRC_FILES if exists(tree, path)), None)
    for path in INIT_PATHS:
        target = _resolved(tree, path)
        if target is None:
            continue
        via = f"{path} -> {target}" if target != path else path
        if posixpath.basename(target) == "systemd":
            return {"name": "systemd", "evidence": via}
        if openrc is not None:
            return {"name": "openrc", "evidence": f"{via}; {openrc}"}
        name = posixpath.basename(target)
        return {"name": "sysvinit" if name in ("busybox", "init") else name, "evidence": via}
    systemd = next((path for path in SYSTEMD_BINARIES if exists(tree, path)), None)
    if systemd is not None:
        return {"name": "systemd", "evidence": systemd}
    if openrc is not None:
        return {"name": "openrc", "evidence": openrc}
    return {"name": None, "evidence": f"none of {', '.join(INIT_PATHS + SYSTEMD_BINARIES + OPENRC_FILES[:1])}"}
