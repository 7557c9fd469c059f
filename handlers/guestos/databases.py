"""Database servers installed in a guest: known server packages and their data directories."""

from __future__ import annotations

import re
from typing import Any

from handlers.guestos.common import exists
from handlers.tree import GuestTree

#: engine -> (server package name pattern, data directories)
ENGINES: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {
    "postgresql": (re.compile(r"^postgresql(-?\d+)?(-server)?$"), ("/var/lib/postgresql", "/var/lib/pgsql")),
    "mysql": (re.compile(r"^mysql-(community-)?server(-core)?(-[\d.]+)?$"), ("/var/lib/mysql",)),
    "mariadb": (re.compile(r"^mariadb-server(-core)?(-[\d.]+)?$"), ("/var/lib/mysql",)),
    "mongodb": (re.compile(r"^mongodb(-org)?-server$"), ("/var/lib/mongodb", "/var/lib/mongo")),
    "redis": (re.compile(r"^redis(-server)?$"), ("/var/lib/redis",)),
}


def read_databases(tree: GuestTree, packages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Engines with an installed server package (``packages`` from ``read_packages``)."""
    names = sorted({p["name"] for p in packages})
    found = []
    for engine, (pattern, data_dirs) in ENGINES.items():
        installed = [name for name in names if pattern.match(name)]
        if installed:
            data_dir = next((d for d in data_dirs if exists(tree, d)), None)
            found.append({"engine": engine, "packages": installed, "data_dir": data_dir})
    return found
