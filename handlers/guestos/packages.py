"""Installed packages: dpkg status (deb), the rpm database (rpm), apk's (Alpine) and pacman's (Arch)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from handlers.guestos.apkdb import APK_INSTALLED, read_apk_packages
from handlers.guestos.common import split_epoch_version
from handlers.guestos.pacmandb import PACMAN_LOCAL, read_pacman_packages
from handlers.guestos.rpmdb import read_rpm_packages
from handlers.tree import GuestTree, note_truncation, read_text

DPKG_STATUS = "/var/lib/dpkg/status"
_INSTALLED = ("installed",)


def _stanzas(text: str) -> Iterator[str]:
    """The stanzas of a dpkg status file, one at a time (a split would copy the whole file at once)."""
    start = 0
    while start < len(text):
        end = text.find("\n\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 2


def parse_dpkg_status(text: str, most: int | None = None) -> list[dict[str, Any]]:
    """Installed packages of a dpkg status file (``Status: ... installed``) among its first ``most``
    stanzas, sorted by name and arch."""
    packages = []
    for stanza in itertools.islice(_stanzas(text), most):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        status = fields.get("Status", "").split()
        if not fields.get("Package") or not status or status[-1] not in _INSTALLED:
            continue
        epoch, version, release = split_epoch_version(fields.get("Version", ""))
        packages.append({"name": fields["Package"], "epoch": epoch, "version": version, "release": release,
                         "arch": fields.get("Architecture")})
    return sort_packages(packages)


def sort_packages(packages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(packages, key=lambda p: (p["name"], p["arch"] or "", p["version"] or "", p["release"] or ""))


def read_packages(tree: GuestTree) -> dict[str, Any]:
    """``{"format", "source", "packages", "warning"}``; format None when no database was found."""
    status = read_text(tree, DPKG_STATUS, config=False)
    if status is not None:
        most = tree.limits.max_entries
        stanzas = status.count("\nPackage:") + status.startswith("Package:")
        if stanzas > most:
            note_truncation(tree, DPKG_STATUS, "max_entries", most, stanzas)
        return {"format": "deb", "source": DPKG_STATUS, "packages": parse_dpkg_status(status, most), "warning": None}
    rpmdb = read_rpm_packages(tree)
    if rpmdb is not None:
        path, rpms, warning = rpmdb
        return {"format": "rpm", "source": path, "packages": sort_packages(rpms), "warning": warning}
    readers = (("apk", APK_INSTALLED, read_apk_packages), ("pacman", PACMAN_LOCAL, read_pacman_packages))
    for fmt, source, read in readers:
        found = read(tree)
        if found is not None:
            return {"format": fmt, "source": source, "packages": sort_packages(found[0]), "warning": found[1]}
    return {"format": None, "source": None, "packages": [], "warning": None}


def package_key(package: dict[str, Any]) -> tuple[str, str]:
    return package["name"], package["arch"] or ""


def format_version(package: dict[str, Any]) -> str:
    """``epoch:version-release`` as the package manager prints it."""
    text = package["version"] or ""
    if package.get("release"):
        text += f"-{package['release']}"
    if package.get("epoch") is not None:
        text = f"{package['epoch']}:{text}"
    return text
