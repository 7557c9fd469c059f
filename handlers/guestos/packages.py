"""Installed packages: dpkg status (deb), the rpm database (rpm), apk's (Alpine) and pacman's (Arch)."""

from __future__ import annotations

from typing import Any

from handlers.guestos.apkdb import APK_INSTALLED, read_apk_packages
from handlers.guestos.common import split_epoch_version
from handlers.guestos.pacmandb import PACMAN_LOCAL, read_pacman_packages
from handlers.guestos.rpmdb import read_rpm_packages
from handlers.tree import GuestTree, read_text

DPKG_STATUS = "/var/lib/dpkg/status"
#: a status file with tens of thousands of packages is ~100 MiB
MAX_STATUS_BYTES = 512 * 1024 * 1024
_INSTALLED = ("installed",)


def parse_dpkg_status(text: str) -> list[dict[str, Any]]:
    """Installed packages of a dpkg status file (``Status: ... installed``), sorted by name and arch."""
    packages = []
    for stanza in text.split("\n\n"):
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
    status = read_text(tree, DPKG_STATUS, limit=MAX_STATUS_BYTES)
    if status is not None:
        return {"format": "deb", "source": DPKG_STATUS, "packages": parse_dpkg_status(status), "warning": None}
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
