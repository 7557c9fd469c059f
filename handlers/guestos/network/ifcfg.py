"""Red Hat initscripts: /etc/sysconfig/network-scripts/ifcfg-* files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from handlers.guestos.common import files_in, last_wins, read_settings
from handlers.guestos.network.iface import interface, with_prefix
from handlers.tree import GuestTree

SCRIPTS_DIR = "/etc/sysconfig/network-scripts"
_SKIP_SUFFIXES = (".bak", ".orig", ".rpmnew", ".rpmsave", ".old", "~")


def _addresses(values: dict[str, str]) -> list[str]:
    addresses = []
    for suffix in ["", *[str(n) for n in range(256)]]:
        address = values.get(f"IPADDR{suffix}")
        if address:
            addresses.append(with_prefix(address, values.get(f"NETMASK{suffix}"), values.get(f"PREFIX{suffix}")))
        elif suffix not in ("", "0", "1"):
            break
    return addresses


def ifcfg_files(tree: GuestTree, directory: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(path, interface name, settings) of each ``ifcfg-NAME`` file in ``directory`` but the loopback's
    and editors' or package managers' leftovers (Red Hat's initscripts and SUSE's wicked alike)."""
    for path in files_in(tree, directory):
        name = path.rsplit("/", 1)[1]
        if not name.startswith("ifcfg-") or name == "ifcfg-lo" or name.endswith(_SKIP_SUFFIXES):
            continue
        yield path, name[6:], {key: setting.value for key, setting in last_wins(read_settings(tree, path)).items()}


def read_ifcfg(tree: GuestTree) -> list[dict[str, Any]]:
    interfaces = []
    for path, name, values in ifcfg_files(tree, SCRIPTS_DIR):
        addresses = _addresses(values)
        bootproto = values.get("BOOTPROTO", "none").lower()
        if bootproto in ("dhcp", "bootp"):
            method = "dhcp"
        else:
            method = "static" if addresses else "manual"
        dns = [values[f"DNS{n}"] for n in range(1, 10) if values.get(f"DNS{n}")]
        interfaces.append(interface(
            values.get("DEVICE") or name, "ifcfg", path, method, addresses=addresses,
            gateway=values.get("GATEWAY") or None, dns=dns, mac=values.get("HWADDR") or None,
        ))
    return interfaces
