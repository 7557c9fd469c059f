"""Network configuration of Arch (systemd-networkd, netctl) and Alpine (ifupdown-ng) guests."""

from __future__ import annotations

import os
from pathlib import Path

from handlers.guestos.network import read_network
from handlers.tree import DirectoryTree


def _write(root: Path, path: str, text: str) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(text)


def test_systemd_networkd_files_with_repeated_keys_and_vendor_overrides(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/systemd/network/20-wired.network", """\
[Match]
Name=enp1s0
MACAddress=52:54:00:AA:BB:CC

[Network]
Address=192.0.2.10/24
Address=198.51.100.7/24
Address=2001:db8::10/64
DNS=192.0.2.53
; a comment
DNS=192.0.2.54
Gateway=192.0.2.1
""")
    _write(tmp_path, "/etc/systemd/network/30-dhcp.network", "[Match]\nName=wl*\n[Network]\nDHCP=yes\n")
    _write(tmp_path, "/usr/lib/systemd/network/30-dhcp.network", "[Match]\nName=vendor0\n[Network]\nDHCP=no\n")
    _write(tmp_path, "/usr/lib/systemd/network/99-default.network", "[Match]\nName=*\n[Network]\nDHCP=ipv4\n")
    (tmp_path / "etc/systemd/network/99-default.network").symlink_to("/dev/null")  # masked
    interfaces = read_network(DirectoryTree(tmp_path))["interfaces"]
    assert interfaces == [
        {"name": "enp1s0", "source": "systemd-networkd", "file": "/etc/systemd/network/20-wired.network",
         "method": "static", "addresses": ["192.0.2.10/24", "198.51.100.7/24"], "gateway": "192.0.2.1",
         "dns": ["192.0.2.53", "192.0.2.54"], "mac": "52:54:00:aa:bb:cc"},
        {"name": "wl*", "source": "systemd-networkd", "file": "/etc/systemd/network/30-dhcp.network",
         "method": "dhcp", "addresses": [], "gateway": None, "dns": [], "mac": None},
    ]


def test_netctl_profiles(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/netctl/office", """\
Description='A basic static ethernet connection'
Interface=eth0
Connection=ethernet
IP=static
Address=('10.1.10.2/24' '10.1.10.3/24')
Gateway='10.1.10.1'
DNS=('10.1.10.1')
""")
    _write(tmp_path, "/etc/netctl/wifi", "Interface=wlan0\nConnection=wireless\nIP=dhcp\nKey='it''s \"x\n")
    _write(tmp_path, "/etc/netctl/examples/ethernet-static", "Interface=eth9\nIP=static\n")
    _write(tmp_path, "/etc/netctl/broken", "no interface here\n$(rm -rf /)\n")
    interfaces = read_network(DirectoryTree(tmp_path))["interfaces"]
    assert interfaces == [
        {"name": "eth0", "source": "netctl", "file": "/etc/netctl/office", "method": "static",
         "addresses": ["10.1.10.2/24", "10.1.10.3/24"], "gateway": "10.1.10.1", "dns": ["10.1.10.1"], "mac": None},
        {"name": "wlan0", "source": "netctl", "file": "/etc/netctl/wifi", "method": "dhcp", "addresses": [],
         "gateway": None, "dns": [], "mac": None},
    ]


def test_ifupdown_ng_stanzas_without_family_or_method(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/network/interfaces", """\
auto lo
iface lo inet loopback

auto eth0
iface eth0
    use dhcp

auto eth1
iface eth1
    address 192.0.2.5/24
    address 198.51.100.5/24
    address 2001:db8::5/64
    gateway 192.0.2.1
""")
    interfaces = {i["name"]: i for i in read_network(DirectoryTree(tmp_path))["interfaces"]}
    assert (interfaces["lo"]["method"], interfaces["eth0"]["method"]) == ("loopback", "dhcp")
    assert interfaces["eth1"] | {"file": None} == {
        "name": "eth1", "source": "ifupdown", "file": None, "method": "static",
        "addresses": ["192.0.2.5/24", "198.51.100.5/24"], "gateway": "192.0.2.1", "dns": [], "mac": None}
    assert os.path.basename(interfaces["eth1"]["file"]) == "interfaces"


def test_wicked_ifcfg_files_routes_and_static_dns(tmp_path: Path) -> None:
    """SUSE's /etc/sysconfig/network: prefixes in IPADDR, any address suffix, LLADDR, routes, config."""
    _write(tmp_path, "/etc/sysconfig/network/ifcfg-eth0", """\
BOOTPROTO='static'
STARTMODE='auto'
IPADDR='10.20.30.40/24'
IPADDR_second='10.20.31.40'
NETMASK_second='255.255.255.0'
IPADDR_v6='2001:db8::40'
PREFIXLEN_v6='64'
LLADDR='52:54:00:12:34:56'
""")
    _write(tmp_path, "/etc/sysconfig/network/ifcfg-eth1", "BOOTPROTO='dhcp4'\nSTARTMODE='hotplug'\n")
    _write(tmp_path, "/etc/sysconfig/network/ifcfg-lo", "IPADDR='127.0.0.1/8'\n")
    _write(tmp_path, "/etc/sysconfig/network/ifcfg-eth0.rpmsave", "IPADDR='192.0.2.1/24'\n")
    _write(tmp_path, "/etc/sysconfig/network/routes", "# destination gateway netmask interface\n"
                                                      "default 10.20.30.1 - eth0\n")
    _write(tmp_path, "/etc/sysconfig/network/config", 'NETCONFIG_DNS_STATIC_SERVERS="10.20.30.53 10.20.30.54"\n')
    interfaces = read_network(DirectoryTree(tmp_path))["interfaces"]
    assert interfaces == [
        {"name": "eth0", "source": "wicked", "file": "/etc/sysconfig/network/ifcfg-eth0", "method": "static",
         "addresses": ["10.20.30.40/24", "10.20.31.40/24", "2001:db8::40/64"], "gateway": "10.20.30.1",
         "dns": ["10.20.30.53", "10.20.30.54"], "mac": "52:54:00:12:34:56"},
        {"name": "eth1", "source": "wicked", "file": "/etc/sysconfig/network/ifcfg-eth1", "method": "dhcp",
         "addresses": [], "gateway": None, "dns": ["10.20.30.53", "10.20.30.54"], "mac": None},
    ]


def test_a_red_hat_sysconfig_network_file_is_not_a_wicked_directory(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=rhel\n")
    assert read_network(DirectoryTree(tmp_path))["interfaces"] == []
