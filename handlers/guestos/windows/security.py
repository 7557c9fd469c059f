"""A Windows guest's defences as its registry sets them: Microsoft Defender, the firewall's three
profiles and Remote Desktop (with Network Level Authentication). A group policy key, where set,
wins over the local setting, as it does on the machine; every state names the key it was read from."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class RegistryValue:
    """A value found set in a hive: where, and its data."""

    hive: Hive
    key: str
    name: str
    data: Any

    @property
    def source(self) -> str:
        return f"{self.hive.name}\\{self.key}\\{self.name}"


def first_set(*candidates: tuple[Hive | None, str, str]) -> RegistryValue | None:
    """The first of (hive, key, value name) that is set: a group policy key goes first, as Windows
    lets it win over the local setting."""
    for hive, key, name in candidates:
        if hive is None:
            continue
        data = hive.value(key, name)
        if data is not None:
            return RegistryValue(hive, key, name, data)
    return None


def _first(*candidates: tuple[Hive | None, str, str]) -> tuple[Any, str | None]:
    found = first_set(*candidates)
    return (None, None) if found is None else (found.data, found.source)


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
