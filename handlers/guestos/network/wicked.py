"""SUSE's wicked (and its predecessor, sysconfig): /etc/sysconfig/network/ifcfg-* files, the default
route in ``routes`` (or an interface's ``ifroute-NAME``), static DNS servers in ``config``.

SUSE's ifcfg differs from Red Hat's: ``IPADDR`` usually carries its prefix (``10.0.0.5/24``), extra
addresses take any suffix (``IPADDR_1``, ``IPADDR_second``) with ``PREFIXLEN_``/``NETMASK_`` beside
them, ``BOOTPROTO`` is ``dhcp``, ``dhcp4``, ``dhcp6``, ``static``, ``none`` or ``autoip``, the MAC
address is ``LLADDR``."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import last_wins, read_settings
from handlers.guestos.network.iface import interface, with_prefix
from handlers.guestos.network.ifcfg import ifcfg_files
from handlers.tree import GuestTree, read_text

SYSCONFIG_DIR = "/etc/sysconfig/network"


def _addresses(values: dict[str, str]) -> list[str]:
    addresses = []
    for key in sorted(k for k in values if k == "IPADDR" or k.startswith("IPADDR_")):
        suffix = key[len("IPADDR"):]
        if values[key]:
            addresses.append(with_prefix(values[key], values.get(f"NETMASK{suffix}"),
                                         values.get(f"PREFIXLEN{suffix}")))
    return addresses


def _default_route(tree: GuestTree, name: str, dhcp: bool) -> str | None:
    """The gateway of the default route in ``ifroute-NAME``, else in ``routes`` (for NAME or any
    interface; not for a DHCP interface, whose lease brings its own)."""
    files = [f"{SYSCONFIG_DIR}/ifroute-{name}"] + ([] if dhcp else [f"{SYSCONFIG_DIR}/routes"])
    for path in files:
        for line in (read_text(tree, path) or "").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] in ("default", "0.0.0.0", "0.0.0.0/0") and fields[1] != "-":
                device = fields[3] if len(fields) >= 4 else "-"
                if device in ("-", name):
                    return fields[1]
    return None


def read_wicked(tree: GuestTree) -> list[dict[str, Any]]:
    settings = last_wins(read_settings(tree, f"{SYSCONFIG_DIR}/config"))
    dns_setting = settings.get("NETCONFIG_DNS_STATIC_SERVERS")
    static_dns = dns_setting.value.split() if dns_setting else []
    interfaces = []
    for path, name, values in ifcfg_files(tree, SYSCONFIG_DIR):
        addresses = _addresses(values)
        bootproto = values.get("BOOTPROTO", "static").lower()
        method = "dhcp" if bootproto.startswith("dhcp") else "static" if addresses else "manual"
        interfaces.append(interface(name, "wicked", path, method, addresses=addresses,
                                    gateway=_default_route(tree, name, method == "dhcp"), dns=static_dns,
                                    mac=values.get("LLADDR") or None))
    return interfaces
