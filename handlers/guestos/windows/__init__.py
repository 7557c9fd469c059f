"""Windows guests, read from their registry (``hives``): the release and names (``system``),
installed applications and updates (``software``), services (``services``), local users and groups
(``accounts``), network adapters (``network``), Defender, firewall and Remote Desktop (``security``)."""

from __future__ import annotations

from typing import Any

from handlers.guestos.windows.accounts import local_groups, local_users
from handlers.guestos.windows.hives import open_hive
from handlers.guestos.windows.network import windows_dns, windows_interfaces
from handlers.guestos.windows.security import windows_security
from handlers.guestos.windows.services import windows_services
from handlers.guestos.windows.software import hotfixes, installed_applications
from handlers.guestos.windows.system import membership, mounted_devices, names, time_zone, windows_os
from handlers.tree import GuestTree

__all__ = ["read_windows"]


def read_windows(tree: GuestTree) -> dict[str, Any]:
    """The report sections of a Windows guest: ``os``, ``timezone``, ``packages`` (its applications),
    ``services``, ``users`` and ``groups`` (local ones), ``network``, ``windows`` (what only Windows has) and
    ``warnings`` (hives read as they stand, or not read)."""
    software, software_warning = open_hive(tree, "SOFTWARE")
    system, system_warning = open_hive(tree, "SYSTEM")
    sam, sam_warning = open_hive(tree, "SAM")
    security, security_warning = open_hive(tree, "SECURITY")
    warnings = [w for w in (software_warning, system_warning, sam_warning, security_warning) if w]
    users = local_users(sam) if sam else []
    groups = local_groups(sam, users) if sam else []
    identity = names(system) if system else {"computer_name": None, "hostname": None, "dns_domain": None}
    os_facts = windows_os(software, system) | {"hostname": identity["hostname"] or identity["computer_name"]}
    applications = installed_applications(software) if software else []
    return {
        "os": os_facts,
        "timezone": time_zone(system) if system else None,
        "packages": {"format": "windows", "source": software.path if software else None, "count": len(applications),
                     "installed": applications, "warning": software_warning},
        "services": windows_services(system) if system else [],
        "users": users,
        "groups": groups,
        "network": {"interfaces": windows_interfaces(system) if system else [],
                    "dns": windows_dns(system) if system else {"nameservers": [], "search": []}},
        "windows": {"computer_name": identity["computer_name"], "dns_domain": identity["dns_domain"],
                    "membership": membership(security), "mounted_devices": mounted_devices(system) if system else {},
                    "hotfixes": hotfixes(software) if software else [], **windows_security(software, system)},
        "warnings": warnings,
    }
