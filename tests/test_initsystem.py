"""The init system a guest boots, and the OpenRC services it starts, from the files it would run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handlers.guestos.initsystem import detect_init
from handlers.guestos.services import is_enabled, read_services
from handlers.tree import DirectoryTree


def _file(root: Path, path: str, content: bytes = b"\x7fELF") -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(content)


def _link(root: Path, path: str, target: str) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, host)


def _merged_usr(root: Path, sbin: str = "usr/sbin") -> None:
    for name in ("bin", "lib"):
        _link(root, f"/{name}", f"usr/{name}")
    _link(root, "/sbin", sbin)


def test_systemd_through_merged_usr_links(tmp_path: Path) -> None:  # Debian 12, Fedora
    _merged_usr(tmp_path)
    _file(tmp_path, "/usr/lib/systemd/systemd")
    _link(tmp_path, "/usr/sbin/init", "../lib/systemd/systemd")
    assert detect_init(DirectoryTree(tmp_path)) == {
        "name": "systemd", "evidence": "/sbin/init -> /usr/lib/systemd/systemd"}


def test_arch_systemd_where_sbin_is_usr_bin(tmp_path: Path) -> None:
    _merged_usr(tmp_path, sbin="usr/bin")
    _link(tmp_path, "/usr/sbin", "bin")
    _file(tmp_path, "/usr/lib/systemd/systemd")
    _link(tmp_path, "/usr/bin/init", "../lib/systemd/systemd")
    assert detect_init(DirectoryTree(tmp_path))["name"] == "systemd"


def test_alpine_busybox_init_hands_over_to_openrc(tmp_path: Path) -> None:
    _file(tmp_path, "/bin/busybox")
    _link(tmp_path, "/sbin/init", "/bin/busybox")
    _file(tmp_path, "/sbin/openrc")
    assert detect_init(DirectoryTree(tmp_path)) == {
        "name": "openrc", "evidence": "/sbin/init -> /bin/busybox; /sbin/openrc"}


def test_debian_with_sysvinit_and_no_systemd(tmp_path: Path) -> None:
    _file(tmp_path, "/sbin/init")
    _file(tmp_path, "/etc/systemd/system/README", b"a directory left by a package is no systemd\n")
    assert detect_init(DirectoryTree(tmp_path)) == {"name": "sysvinit", "evidence": "/sbin/init"}


def test_an_init_that_leads_elsewhere_is_named_after_its_binary(tmp_path: Path) -> None:
    _file(tmp_path, "/usr/bin/runit-init")
    _link(tmp_path, "/sbin/init", "/usr/bin/runit-init")
    _file(tmp_path, "/usr/lib/systemd/systemd")  # installed, not what boots
    assert detect_init(DirectoryTree(tmp_path))["name"] == "runit-init"


def test_systemd_installed_without_an_init_link(tmp_path: Path) -> None:
    _file(tmp_path, "/usr/lib/systemd/systemd")
    assert detect_init(DirectoryTree(tmp_path)) == {"name": "systemd", "evidence": "/usr/lib/systemd/systemd"}


@pytest.mark.parametrize("dangling", [True, False])
def test_no_init_at_all(tmp_path: Path, dangling: bool) -> None:
    if dangling:  # a link to nothing boots nothing
        _link(tmp_path, "/sbin/init", "/lib/systemd/systemd")
    (tmp_path / "etc").mkdir()
    assert detect_init(DirectoryTree(tmp_path))["name"] is None


def test_a_link_loop_is_no_init(tmp_path: Path) -> None:
    _link(tmp_path, "/sbin/init", "/sbin/init2")
    _link(tmp_path, "/sbin/init2", "/sbin/init")
    assert detect_init(DirectoryTree(tmp_path))["name"] is None


def test_openrc_services_per_runlevel(tmp_path: Path) -> None:
    for level, services in {"boot": ["hostname", "networking"], "default": ["sshd", "crond", "networking"],
                            "sysinit": ["devfs"], "shutdown": []}.items():
        (tmp_path / "etc/runlevels" / level).mkdir(parents=True)
        for service in services:
            _link(tmp_path, f"/etc/runlevels/{level}/{service}", f"/etc/init.d/{service}")
    services = read_services(DirectoryTree(tmp_path))
    assert services["openrc"] == [
        {"name": "crond", "runlevels": ["default"]}, {"name": "devfs", "runlevels": ["sysinit"]},
        {"name": "hostname", "runlevels": ["boot"]}, {"name": "networking", "runlevels": ["boot", "default"]},
        {"name": "sshd", "runlevels": ["default"]}]
    assert is_enabled(services, "sshd") and not is_enabled(services, "auditd")


def test_kernels_named_after_their_package_get_their_version(tmp_path: Path) -> None:
    from handlers.guestos.kernels import read_kernels

    _file(tmp_path, "/boot/vmlinuz-linux")  # Arch: the module tree's pkgbase names the package
    _file(tmp_path, "/boot/initramfs-linux.img")
    _file(tmp_path, "/usr/lib/modules/6.7.4-arch1-1/pkgbase", b"linux\n")
    _file(tmp_path, "/boot/vmlinuz-lts")  # Alpine: the module tree's last part is the flavour
    _file(tmp_path, "/boot/initramfs-lts")
    _file(tmp_path, "/boot/config-6.6.14-0-lts", b"CONFIG_X=y\n")
    for version in ("6.6.9-0-lts", "6.6.14-0-lts"):  # an upgrade leaves the old tree: the newest boots
        _file(tmp_path, f"/lib/modules/{version}/modules.dep", b"")
    kernels = {k["kernel"]: k for k in read_kernels(DirectoryTree(tmp_path))}
    assert kernels["/boot/vmlinuz-linux"] | {"boot_entry": None} == {
        "version": "6.7.4-arch1-1", "kernel": "/boot/vmlinuz-linux", "initramfs": "/boot/initramfs-linux.img",
        "modules": True, "config": None, "boot_entry": None, "default": False}
    assert kernels["/boot/vmlinuz-lts"] == {
        "version": "6.6.14-0-lts", "kernel": "/boot/vmlinuz-lts", "initramfs": "/boot/initramfs-lts",
        "modules": True, "config": "/boot/config-6.6.14-0-lts", "boot_entry": None, "default": False}
