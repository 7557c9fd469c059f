"""Network configuration of a guest: interfaces from every configuration system found, and DNS."""

from __future__ import annotations

from typing import Any

from handlers.guestos.network.ifcfg import read_ifcfg
from handlers.guestos.network.ifupdown import read_ifupdown
from handlers.guestos.network.netctl import read_netctl
from handlers.guestos.network.netplan import read_netplan
from handlers.guestos.network.networkd import read_networkd
from handlers.guestos.network.nmkeyfile import read_nm_keyfiles
from handlers.guestos.network.resolv import read_resolv_conf
from handlers.guestos.network.wicked import read_wicked
from handlers.tree import GuestTree

__all__ = ["read_network"]


def read_network(tree: GuestTree) -> dict[str, Any]:
    """``{"interfaces": [...], "dns": {...}}``; interfaces in source order netplan, ifupdown,
    NetworkManager, ifcfg, wicked, systemd-networkd, netctl. An interface configured by two systems
    appears once per system."""
    interfaces = (read_netplan(tree) + read_ifupdown(tree) + read_nm_keyfiles(tree) + read_ifcfg(tree)
                  + read_wicked(tree) + read_networkd(tree) + read_netctl(tree))
    return {"interfaces": interfaces, "dns": read_resolv_conf(tree)}
