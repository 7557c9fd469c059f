"""Distribution facts: os-release, version numbers, package format and manager."""

from __future__ import annotations

import re
from typing import Any

from handlers.guestos.arch import detect_architecture
from handlers.guestos.common import exists, parse_settings
from handlers.tree import GuestTree, read_text

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")

#: distribution id (or an id_like entry) -> (package format, package managers in preference order)
_PACKAGING: dict[str, tuple[str, tuple[str, ...]]] = {
    "debian": ("deb", ("apt", "dpkg")),
    "ubuntu": ("deb", ("apt", "dpkg")),
    "rhel": ("rpm", ("dnf", "yum", "rpm")),
    "fedora": ("rpm", ("dnf", "yum", "rpm")),
    "centos": ("rpm", ("dnf", "yum", "rpm")),
    "suse": ("rpm", ("zypper", "rpm")),
    "opensuse": ("rpm", ("zypper", "rpm")),
    "arch": ("pacman", ("pacman",)),
    "alpine": ("apk", ("apk",)),
}


#: distribution id (or an id_like entry) -> its family (Fedora and its derivatives: "rhel")
_FAMILIES: dict[str, str] = {
    **dict.fromkeys(("rhel", "centos", "fedora", "rocky", "almalinux", "ol", "amzn", "cloudlinux", "scientific",
                     "eurolinux", "navix", "circle"), "rhel"),
    **dict.fromkeys(("debian", "ubuntu"), "debian"),
    **dict.fromkeys(("suse", "sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed"), "suse"),
    "arch": "arch", "alpine": "alpine",
}
#: release files of the RHEL family, the most specific first: they keep the minor version that
#: os-release leaves out on CentOS 7 (``VERSION_ID="7"``)
_RHEL_RELEASE_FILES = ("/etc/centos-release", "/etc/rocky-release", "/etc/almalinux-release",
                       "/etc/oracle-release", "/etc/redhat-release", "/etc/system-release")


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of an os-release file, values unquoted."""
    return {s.key: s.value for s in parse_settings(text, "/etc/os-release")}


#: release files of guests older than os-release: path -> distribution id
_LEGACY_RELEASE_FILES = {"/etc/centos-release": "centos", "/etc/fedora-release": "fedora",
                         "/etc/redhat-release": "rhel"}
_LEGACY_RELEASE = re.compile(r"^(?P<name>.+?)\s+release\s+(?P<version>\d+(?:\.\d+)*)")


def _legacy_release(tree: GuestTree) -> dict[str, str]:
    """os-release fields recovered from /etc/redhat-release and friends, or /etc/debian_version."""
    for path, ident in _LEGACY_RELEASE_FILES.items():
        match = _LEGACY_RELEASE.match((read_text(tree, path) or "").strip())
        if match:
            name = match.group("name")
            if ident == "rhel" and "CentOS" in name:
                ident = "centos"
            return {"ID": ident, "NAME": name, "VERSION_ID": match.group("version"),
                    "PRETTY_NAME": (read_text(tree, path) or "").strip()}
    if read_text(tree, "/etc/debian_version") is not None:
        return {"ID": "debian", "NAME": "Debian GNU/Linux"}
    alpine = (read_text(tree, "/etc/alpine-release", limit=256) or "").strip()
    if re.fullmatch(r"\d+(\.\d+)*", alpine):
        return {"ID": "alpine", "NAME": "Alpine Linux", "VERSION_ID": alpine}
    if exists(tree, "/etc/arch-release"):  # empty: Arch is rolling, it has no version
        return {"ID": "arch", "NAME": "Arch Linux"}
    return {}


def read_os_release(tree: GuestTree) -> dict[str, str]:
    """os-release fields; guests without os-release fall back to their legacy release files."""
    for path in OS_RELEASE_PATHS:
        text = read_text(tree, path)
        if text is not None:
            return parse_os_release(text)
    return _legacy_release(tree)


def _version_numbers(version: str | None) -> tuple[int | None, int | None]:
    match = re.match(r"^(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def _precise_version(tree: GuestTree, distribution: str | None, family: str | None,
                     version_id: str | None) -> str | None:
    """Debian keeps the point release only in /etc/debian_version (os-release says ``12``); CentOS 7
    only in /etc/centos-release (os-release says ``7``, the release file ``7.9.2009``). A release
    file of another major version (or none: CentOS Stream has no minor) changes nothing."""
    if distribution == "debian":
        text = (read_text(tree, "/etc/debian_version") or "").strip()
        if re.match(r"^\d+(\.\d+)*$", text):
            return text
    if family == "rhel" and version_id and "." not in version_id and distribution != "fedora":
        for path in _RHEL_RELEASE_FILES:
            match = _LEGACY_RELEASE.match((read_text(tree, path, limit=4096) or "").strip())
            if match:
                found = match.group("version")
                return found if found.split(".")[0] == version_id else version_id
    return version_id


def _family(ids: list[str]) -> str | None:
    return next((_FAMILIES[ident] for ident in ids if ident in _FAMILIES), None)


#: where a package manager's command is looked for (Alpine's apk is /sbin/apk)
_BIN_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def _packaging(tree: GuestTree, ids: list[str]) -> tuple[str | None, str | None]:
    for ident in ids:
        if ident in _PACKAGING:
            fmt, managers = _PACKAGING[ident]
            for manager in managers:
                if any(exists(tree, f"{directory}/{manager}") for directory in _BIN_DIRS):
                    return fmt, manager
            return fmt, managers[-1]
    if exists(tree, "/var/lib/dpkg/status"):
        return "deb", "dpkg"
    if exists(tree, "/var/lib/rpm"):
        return "rpm", "rpm"
    if exists(tree, "/lib/apk/db/installed"):
        return "apk", "apk"
    if exists(tree, "/var/lib/pacman/local"):
        return "pacman", "pacman"
    return None, None


def detect_os(tree: GuestTree) -> dict[str, Any]:
    """The ``os`` section of the inspect report (without the hostname)."""
    release = read_os_release(tree)
    distribution = release.get("ID", "").lower() or None
    id_like = release.get("ID_LIKE", "").lower().split()
    family = _family(([distribution] if distribution else []) + id_like)
    version = _precise_version(tree, distribution, family, release.get("VERSION_ID"))
    major, minor = _version_numbers(version)
    fmt, manager = _packaging(tree, ([distribution] if distribution else []) + id_like)
    if release or exists(tree, "/etc/passwd"):
        os_type = "linux"
    elif exists(tree, "/Windows/System32"):
        os_type = "windows"
        family = "windows"
    else:
        os_type = "unknown"
    return {
        "type": os_type,
        "distribution": distribution,
        "name": release.get("NAME"),
        "pretty_name": release.get("PRETTY_NAME"),
        "version": version,
        "version_major": major,
        "version_minor": minor,
        "codename": release.get("VERSION_CODENAME") or None,
        "id_like": id_like,
        "family": family,
        "architecture": detect_architecture(tree),
        "package_format": fmt,
        "package_manager": manager,
    }
