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


def _service_only(kind: str, configs: tuple[str, ...], unit: str):
    """A backend configured by any of ``configs`` and enabled by its ``unit`` (systemd or OpenRC)."""
    def probe(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any] | None:
        if not any(exists(tree, config) for config in configs):
            return None
        return {"type": kind, "enabled": is_enabled(services, unit)}
    return probe


#: nftables: Debian, RHEL and Arch keep /etc/nftables.conf, Alpine /etc/nftables.nft; saved iptables
#: rules: RHEL's /etc/sysconfig, Arch's /etc/iptables/iptables.rules, Alpine's rules-save, Debian's rules.v4
_PROBES = (_ufw, _firewalld, _service_only("nftables", ("/etc/nftables.conf", "/etc/nftables.nft"), "nftables"),
           _service_only("iptables", ("/etc/sysconfig/iptables", "/etc/iptables/iptables.rules",
                                      "/etc/iptables/rules-save", "/etc/iptables/rules.v4"), "iptables"))


def read_firewall(tree: GuestTree, services: dict[str, Any]) -> dict[str, Any]:
    """``{"enabled": any backend enabled, "backends": [...]}`` over the backends configured."""
    backends = [found for probe in _PROBES if (found := probe(tree, services)) is not None]
    return {"enabled": any(b["enabled"] for b in backends), "backends": backends}
