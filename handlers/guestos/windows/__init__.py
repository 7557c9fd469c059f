"""Windows guests, read from their registry (``hives``): the release and names (``system``),
installed applications (``software``) and services (``services``)."""

from __future__ import annotations

from typing import Any

from handlers.guestos.windows.hives import open_hive
from handlers.guestos.windows.services import windows_services
from handlers.guestos.windows.software import installed_applications
from handlers.guestos.windows.system import mounted_devices, names, time_zone, windows_os
from handlers.tree import GuestTree

__all__ = ["read_windows"]


def read_windows(tree: GuestTree) -> dict[str, Any]:
    """The report sections of a Windows guest: ``os``, ``timezone``, ``packages`` (its applications),
    ``services``, ``windows`` (what only Windows has) and ``warnings`` (hives read as they stand)."""
    software, software_warning = open_hive(tree, "SOFTWARE")
    system, system_warning = open_hive(tree, "SYSTEM")
    warnings = [w for w in (software_warning, system_warning) if w]
    identity = names(system) if system else {"computer_name": None, "hostname": None, "dns_domain": None}
    os_facts = windows_os(software, system) | {"hostname": identity["hostname"] or identity["computer_name"]}
    applications = installed_applications(software) if software else []
    return {
        "os": os_facts,
        "timezone": time_zone(system) if system else None,
        "packages": {"format": "windows", "source": software.path if software else None, "count": len(applications),
                     "installed": applications, "warning": software_warning},
        "services": windows_services(system) if system else [],
        "windows": {"computer_name": identity["computer_name"], "dns_domain": identity["dns_domain"],
                    "mounted_devices": mounted_devices(system) if system else {}},
        "warnings": warnings,
    }
