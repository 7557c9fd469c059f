"""Alpine's installed packages: apk-tools' text database ``/lib/apk/db/installed``.

One block per package, blocks apart by an empty line, each line ``<letter>:<value>``:
``P`` name, ``V`` version (``<pkgver>-r<n>``), ``A`` arch, ``o`` origin (the source package),
``L`` licence, ``I`` installed size in bytes, ``t`` build time (Unix time), ``m`` maintainer,
``T`` description; file lines (``F``, ``R``, ``Z``...) are skipped. apk keeps no install time.
"""

from __future__ import annotations

from typing import Any

from handlers.tree import GuestTree, read_text

APK_INSTALLED = "/lib/apk/db/installed"
#: an installed database lists every file of every package: tens of MiB on a large guest
MAX_APK_DB_BYTES = 256 * 1024 * 1024
#: packages read from one database at most
MAX_PACKAGES = 200_000


def split_apk_version(text: str) -> tuple[str, str | None]:
    """``1.36.1-r2`` -> (``1.36.1``, ``r2``): apk's package release follows the last ``-r``."""
    version, sep, release = text.rpartition("-r")
    if sep and release.isdigit() and version:
        return version, f"r{release}"
    return text, None


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _package(fields: dict[str, str]) -> dict[str, Any]:
    version, release = split_apk_version(fields.get("V", ""))
    return {
        "name": fields["P"], "epoch": None, "version": version or None, "release": release,
        "arch": fields.get("A") or None, "origin": fields.get("o") or None, "license": fields.get("L") or None,
        "size": _number(fields.get("I")), "install_time": None, "build_time": _number(fields.get("t")),
        "maintainer": fields.get("m") or None, "summary": fields.get("T") or None,
    }


def parse_apk_installed(text: str) -> list[dict[str, Any]]:
    """The packages of an apk ``installed`` database, in file order (at most ``MAX_PACKAGES``)."""
    packages: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields.get("P") and len(packages) < MAX_PACKAGES:
                packages.append(_package(fields))
            fields = {}
            continue
        key, sep, value = line.partition(":")
        if sep and len(key) == 1:
            fields.setdefault(key, value.strip())  # the package's own lines come before its files'
    return packages


def read_apk_packages(tree: GuestTree) -> tuple[list[dict[str, Any]], str | None] | None:
    """(packages, warning) of the guest's apk database; None when it has none. A database larger
    than ``MAX_APK_DB_BYTES`` is read that far, and the warning says so."""
    info = tree.stat(APK_INSTALLED)
    text = read_text(tree, APK_INSTALLED, limit=MAX_APK_DB_BYTES)
    if text is None:
        return None
    packages = parse_apk_installed(text)
    warning = None
    if info is not None and info.size > MAX_APK_DB_BYTES:
        warning = f"{APK_INSTALLED}: {info.size} bytes, only the first {MAX_APK_DB_BYTES} were read"
    elif len(packages) >= MAX_PACKAGES:
        warning = f"{APK_INSTALLED}: more than {MAX_PACKAGES} packages; the rest were not read"
    return packages, warning
