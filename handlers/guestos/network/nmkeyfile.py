"""NetworkManager keyfiles (/etc/NetworkManager/system-connections/*.nmconnection)."""

from __future__ import annotations

import configparser
import re
from typing import Any

from handlers.guestos.common import files_in
from handlers.guestos.network.iface import interface
from handlers.tree import GuestTree, read_text

CONNECTION_DIRS = ("/etc/NetworkManager/system-connections", "/run/NetworkManager/system-connections")
_METHODS = {"auto": "dhcp", "manual": "static", "disabled": "disabled", "link-local": "link-local",
            "shared": "shared"}


def _list(value: str) -> list[str]:
    return [item for item in re.split(r"[;,]", value) if item.strip()]


def parse_keyfile(text: str, path: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    if not parser.has_section("connection"):
        return None
    connection = parser["connection"]
    ipv4 = parser["ipv4"] if parser.has_section("ipv4") else {}
    addresses: list[str] = []
    gateway = ipv4.get("gateway") or None
    keys = sorted((k for k in ipv4 if re.fullmatch(r"address(es)?\d*", k)),
                  key=lambda k: int(re.sub(r"\D", "", k) or 0))
    for key in keys:
        for entry in ipv4[key].split(";"):
            address, _, route = entry.partition(",")
            if address.strip():
                addresses.append(address.strip())
            if route.strip() and gateway is None:
                gateway = route.strip()
    mac = None
    for section in ("ethernet", "802-3-ethernet", "wifi"):
        if parser.has_section(section) and parser[section].get("mac-address"):
            mac = parser[section]["mac-address"]
    name = connection.get("interface-name") or connection.get("id") or path
    method = _METHODS.get(ipv4.get("method", "auto"), ipv4.get("method", "auto"))
    return interface(name, "networkmanager", path, method, addresses=addresses, gateway=gateway,
                     dns=_list(ipv4.get("dns", "")), mac=mac)


def read_nm_keyfiles(tree: GuestTree) -> list[dict[str, Any]]:
    interfaces = []
    for directory in CONNECTION_DIRS:
        for path in files_in(tree, directory, ".nmconnection"):
            parsed = parse_keyfile(read_text(tree, path) or "", path)
            if parsed:
                interfaces.append(parsed)
    return interfaces
