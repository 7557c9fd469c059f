"""What each check is about: an init system, the kernel, a package, files, or Windows. A guest without its
subject gets the check reported "not applicable", with the reason, before the check runs.

The init system is the one the guest boots (``handlers.guestos.initsystem``) and the kernel the one
it boots (its boot entry's, or the newest installed), never assumed from the distribution's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.guestos.common import exists

if TYPE_CHECKING:
    from handlers.guestos.checks.base import Facts


@dataclass(frozen=True)
class Subject:
    kind: str  # "init", "kernel", "package", "file" or "os"
    name: str
    #: why the guest lacks the subject; None when it has it
    absent: Callable[[Facts], str | None]

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}


def init(name: str | None = None) -> Subject:
    """The guest boots an init system (``name``: that one) that starts services."""
    def absent(facts: Facts) -> str | None:
        booted = facts.init
        if booted["name"] is None:
            return f"the guest boots no init system ({booted['evidence']} found)"
        if name is not None and booted["name"] != name:
            return f"the guest boots {booted['name']}, not {name} ({booted['evidence']})"
        return None
    return Subject("init", name or "any init system", absent)


def kernel() -> Subject:
    """A kernel is installed: its built-in defaults are what an unset sysctl means."""
    def absent(facts: Facts) -> str | None:
        return None if facts.booted_kernel is not None else "no kernel is installed (no /boot/vmlinuz-*)"
    return Subject("kernel", "an installed kernel", absent)


def package(name: str) -> Subject:
    def absent(facts: Facts) -> str | None:
        return None if name in facts.package_names else f"{name} is not installed"
    return Subject("package", name, absent)


def files(what: str, *paths: str) -> Subject:
    """``what`` is present when any of ``paths`` is."""
    def absent(facts: Facts) -> str | None:
        if any(exists(facts.tree, path) for path in paths):
            return None
        return f"{what} is not on this guest (no {' / '.join(paths)})"
    return Subject("file", what, absent)


def windows() -> Subject:
    """The guest is Windows: its SYSTEM registry hive can be read."""
    def absent(facts: Facts) -> str | None:
        if facts.hives.get("SYSTEM") is not None:
            return None
        return facts.hive_warnings.get("SYSTEM") or "the guest is not Windows (no /Windows/System32/config/SYSTEM)"
    return Subject("os", "Windows", absent)


SSHD = files("sshd", "/etc/ssh/sshd_config")
FSTAB = files("a file system table", "/etc/fstab")
PASSWD = files("the account database", "/etc/passwd")
SHADOW = files("shadow passwords", "/etc/shadow")
SUDO = files("sudo", "/etc/sudoers")
LOGIN_DEFS = files("login.defs", "/etc/login.defs")
SELINUX = files("SELinux", "/etc/selinux/config")
APPARMOR = files("AppArmor", "/etc/apparmor.d")
SERVICES = init()
SYSTEMD = init("systemd")
KERNEL = kernel()
WINDOWS = windows()
