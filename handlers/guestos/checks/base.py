"""The check catalogue's building blocks: facts read once per guest, checks, evidence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from handlers.guestos.accounts import Record, read_records, sudo_principals
from handlers.guestos.checks.subjects import Subject, files
from handlers.guestos.common import Setting, exists
from handlers.guestos.kernelconfig import read_kernel_config
from handlers.guestos.kernels import read_kernels
from handlers.guestos.logindefs import read_login_defs
from handlers.guestos.packages import read_packages
from handlers.guestos.security.apparmor import read_apparmor
from handlers.guestos.security.firewall import read_firewall
from handlers.guestos.security.selinux import selinux_settings
from handlers.guestos.security.sshd import effective_sshd
from handlers.guestos.services import read_services
from handlers.guestos.storage import FSTAB, read_fstab_entries
from handlers.guestos.sysctl import read_sysctl
from handlers.guestos.windows.hives import Hive, open_hive
from handlers.tree import GuestTree

if TYPE_CHECKING:
    from handlers.guestimage.fstab import FstabEntry

Evidence = dict[str, Any]
PROFILES = ("security", "compliance", "hardening", "performance")


class NotApplicable(Exception):
    """Raised by a check that cannot apply to this guest (no SELinux on Debian, no sshd, ...)."""


def evidence(file: str, line: int | None, text: str) -> Evidence:
    return {"file": file, "line": line, "text": text}


class Facts:
    """What the checks read, each parsed at most once per guest."""

    def __init__(self, tree: GuestTree) -> None:
        self.tree = tree

    @cached_property
    def services(self) -> dict[str, Any]:
        return read_services(self.tree)

    @cached_property
    def init(self) -> dict[str, Any]:
        """The init system the guest boots: ``{"name", "evidence"}``."""
        return self.services["init"]

    @cached_property
    def kernels(self) -> list[dict[str, Any]]:
        return read_kernels(self.tree)

    @cached_property
    def booted_kernel(self) -> dict[str, Any] | None:
        """The kernel the boot loader starts by default, else the newest one installed."""
        return next((k for k in self.kernels if k["default"]), self.kernels[-1] if self.kernels else None)

    @cached_property
    def kernel_config(self) -> tuple[str, dict[str, str]] | None:
        """(path, options) of the booted kernel's build configuration, if the guest keeps it."""
        return None if self.booted_kernel is None else read_kernel_config(self.tree, self.booted_kernel)

    @cached_property
    def sshd(self) -> dict[str, Setting]:
        if not exists(self.tree, "/etc/ssh/sshd_config"):
            raise NotApplicable("sshd is not installed (no /etc/ssh/sshd_config)")
        return effective_sshd(self.tree)

    @cached_property
    def login_defs(self) -> dict[str, Setting]:
        return read_login_defs(self.tree)

    @cached_property
    def sysctl(self) -> dict[str, Setting]:
        return read_sysctl(self.tree)

    @cached_property
    def fstab(self) -> list[FstabEntry]:
        return read_fstab_entries(self.tree)

    @cached_property
    def passwd(self) -> list[Record]:
        return read_records(self.tree, "/etc/passwd", 7)

    @cached_property
    def shadow(self) -> list[Record]:
        return read_records(self.tree, "/etc/shadow", 2)

    @cached_property
    def selinux(self) -> dict[str, Setting]:
        return selinux_settings(self.tree)

    @cached_property
    def apparmor(self) -> dict[str, Any] | None:
        return read_apparmor(self.tree)

    @cached_property
    def firewall(self) -> dict[str, Any]:
        return read_firewall(self.tree, self.services)

    @cached_property
    def package_names(self) -> set[str]:
        return {p["name"] for p in read_packages(self.tree)["packages"]}

    @cached_property
    def sudo(self) -> tuple[set[str], set[str]]:
        return sudo_principals(self.tree)

    @cached_property
    def _registry(self) -> tuple[dict[str, Hive | None], dict[str, str]]:
        hives: dict[str, Hive | None] = {}
        warnings: dict[str, str] = {}
        for name in ("SYSTEM", "SOFTWARE", "SAM"):
            hives[name], warning = open_hive(self.tree, name)
            if warning is not None:
                warnings[name] = warning
        return hives, warnings

    @property
    def hives(self) -> dict[str, Hive | None]:
        """A Windows guest's SYSTEM, SOFTWARE and SAM hives (None where missing or unreadable)."""
        return self._registry[0]

    @property
    def hive_warnings(self) -> dict[str, str]:
        return self._registry[1]

    def fstab_entry(self, mountpoint: str) -> FstabEntry | None:
        return next((e for e in self.fstab if e.mountpoint.rstrip("/") == mountpoint.rstrip("/")), None)

    def fstab_evidence(self, entry: FstabEntry) -> Evidence:
        fields = [entry.spec, entry.mountpoint, entry.fstype, ",".join(entry.options), str(entry.dump),
                  str(entry.passno)]
        return evidence(FSTAB, entry.line, " ".join(fields))


@dataclass(frozen=True)
class Check:
    id: str
    profile: str
    severity: str
    title: str
    description: str
    remediation: str
    references: tuple[str, ...]
    subject: Subject
    run: Callable[[Facts], list[Evidence]]

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "profile": self.profile, "severity": self.severity, "title": self.title,
                "description": self.description, "remediation": self.remediation,
                "references": list(self.references)}


CATALOGUE: list[Check] = []


def check(id: str, profile: str, severity: str, title: str, description: str, remediation: str,
          references: tuple[str, ...] = (), *, subject: Subject) -> Callable[[Callable[[Facts], list[Evidence]]],
                                                                            Callable]:
    """Register a check function (returns evidence, one item per problem; empty when it passes) about
    ``subject``: a guest without it gets the check reported not applicable."""
    assert profile in PROFILES, profile

    def register(run: Callable[[Facts], list[Evidence]]) -> Callable[[Facts], list[Evidence]]:
        assert all(c.id != id for c in CATALOGUE), f"duplicate check id {id}"
        CATALOGUE.append(Check(id, profile, severity, title, description, remediation, references, subject, run))
        return run
    return register


def cis(*sections: str) -> tuple[str, ...]:
    """References into the CIS Distribution Independent Linux Benchmark v2.0.0."""
    return tuple(f"CIS Distribution Independent Linux v2.0.0 {section}" for section in sections)


def mode_check(id: str, profile: str, severity: str, paths: tuple[str, ...], forbidden: int, title: str,
               references: tuple[str, ...] = ()) -> None:
    """A check that fires when the first existing file of ``paths`` has any ``forbidden`` mode bit."""
    allowed = 0o777 & ~forbidden

    @check(id, profile, severity, title,
           f"{' or '.join(paths)} must not have permissions beyond {allowed:04o}.",
           f"chown root:root the file and chmod it to {allowed:04o} or stricter.", references,
           subject=files(paths[0], *paths))
    def run(facts: Facts) -> list[Evidence]:
        for path in paths:
            info = facts.tree.stat(path)
            if info is not None:
                return [evidence(path, None, f"mode {info.mode:04o}")] if info.mode & forbidden else []
        raise NotApplicable(f"{' / '.join(paths)} not present")
