"""Network adapters of a Windows guest: each TCP/IP interface of the control set Windows boots, by
the connection name Windows shows (``Control\\Network``), with its static or DHCP addresses, gateway
and DNS servers; and the machine's DNS settings."""

from __future__ import annotations

import re
from typing import Any

from handlers.guestos.network.iface import interface, with_prefix
from handlers.guestos.windows.hives import Hive
from handlers.guestos.windows.system import control_set

NETWORK_CLASS = "{4D36E972-E325-11CE-BFC1-08002BE10318}"


def _list(value: Any) -> list[str]:  # noqa: ANN401 - a REG_SZ (comma or space separated) or REG_MULTI_SZ
    items = value if isinstance(value, list) else re.split(r"[\s,]+", value or "") if isinstance(value, str) else []
    return [item.strip() for item in items if item.strip() and item.strip() != "0.0.0.0"]


def windows_interfaces(system: Hive) -> list[dict[str, Any]]:
    control = control_set(system)
    interfaces = []
    for key in system.subkeys(f"{control}\\Services\\Tcpip\\Parameters\\Interfaces"):
        values = system.values(key)
        dhcp = values.get("EnableDHCP") == 1
        if dhcp:
            addresses, masks = _list(values.get("DhcpIPAddress")), _list(values.get("DhcpSubnetMask"))
            gateways, dns = _list(values.get("DhcpDefaultGateway")), _list(values.get("DhcpNameServer"))
            dns = _list(values.get("NameServer")) or dns  # set by hand, it wins over DHCP's
        else:
            addresses, masks = _list(values.get("IPAddress")), _list(values.get("SubnetMask"))
            gateways, dns = _list(values.get("DefaultGateway")), _list(values.get("NameServer"))
        if not dhcp and not addresses:
            continue  # an interface never configured (a tunnel, a virtual adapter)
        name = system.value(f"{control}\\Control\\Network\\{NETWORK_CLASS}\\{key.name}\\Connection", "Name")
        interfaces.append(interface(
            name or key.name, "windows", f"SYSTEM\\{control}\\Services\\Tcpip\\Parameters\\Interfaces\\{key.name}",
            "dhcp" if dhcp else "static",
            addresses=[with_prefix(a, masks[i] if i < len(masks) else None) for i, a in enumerate(addresses)],
            gateway=gateways[0] if gateways else None, dns=dns))
    return sorted(interfaces, key=lambda found: found["name"].casefold())


def windows_dns(system: Hive) -> dict[str, Any]:
    parameters = system.values(f"{control_set(system)}\\Services\\Tcpip\\Parameters")
    return {"nameservers": _list(parameters.get("NameServer")), "search": _list(parameters.get("SearchList"))}
