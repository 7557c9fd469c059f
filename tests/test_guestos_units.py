"""Edge cases of the OS parsers, on small hand-made trees."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import pytest

from handlers.guestos.accounts import password_state, read_users
from handlers.guestos.arch import elf_architecture
from handlers.guestos.common import split_epoch_version
from handlers.guestos.identity import read_hostname, read_machine_id, read_timezone
from handlers.guestos.kernels import read_kernels
from handlers.guestos.network import read_network
from handlers.guestos.network.iface import with_prefix
from handlers.guestos.network.resolv import parse_resolv_conf
from handlers.guestos.osrelease import detect_os
from handlers.guestos.packages import parse_dpkg_status, read_packages
from handlers.guestos.rpmheader import RpmError, decode_header, package_from_header
from handlers.guestos.security.apparmor import read_apparmor
from handlers.guestos.security.selinux import read_selinux
from handlers.guestos.security.sshd import read_sshd
from handlers.guestos.sysctl import read_sysctl
from handlers.tree import DirectoryTree
from tests.guestdata import elf_header, encode_rpm_header, encoded_package


def _tree(root: Path, files: Mapping[str, str | bytes], links: Mapping[str, str] | None = None) -> DirectoryTree:
    for path, content in files.items():
        host = root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(content.encode() if isinstance(content, str) else content)
    for path, target in (links or {}).items():
        host = root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.symlink_to(target)
    return DirectoryTree(root)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "i386", "s390x"])
def test_elf_architectures(arch: str) -> None:
    assert elf_architecture(elf_header(arch)) == arch


def test_elf_rejects_non_elf_and_short() -> None:
    assert elf_architecture(b"#!/bin/sh\n" + bytes(30)) is None
    assert elf_architecture(b"\x7fELF") is None
    ppc64le = b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 21)
    assert elf_architecture(ppc64le) == "ppc64le"


@pytest.mark.parametrize(("text", "expected"), [
    ("1:9.2p1-2+deb12u2", (1, "9.2p1", "2+deb12u2")),
    ("12.4+deb12u5", (None, "12.4+deb12u5", None)),
    ("1.2-3-4", (None, "1.2-3", "4")),
    ("2:4.0.2-3", (2, "4.0.2", "3")),
])
def test_split_dpkg_version(text: str, expected: tuple) -> None:
    assert split_epoch_version(text) == expected


def test_dpkg_status_skips_removed_and_half_installed() -> None:
    text = ("Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n\n"
            "Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n"
            "Package: c\nStatus: install ok half-installed\nVersion: 3\n\n"
            "Package: d\nStatus: hold ok installed\nArchitecture: all\nVersion: 4\nDescription: x\n y\n")
    assert [p["name"] for p in parse_dpkg_status(text)] == ["a", "d"]


def test_rpm_header_round_trip_without_epoch_and_arch() -> None:
    blob = encode_rpm_header("gpg-pubkey", "fd431d51", "4ae0493b", None, None)
    package = {"name": "gpg-pubkey", "epoch": None, "version": "fd431d51", "release": "4ae0493b", "arch": None}
    assert package_from_header(blob) == encoded_package(package)
    assert decode_header(blob)[1000] == "gpg-pubkey"


@pytest.mark.parametrize("blob", [b"", b"\x00\x00\x00\x01", struct.pack(">ii", 5, 1000) + bytes(10),
                                  struct.pack(">ii", 1, 4) + struct.pack(">iiii", 1000, 6, 2, 1) + b"abcd"])
def test_rpm_header_corrupt(blob: bytes) -> None:
    with pytest.raises(RpmError):
        package_from_header(blob)


def test_legacy_rpmdb_is_reported_not_guessed(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/var/lib/rpm/Packages": b"\x00" * 64})
    result = read_packages(tree)
    assert result["format"] == "rpm" and result["packages"] == [] and "Berkeley" in result["warning"]


def test_no_package_database(tmp_path: Path) -> None:
    assert read_packages(_tree(tmp_path, {"/etc/hostname": "x\n"}))["format"] is None


def test_password_states() -> None:
    assert [password_state(v) for v in ("", "!", "!!", "*", "$6$x", None)] == [
        "empty", "locked", "locked", "locked", "set", "none"]


def test_sudoers_hash_includedir_and_dotted_files_skipped(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {
        "/etc/passwd": "root:x:0:0::/root:/bin/bash\nann:x:1000:1000::/home/ann:/bin/bash\n"
                       "ben:x:1001:1001::/home/ben:/bin/bash\n",
        "/etc/group": "root:x:0:\nann:x:1000:\nben:x:1001:\n",
        "/etc/sudoers": "#includedir /etc/sudoers.d\n",
        "/etc/sudoers.d/ann": "ann ALL=(ALL) ALL\n",
        "/etc/sudoers.d/ben.disabled": "ben ALL=(ALL) ALL\n",
    })
    sudo = {u["name"]: u["sudo"] for u in read_users(tree)}
    assert sudo == {"root": False, "ann": True, "ben": False}
    assert {u["name"]: u["password"] for u in read_users(tree)}["ann"] == "none"


def test_identity_fallbacks(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/etc/sysconfig/network": "HOSTNAME=old.example\n", "/etc/machine-id": "uninitialized\n",
                            "/etc/sysconfig/clock": 'ZONE="Asia/Tokyo"\n'})
    assert read_hostname(tree) == "old.example"
    assert read_machine_id(tree) is None
    assert read_timezone(tree) == "Asia/Tokyo"


def test_empty_tree_gives_empty_facts(tmp_path: Path) -> None:
    tree = DirectoryTree(tmp_path)
    facts = detect_os(tree)
    assert facts["type"] == "unknown" and facts["distribution"] is None and facts["architecture"] is None
    assert read_hostname(tree) is None and read_kernels(tree) == [] and read_users(tree) == []
    assert read_network(tree) == {"interfaces": [], "dns": {"nameservers": [], "search": []}}
    assert read_sshd(tree) is None and read_selinux(tree) is None and read_apparmor(tree) is None
    assert read_sysctl(tree) == {}


def test_resolv_conf_dangling_link(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {}, {"/etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf"})
    assert read_network(tree)["dns"] == {"nameservers": [], "search": [],
                                         "link": "../run/systemd/resolve/stub-resolv.conf"}
    assert parse_resolv_conf("search a\ndomain b\n; comment\nnameserver 1.2.3.4\n") == {
        "nameservers": ["1.2.3.4"], "search": ["b"]}


def test_netplan_files_merge_in_name_order(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {
        "/etc/netplan/01-base.yaml": "network:\n  ethernets:\n    eth0:\n      dhcp4: true\n",
        "/etc/netplan/99-override.yaml": "network:\n  ethernets:\n    eth0:\n      dhcp4: false\n"
                                         "      addresses: [10.1.1.1/8]\n      gateway4: 10.0.0.1\n",
        "/etc/netplan/bad.yaml": "network: [unclosed\n",
    })
    (eth0,) = read_network(tree)["interfaces"]
    assert (eth0["method"], eth0["addresses"], eth0["gateway"], eth0["file"]) == (
        "static", ["10.1.1.1/8"], "10.0.0.1", "/etc/netplan/01-base.yaml")


def test_with_prefix() -> None:
    assert with_prefix("10.0.0.1", "255.255.255.128") == "10.0.0.1/25"
    assert with_prefix("10.0.0.1", prefix="16") == "10.0.0.1/16"
    assert with_prefix("10.0.0.1/8", "255.0.0.0") == "10.0.0.1/8"
    assert with_prefix("10.0.0.1", "garbage") == "10.0.0.1"


def test_selinux_disabled_on_kernel_command_line(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/etc/selinux/config": "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
                            "/etc/default/grub": 'GRUB_CMDLINE_LINUX="quiet selinux=0"\n'})
    assert read_selinux(tree) == {"mode": "disabled", "policy": "targeted"}


def test_apparmor_disabled_on_kernel_command_line(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/etc/apparmor.d/usr.bin.x": "profile x {}\n",
                            "/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="apparmor=0"\n'})
    assert read_apparmor(tree) == {"enabled": False, "profiles": {"usr.bin.x": "enforce"}}


def test_sshd_first_value_wins_and_match_ignored(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/etc/ssh/sshd_config": "PermitRootLogin=no\nPermitRootLogin yes\n"
                                                    "Match Address 10.0.0.0/8\n  PermitEmptyPasswords yes\n"})
    sshd = read_sshd(tree)
    assert sshd is not None
    assert sshd["permit_root_login"] == "no" and sshd["permit_empty_passwords"] is False
    assert sshd["ports"] == [22] and sshd["password_authentication"] is True


def test_sysctl_slash_keys_and_etc_priority(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/usr/lib/sysctl.d/10-a.conf": "net/ipv4/ip_forward = 1\n",
                            "/etc/sysctl.d/10-a.conf": "; comment\nkernel.sysrq = 0\n",
                            "/etc/sysctl.conf": "-vm.swappiness=5\n"})
    values = {k: s.value for k, s in read_sysctl(tree).items()}
    assert values == {"kernel.sysrq": "0", "vm.swappiness": "5"}


def _os_release(**fields: str) -> str:
    return "".join(f'{key}="{value}"\n' for key, value in fields.items())


@pytest.mark.parametrize(("files", "expected"), [
    ({"/etc/os-release": _os_release(NAME="Red Hat Enterprise Linux", ID="rhel", ID_LIKE="fedora",
                                     VERSION_ID="8.9")},
     ("rhel", "Red Hat Enterprise Linux", "8.9", 8, 9, ["fedora"])),
    ({"/etc/os-release": _os_release(NAME="Rocky Linux", ID="rocky", ID_LIKE="rhel centos fedora", VERSION_ID="9.3"),
      "/etc/rocky-release": "Rocky Linux release 9.3 (Blue Onyx)\n"},
     ("rocky", "Rocky Linux", "9.3", 9, 3, ["rhel", "centos", "fedora"])),
    ({"/etc/os-release": _os_release(NAME="AlmaLinux", ID="almalinux", ID_LIKE="rhel centos fedora",
                                     VERSION_ID="8.10")},
     ("almalinux", "AlmaLinux", "8.10", 8, 10, ["rhel", "centos", "fedora"])),
    ({"/etc/os-release": _os_release(NAME="Oracle Linux Server", ID="ol", ID_LIKE="fedora", VERSION_ID="7.9")},
     ("ol", "Oracle Linux Server", "7.9", 7, 9, ["fedora"])),
    ({"/etc/os-release": _os_release(NAME="CentOS Stream", ID="centos", ID_LIKE="rhel fedora", VERSION_ID="9"),
      "/etc/centos-release": "CentOS Stream release 9\n"},
     ("centos", "CentOS Stream", "9", 9, None, ["rhel", "fedora"])),
    ({"/etc/os-release": _os_release(NAME="CentOS Linux", ID="centos", ID_LIKE="rhel fedora", VERSION_ID="7"),
      "/etc/centos-release": "CentOS Linux release 7.9.2009 (Core)\n",
      "/etc/redhat-release": "CentOS Linux release 7.9.2009 (Core)\n"},
     ("centos", "CentOS Linux", "7.9.2009", 7, 9, ["rhel", "fedora"])),
    ({"/etc/os-release": _os_release(NAME="CentOS Linux", ID="centos", ID_LIKE="rhel fedora", VERSION_ID="7"),
      "/etc/redhat-release": "CentOS Linux release 6.10 (Final)\n"},  # a stale file of another major
     ("centos", "CentOS Linux", "7", 7, None, ["rhel", "fedora"])),
    ({"/etc/os-release": _os_release(NAME="Fedora Linux", ID="fedora", VERSION_ID="39")},
     ("fedora", "Fedora Linux", "39", 39, None, [])),
])
def test_rhel_family_distributions(tmp_path: Path, files: dict[str, str], expected: tuple) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/dnf").write_bytes(b"")
    facts = detect_os(_tree(tmp_path, files))
    assert (facts["distribution"], facts["name"], facts["version"], facts["version_major"], facts["version_minor"],
            facts["id_like"]) == expected
    assert (facts["family"], facts["package_format"], facts["package_manager"]) == ("rhel", "rpm", "dnf")


@pytest.mark.parametrize(("files", "expected"), [
    ({"/etc/redhat-release": "CentOS release 6.10 (Final)\n"}, ("centos", "CentOS", "6.10", 6, 10, "rpm")),
    ({"/etc/redhat-release": "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n"},
     ("rhel", "Red Hat Enterprise Linux Server", "7.9", 7, 9, "rpm")),
    ({"/etc/debian_version": "8.11\n"}, ("debian", "Debian GNU/Linux", "8.11", 8, 11, "deb")),
])
def test_legacy_release_files(tmp_path: Path, files: dict[str, str], expected: tuple) -> None:
    facts = detect_os(_tree(tmp_path, files))
    assert (facts["distribution"], facts["name"], facts["version"], facts["version_major"],
            facts["version_minor"], facts["package_format"]) == expected
    assert facts["type"] == "linux"


def test_corrupt_rpm_databases_give_warnings(tmp_path: Path) -> None:
    import sqlite3

    from tests.guestdata import write_rpmdb

    tree = DirectoryTree(tmp_path)
    db_path = tmp_path / "var/lib/rpm/rpmdb.sqlite"
    write_rpmdb(tmp_path, [{"name": "a", "epoch": None, "version": "1", "release": "1", "arch": "noarch"}])
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO Packages (blob) VALUES (?)", (b"\x00\x00\x00\x09garbage",))
    db.close()
    result = read_packages(tree)
    assert [p["name"] for p in result["packages"]] == ["a"] and "1 of 2" in result["warning"]

    db_path.unlink()
    with sqlite3.connect(db_path) as db:  # a view could run any query: refused
        db.execute("CREATE VIEW Packages AS SELECT 1 AS hnum, x'00' AS blob")
    db.close()
    result = read_packages(tree)
    assert result["packages"] == [] and "view" in result["warning"]

    db_path.write_bytes(b"this is not a database" * 100)
    result = read_packages(tree)
    assert result["format"] == "rpm" and result["packages"] == [] and "could not be read" in result["warning"]


def test_yaml_alias_bomb_refused(tmp_path: Path) -> None:
    levels = "".join(f"  l{n + 1}: &l{n + 1} [*l{n}, *l{n}, *l{n}, *l{n}]\n" for n in range(30))
    text = ("x:\n  l0: &l0 [10.0.0.1/8]\n" + levels
            + "network:\n  ethernets:\n    eth0:\n      addresses: *l30\n")
    tree = _tree(tmp_path, {"/etc/netplan/bomb.yaml": text})
    assert read_network(tree)["interfaces"] == []  # refused, not expanded 4**30 times
    small = "x:\n  l0: &l0 [10.0.0.1/8]\nnetwork:\n  ethernets:\n    eth0:\n      addresses: *l0\n"
    (tmp_path / "etc/netplan/bomb.yaml").write_text(small)
    assert read_network(tree)["interfaces"][0]["addresses"] == ["10.0.0.1/8"]


def test_include_loops_terminate(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config\nPort 2200\n",
                            "/etc/sudoers": "@include /etc/sudoers\n%wheel ALL=(ALL) ALL\n",
                            "/etc/passwd": "root:x:0:0::/root:/bin/bash\n", "/etc/group": "wheel:x:10:root\n",
                            "/etc/network/interfaces": "source /etc/network/interfaces\niface e inet dhcp\n"})
    sshd = read_sshd(tree)
    assert sshd is not None and sshd["ports"] == [2200]
    assert read_users(tree)[0]["sudo"] is True
    assert [i["name"] for i in read_network(tree)["interfaces"]] == ["e"]


def test_boot_loader_entries_without_a_saved_entry_and_for_absent_kernels(tmp_path: Path) -> None:
    """BLS entries name their kernel by path inside /boot; one whose kernel is gone is no kernel, and
    without saved_entry in grubenv none is marked default."""
    entries = "/boot/loader/entries"
    tree = _tree(tmp_path, {
        "/boot/vmlinuz-6.5.6-300.fc39.x86_64": b"MZ",
        f"{entries}/abc-6.5.6-300.fc39.x86_64.conf": "# comment\ntitle Fedora Linux (6.5.6-300.fc39.x86_64) 39\n"
                                                     "linux   /vmlinuz-6.5.6-300.fc39.x86_64\noptions root=UUID=1 ro\n",
        f"{entries}/abc-6.2.9-300.fc38.x86_64.conf": "title gone\nlinux /vmlinuz-6.2.9-300.fc38.x86_64\n",
        f"{entries}/notes.txt": "linux /vmlinuz-6.5.6-300.fc39.x86_64\n",
        "/boot/grub2/grubenv": "# GRUB Environment Block\nboot_success=1\n",
    })
    (kernel,) = read_kernels(tree)
    assert kernel["boot_entry"] == {
        "id": "abc-6.5.6-300.fc39.x86_64", "file": f"{entries}/abc-6.5.6-300.fc39.x86_64.conf",
        "title": "Fedora Linux (6.5.6-300.fc39.x86_64) 39", "options": "root=UUID=1 ro"}
    assert kernel["default"] is False
