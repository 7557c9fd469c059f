"""Arch's installed packages: pacman's local database, one ``/var/lib/pacman/local/<name>-<version>/desc``
per package.

A ``desc`` file is sections ``%NAME%`` followed by their value lines, apart by an empty line:
``%NAME%``, ``%VERSION%`` (``[epoch:]pkgver-pkgrel``), ``%BASE%`` (the source package), ``%DESC%``,
``%ARCH%``, ``%BUILDDATE%`` and ``%INSTALLDATE%`` (Unix time), ``%PACKAGER%``, ``%SIZE%`` (bytes
installed), ``%REASON%`` (``1``: installed as a dependency; absent: explicitly), ``%LICENSE%`` (one
line per licence).
"""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import split_epoch_version
from handlers.tree import GuestTree, note_truncation, read_text

PACMAN_LOCAL = "/var/lib/pacman/local"
#: one package's desc: a few hundred bytes, a few KiB with a long dependency list
MAX_DESC_BYTES = 1024 * 1024


def parse_desc(text: str) -> dict[str, list[str]]:
    """Section name (without the ``%``) -> its value lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if len(line) > 2 and line.startswith("%") and line.endswith("%"):
            current = sections.setdefault(line[1:-1], [])
        elif not line:
            current = None
        elif current is not None:
            current.append(line)
    return sections


def _first(sections: dict[str, list[str]], name: str) -> str | None:
    values = sections.get(name)
    return values[0] if values else None


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def package_from_desc(text: str) -> dict[str, Any] | None:
    """The package a desc file describes; None when it names none."""
    sections = parse_desc(text)
    name = _first(sections, "NAME")
    if not name:
        return None
    epoch, version, release = split_epoch_version(_first(sections, "VERSION") or "")
    licences = sections.get("LICENSE") or []
    return {
        "name": name, "epoch": epoch, "version": version or None, "release": release,
        "arch": _first(sections, "ARCH"), "origin": _first(sections, "BASE"),
        "license": " AND ".join(licences) or None, "size": _number(_first(sections, "SIZE")),
        "install_time": _number(_first(sections, "INSTALLDATE")), "build_time": _number(_first(sections, "BUILDDATE")),
        "packager": _first(sections, "PACKAGER"), "explicit": _first(sections, "REASON") in (None, "0"),
        "summary": _first(sections, "DESC"),
    }


def read_pacman_packages(tree: GuestTree) -> tuple[list[dict[str, Any]], str | None] | None:
    """(packages, warning) of the guest's pacman database; None when it has none. A package folder
    whose desc is missing or names no package is left out, and counted in the warning."""
    entries = tree.listdir(PACMAN_LOCAL)
    if entries is None:
        return None
    packages, unreadable = [], []
    folders = sorted(entry for entry in entries if entry != "ALPM_DB_VERSION")
    most = tree.limits.max_entries
    if len(folders) > most:
        note_truncation(tree, PACMAN_LOCAL, "max_entries", most, len(folders))
    for entry in folders[:most]:
        text = read_text(tree, f"{PACMAN_LOCAL}/{entry}/desc", limit=MAX_DESC_BYTES, config=False)
        package = package_from_desc(text) if text is not None else None
        if package is None:
            unreadable.append(entry)
        else:
            packages.append(package)
    warning = None
    if unreadable:
        warning = (f"{PACMAN_LOCAL}: {len(unreadable)} package folders without a readable desc file "
                   f"(first: {unreadable[0]!r})")
    return packages, warning
