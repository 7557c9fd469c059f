"""systemd-networkd: ``*.network`` files (Arch, Fedora CoreOS, containers' hosts).

Files in /etc/systemd/network override the vendor's of the same name in /usr/lib/systemd/network
(and /run's sit between them). A unit file may give a key more than once (``Address=``, ``DNS=``):
every value is kept, so ``configparser`` (last one wins) does not fit.
"""

from __future__ import annotations

import posixpath
from typing import Any

from handlers.guestos.common import content_lines
from handlers.guestos.network.iface import interface
from handlers.tree import GuestTree, read_text

#: the directories in order of precedence: a file name found first hides the later ones
NETWORK_DIRS = ("/etc/systemd/network", "/run/systemd/network", "/usr/lib/systemd/network", "/lib/systemd/network")
_DHCP_V4 = ("yes", "true", "1", "on", "ipv4", "both")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given, in order (an empty assignment resets the list)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for _, line, _ in content_lines(text, comments="#;"):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            values = current.setdefault(key.strip(), [])
            if value.strip():
                values.extend(value.split())
            else:
                values.clear()
    return sections


def parse_network_file(text: str, path: str) -> dict[str, Any]:
    """The interface a ``.network`` file configures (named by ``[Match] Name=``, else by the file)."""
    unit = parse_unit(text)
    match, network = unit.get("Match", {}), unit.get("Network", {})
    names = match.get("Name", [])
    name = names[0] if names else posixpath.basename(path).removesuffix(".network")
    addresses = [a for a in network.get("Address", []) + unit.get("Address", {}).get("Address", []) if ":" not in a]
    gateways = [g for g in network.get("Gateway", []) + unit.get("Route", {}).get("Gateway", []) if ":" not in g]
    dhcp = (network.get("DHCP") or ["no"])[-1].lower() in _DHCP_V4
    method = "dhcp" if dhcp else "static" if addresses else "manual"
    macs = match.get("MACAddress", [])
    return interface(name, "systemd-networkd", path, method, addresses=addresses,
                     gateway=gateways[0] if gateways else None, dns=network.get("DNS", []),
                     mac=macs[0] if macs else None)


def read_networkd(tree: GuestTree) -> list[dict[str, Any]]:
    """Interfaces of the ``.network`` files in effect, by file name (a link to /dev/null masks one)."""
    interfaces, seen = [], set()
    for directory in NETWORK_DIRS:
        for name in tree.listdir(directory) or []:
            if not name.endswith(".network") or name in seen:
                continue
            seen.add(name)
            path = posixpath.join(directory, name)
            text = read_text(tree, path, limit=1024 * 1024)
            if text is not None:
                interfaces.append(parse_network_file(text, path))
    return sorted(interfaces, key=lambda i: posixpath.basename(i["file"]))
