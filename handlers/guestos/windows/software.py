"""Installed applications (the Uninstall keys of the SOFTWARE hive, 64-bit and 32-bit: WOW6432Node)
and installed updates (the component store's packages named for a KB article)."""

from __future__ import annotations

import re
from typing import Any

from handlers.guestos.windows.hives import Hive

CBS_PACKAGES = "Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages"
_KB = re.compile(r"_for_(KB\d+)~", re.IGNORECASE)
UNINSTALL_KEYS = {"x64": "Microsoft\\Windows\\CurrentVersion\\Uninstall",
                  "x86": "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall"}


def _date(text: Any) -> str | None:  # noqa: ANN401 - whatever the value holds
    """``InstallDate`` as installers write it (``YYYYMMDD``) in ISO form; None otherwise."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", str(text or "").strip())
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


def installed_applications(software: Hive) -> list[dict[str, Any]]:
    """Applications with a display name, as Programs and Features lists them: name, version,
    publisher, install date and location, and the key they are registered under."""
    found = []
    for arch, path in UNINSTALL_KEYS.items():
        for key in software.subkeys(path):
            values = software.values(key)
            name = values.get("DisplayName")
            if not isinstance(name, str) or not name.strip():
                continue
            found.append({"name": name.strip(), "version": values.get("DisplayVersion"), "arch": arch,
                          "publisher": values.get("Publisher"), "install_date": _date(values.get("InstallDate")),
                          "install_location": values.get("InstallLocation") or None, "key": key.name})
    return sorted(found, key=lambda app: (app["name"].casefold(), app["arch"], app["version"] or ""))


def hotfixes(software: Hive) -> list[str]:
    """KB articles of the installed update packages (``Package_for_KB5034129~…``), each once."""
    found = {match.group(1).upper() for key in software.subkeys(CBS_PACKAGES) if (match := _KB.search(key.name))}
    return sorted(found, key=lambda kb: int(kb[2:]))
