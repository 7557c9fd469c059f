"""Host firewall: ufw, firewalld, nftables and iptables services and their configuration."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import exists, last_wins, read_settings
from handlers.guestos.services import is_enabled
from handlers.tree import GuestTree


def _ufw(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any] | None:
    conf = last_wins(read_settings(tree, "/etc/ufw/ufw.conf"))
    if not conf:
        return None
    defaults = last_wins(read_settings(tree, "/etc/default/ufw"))
    enabled = "ENABLED" in conf and conf["ENABLED"].value.lower() == "yes"
    policy = defaults.get("DEFAULT_INPUT_POLICY")
    return {"type": "ufw", "enabled": enabled and is_enabled(services, "ufw"),
            "default_input_policy": policy.value if policy else None}


def _firewalld(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any] | None:
    if not exists(tree, "/etc/firewalld"):
        return None
    conf = last_wins(read_settings(tree, "/etc/firewalld/firewalld.conf"))
    zone = conf.get("DefaultZone")
    return {"type": "firewalld", "enabled": is_enabled(services, "firewalld"),
            "default_zone": zone.value if zone else None}


def _service_only(kind: str, config: str, unit: str):
    def probe(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any] | None:
        if not exists(tree, config):
            return None
        return {"type": kind, "enabled": is_enabled(services, unit)}
    return probe


_PROBES = (_ufw, _firewalld, _service_only("nftables", "/etc/nftables.conf", "nftables"),
           _service_only("iptables", "/etc/sysconfig/iptables", "iptables"))


def read_firewall(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any]:
    """``{"enabled": any backend enabled, "backends": [...]}`` over the backends configured."""
    backends = [found for probe in _PROBES if (found := probe(tree, services)) is not None]
    return {"enabled": any(b["enabled"] for b in backends), "backends": backends}
