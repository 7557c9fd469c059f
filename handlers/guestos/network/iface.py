"""The interface record every network configuration parser produces."""

from __future__ import annotations

import ipaddress
from typing import Any


def interface(
    name: str, source: str, file: str, method: str, *, addresses: list[str] | None = None,
    gateway: str | None = None, dns: list[str] | None = None, mac: str | None = None,
) -> dict[str, Any]:
    return {"name": name, "source": source, "file": file, "method": method, "addresses": addresses or [],
            "gateway": gateway, "dns": dns or [], "mac": mac.lower() if mac else None}


def with_prefix(address: str, netmask: str | None = None, prefix: str | int | None = None) -> str:
    """``address/prefix`` from an address that may already carry one, a netmask or a prefix length."""
    if "/" in address:
        return address
    if prefix not in (None, ""):
        return f"{address}/{int(prefix)}"
    if netmask:
        try:
            length = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            return address
        return f"{address}/{length}"
    return address
