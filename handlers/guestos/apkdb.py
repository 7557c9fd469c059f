"""Alpine's installed packages: apk-tools' text database ``/lib/apk/db/installed``.

One block per package, blocks apart by an empty line, each line ``<letter>:<value>``:
``P`` name, ``V`` version (``<pkgver>-r<n>``), ``A`` arch, ``o`` origin (the source package),
``L`` licence, ``I`` installed size in bytes, ``t`` build time (Unix time), ``m`` maintainer,
``T`` description; file lines (``F``, ``R``, ``Z``...) are skipped. apk keeps no install time.
"""

from __future__ import annotations

import itertools
from typing import Any

from handlers.tree import GuestTree, note_truncation, read_text

APK_INSTALLED = "/lib/apk/db/installed"


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


def parse_apk_installed(text: str, most: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The packages of an apk ``installed`` database in file order, the first ``most`` of them, and
    how many it lists."""
    packages: list[dict[str, Any]] = []
    listed = 0
    fields: dict[str, str] = {}
    for line in itertools.chain(text.splitlines(), [""]):
        if not line.strip():
            if fields.get("P"):
                listed += 1
                if most is None or len(packages) < most:
                    packages.append(_package(fields))
            fields = {}
            continue
        key, sep, value = line.partition(":")
        if sep and len(key) == 1:
            fields.setdefault(key, value.strip())  # the package's own lines come before its files'
    return packages, listed


def read_apk_packages(tree: GuestTree) -> tuple[list[dict[str, Any]], str | None] | None:
    """(packages, warning) of the guest's apk database; None when it has none."""
    text = read_text(tree, APK_INSTALLED, config=False)
    if text is None:
        return None
    most = tree.limits.max_entries
    packages, listed = parse_apk_installed(text, most)
    if listed > most:
        note_truncation(tree, APK_INSTALLED, "max_entries", most, listed)
    return packages, None
