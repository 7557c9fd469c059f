"""netplan YAML (/etc/netplan, /run/netplan, /lib/netplan; later files override earlier ones)."""

from __future__ import annotations

import posixpath
from typing import Any

from handlers.guestos.common import load_yaml
from handlers.guestos.network.iface import interface
from handlers.tree import GuestTree, read_text

NETPLAN_DIRS = ("/lib/netplan", "/etc/netplan", "/run/netplan")
DEVICE_SECTIONS = ("ethernets", "bonds", "bridges", "vlans", "wifis", "tunnels", "vrfs")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _netplan_files(tree: GuestTree) -> list[str]:
    """Files by name; a name in a later directory shadows the same name in an earlier one."""
    by_name: dict[str, str] = {}
    for directory in NETPLAN_DIRS:
        for name in tree.listdir(directory) or []:
            if name.endswith(".yaml"):
                by_name[name] = posixpath.join(directory, name)
    return [by_name[name] for name in sorted(by_name)]


def _gateway(config: dict[str, Any]) -> str | None:
    for route in config.get("routes") or []:
        if isinstance(route, dict) and str(route.get("to")) in ("default", "0.0.0.0/0"):
            return str(route.get("via")) if route.get("via") else None
    return str(config["gateway4"]) if config.get("gateway4") else None


def _method(config: dict[str, Any]) -> str:
    if config.get("dhcp4") in (True, "true", "yes"):
        return "dhcp"
    return "static" if config.get("addresses") else "manual"


def read_netplan(tree: GuestTree) -> list[dict[str, Any]]:
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in _netplan_files(tree):
        data = load_yaml(read_text(tree, path) or "")
        network = data.get("network") if isinstance(data, dict) else None
        if not isinstance(network, dict):
            continue
        for section in DEVICE_SECTIONS:
            for name in network.get(section) or {}:
                origin.setdefault(name, path)
        merged = _merge(merged, network)
    interfaces = []
    for section in DEVICE_SECTIONS:
        for name, config in (merged.get(section) or {}).items():
            config = config if isinstance(config, dict) else {}
            nameservers = config.get("nameservers") or {}
            mac = (config.get("match") or {}).get("macaddress") or config.get("macaddress")
            interfaces.append(interface(
                str(name), "netplan", origin[name], _method(config),
                addresses=[str(a) for a in config.get("addresses") or [] if not isinstance(a, dict)],
                gateway=_gateway(config), dns=[str(a) for a in nameservers.get("addresses") or []],
                mac=str(mac) if mac else None,
            ))
    return interfaces
