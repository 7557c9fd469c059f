"""A Windows guest's defences as its registry sets them: Microsoft Defender, the firewall's three
profiles and Remote Desktop (with Network Level Authentication). A group policy key, where set,
wins over the local setting, as it does on the machine; every state names the key it was read from."""

from __future__ import annotations

from typing import Any

from handlers.guestos.windows.hives import Hive
from handlers.guestos.windows.system import control_set

DEFENDER = "Microsoft\\Windows Defender"
DEFENDER_POLICY = "Policies\\Microsoft\\Windows Defender"
FIREWALL_POLICY = "Policies\\Microsoft\\WindowsFirewall"
RDP_POLICY = "Policies\\Microsoft\\Windows NT\\Terminal Services"
#: the report's name of each firewall profile -> (its key under FirewallPolicy, its key under the policy)
PROFILES = {"domain": ("DomainProfile", "DomainProfile"), "private": ("StandardProfile", "PrivateProfile"),
            "public": ("PublicProfile", "PublicProfile")}


def _first(*found: tuple[Hive | None, str, str]) -> tuple[Any, str | None]:
    """The first of (hive, key, value) that is set, and where it was read ("SOFTWARE\\key")."""
    for hive, key, name in found:
        if hive is None:
            continue
        value = hive.value(key, name)
        if value is not None:
            return value, f"{hive.name}\\{key}\\{name}"
    return None, None


def windows_security(software: Hive | None, system: Hive | None) -> dict[str, Any]:
    control = control_set(system) if system else "ControlSet001"
    disabled, where = _first((software, DEFENDER_POLICY, "DisableAntiSpyware"),
                             (software, DEFENDER, "DisableAntiSpyware"))
    realtime_off, realtime_where = _first(
        (software, f"{DEFENDER_POLICY}\\Real-Time Protection", "DisableRealtimeMonitoring"),
        (software, f"{DEFENDER}\\Real-Time Protection", "DisableRealtimeMonitoring"))
    firewall = {}
    for profile, (local, policy) in PROFILES.items():
        enabled, source = _first(
            (software, f"{FIREWALL_POLICY}\\{policy}", "EnableFirewall"),
            (system, f"{control}\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\{local}", "EnableFirewall"))
        firewall[profile] = {"enabled": enabled != 0, "source": source}  # on unless set off
    deny, deny_where = _first((software, RDP_POLICY, "fDenyTSConnections"),
                              (system, f"{control}\\Control\\Terminal Server", "fDenyTSConnections"))
    nla, nla_where = _first((software, RDP_POLICY, "UserAuthentication"),
                            (system, f"{control}\\Control\\Terminal Server\\WinStations\\RDP-Tcp",
                             "UserAuthentication"))
    return {
        "defender": {"enabled": disabled != 1, "realtime_protection": disabled != 1 and realtime_off != 1,
                     "source": where or realtime_where},
        "firewall": firewall,
        "remote_desktop": {"enabled": deny == 0, "nla": nla != 0, "source": deny_where, "nla_source": nla_where},
    }
