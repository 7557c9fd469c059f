"""Debian-like and RHEL-like guest root trees on the host, each with its ground truth.

``make_debian_tree(root)`` / ``make_rhel_tree(root)`` write a realistic root file system under
``root`` (plain files, symlinks and modes; no root needed) in a few milliseconds and return a dict
that the OS parsers in ``handlers.guestos`` must reproduce field by field. File-system UUIDs in
``/etc/fstab`` are parameters so an image builder can make them match the file systems it creates.

The RHEL tree carries a real rpm sqlite database (``/var/lib/rpm/rpmdb.sqlite``) whose header blobs
are written by ``encode_rpm_header`` below, an encoder independent from the decoder under test.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.plugin.limits import Limits
from app.plugin.paths import resolve_allowed

ELF_MACHINES = {"x86_64": (62, 2, 1), "aarch64": (183, 2, 1), "i386": (3, 1, 1), "s390x": (22, 2, 2)}

DEBIAN_ROOT_UUID = "6f1e3a52-0c1b-4d7e-9a55-1f3d2b7c8e01"
DEBIAN_EFI_UUID = "A1B2-C3D4"
DEBIAN_SWAP_UUID = "0b5d2c1e-7a44-4e6f-8d3a-2c9e1f0a7b55"
RHEL_ROOT_UUID = "3c9a7e10-5b2d-4f61-a8e3-7d04c6b1f2a9"
RHEL_BOOT_UUID = "e27f4b93-1d6a-4c85-b0f2-9a3e5d7c1b46"


# --------------------------------------------------------------------------- writing helpers


def _write(root: Path, path: str, content: str | bytes, mode: int | None = None) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    if host.is_symlink():
        host.unlink()
    data = content.encode() if isinstance(content, str) else content
    host.write_bytes(data)
    if mode is not None:
        host.chmod(mode)


def _link(root: Path, path: str, target: str) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    if host.is_symlink() or host.exists():
        host.unlink()
    os.symlink(target, host)


def _mkdir(root: Path, path: str) -> None:
    (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)


def elf_header(arch: str) -> bytes:
    """A 64-byte ELF header (enough for architecture detection) followed by a little padding."""
    machine, elf_class, data = ELF_MACHINES[arch]
    endian = "<" if data == 1 else ">"
    ident = b"\x7fELF" + bytes([elf_class, data, 1, 0]) + bytes(8)
    rest = struct.pack(endian + "HHI", 3, machine, 1)
    return (ident + rest).ljust(64, b"\x00") + b"\x00" * 64


# --------------------------------------------------------------------------- rpm headers

RPM_STRING, RPM_INT32, RPM_BIN, RPM_I18NSTRING = 6, 4, 7, 9
TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_SUMMARY, TAG_ARCH = 1000, 1001, 1002, 1003, 1004, 1022
TAG_HEADERIMMUTABLE = 63


def encode_rpm_header(name: str, version: str, release: str, epoch: int | None, arch: str | None) -> bytes:
    """An rpm header blob as rpm stores it in sqlite: ``il``, ``dl``, index entries, data store.

    Includes the HEADERIMMUTABLE region tag first, as rpm writes it.
    """
    entries: list[tuple[int, int, int, int]] = []
    data = bytearray()

    def add(tag: int, kind: int, payload: bytes, count: int, align: int = 1) -> None:
        while len(data) % align:
            data.append(0)
        entries.append((tag, kind, len(data), count))
        data.extend(payload)

    add(TAG_NAME, RPM_STRING, name.encode() + b"\0", 1)
    add(TAG_VERSION, RPM_STRING, version.encode() + b"\0", 1)
    add(TAG_RELEASE, RPM_STRING, release.encode() + b"\0", 1)
    add(TAG_SUMMARY, RPM_I18NSTRING, f"The {name} package".encode() + b"\0", 1)
    if epoch is not None:
        add(TAG_EPOCH, RPM_INT32, struct.pack(">i", epoch), 1, align=4)
    if arch is not None:
        add(TAG_ARCH, RPM_STRING, arch.encode() + b"\0", 1)
    entries.sort()
    il = len(entries) + 1
    trailer = struct.pack(">iiii", TAG_HEADERIMMUTABLE, RPM_BIN, -(il * 16), 16)
    region = (TAG_HEADERIMMUTABLE, RPM_BIN, len(data), 16)
    data.extend(trailer)
    index = b"".join(struct.pack(">iiii", *entry) for entry in [region, *entries])
    return struct.pack(">ii", il, len(data)) + index + bytes(data)


def write_rpmdb(root: Path, packages: list[dict[str, Any]]) -> None:
    path = root / "var/lib/rpm/rpmdb.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)")
        db.execute("CREATE TABLE 'Name' (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL,"
                   " FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))")
        for pkg in packages:
            blob = encode_rpm_header(pkg["name"], pkg["version"], pkg["release"], pkg["epoch"], pkg["arch"])
            cursor = db.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
            db.execute("INSERT INTO Name VALUES (?, ?, 0)", (pkg["name"], cursor.lastrowid))
    db.close()


# --------------------------------------------------------------------------- shared pieces


def _os_release(root: Path, fields: dict[str, str]) -> None:
    text = "".join(f'{key}="{value}"\n' for key, value in fields.items())
    _write(root, "/usr/lib/os-release", text)
    _link(root, "/etc/os-release", "../usr/lib/os-release")


def _accounts(root: Path, users: list[tuple], groups: list[tuple], shadow_mode: int) -> None:
    """users: (name, uid, gid, gecos, home, shell, shadow_password); groups: (name, gid, members)."""
    passwd = "".join(f"{u[0]}:x:{u[1]}:{u[2]}:{u[3]}:{u[4]}:{u[5]}\n" for u in users)
    shadow = "".join(f"{u[0]}:{u[6]}:19700:0:99999:7:::\n" for u in users)
    group = "".join(f"{g[0]}:x:{g[1]}:{','.join(g[2])}\n" for g in groups)
    gshadow = "".join(f"{g[0]}:!::{','.join(g[2])}\n" for g in groups)
    _write(root, "/etc/passwd", passwd, 0o644)
    _write(root, "/etc/shadow", shadow, shadow_mode)
    _write(root, "/etc/group", group, 0o644)
    _write(root, "/etc/gshadow", gshadow, shadow_mode)


_NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/usr/bin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync",
            "/sbin/shutdown", "/sbin/halt")


def _user_truth(users: list[tuple], groups: list[tuple], sudo_groups: set[str], sudo_users: set[str]) -> list[dict]:
    truth = []
    for name, uid, gid, gecos, home, shell, password in users:
        member_of = sorted(g[0] for g in groups if name in g[2])
        if password == "":
            state = "empty"
        elif password[:1] in ("!", "*"):
            state = "locked"
        else:
            state = "set"
        truth.append({
            "name": name, "uid": uid, "gid": gid, "gecos": gecos, "home": home, "shell": shell,
            "password": state, "login_allowed": shell not in _NOLOGIN,
            "groups": member_of,
            "sudo": name in sudo_users or bool(sudo_groups & set(member_of)),
        })
    return truth


def _group_truth(groups: list[tuple]) -> list[dict]:
    return [{"name": g[0], "gid": g[1], "members": list(g[2])} for g in groups]


def _systemd(root: Path, wants: dict[str, list[str]], unit_dir: str, default_target: str | None,
             masked: list[str], arch: str) -> dict[str, Any]:
    """Enabled, masked and default units, and /sbin/init linked to systemd; returns the init's truth."""
    binary = f"{unit_dir.rsplit('/', 1)[0]}/systemd"
    _write(root, binary, elf_header(arch), 0o755)
    sbin = "/usr/sbin" if (root / "sbin").is_symlink() else "/sbin"  # merged /usr: /sbin -> usr/sbin
    _link(root, f"{sbin}/init", os.path.relpath(binary, sbin))
    for target, units in wants.items():
        for unit in units:
            _write(root, f"{unit_dir}/{unit}", f"[Unit]\nDescription={unit}\n")
            _link(root, f"/etc/systemd/system/{target}.wants/{unit}", f"{unit_dir}/{unit}")
    if default_target:
        _write(root, f"{unit_dir}/{default_target}", "[Unit]\n")
        _link(root, "/etc/systemd/system/default.target", f"{unit_dir}/{default_target}")
    for unit in masked:
        _link(root, f"/etc/systemd/system/{unit}", "/dev/null")
    return {"name": "systemd", "evidence": f"/sbin/init -> {binary}"}


def _services_truth(init: dict[str, Any], wants: dict[str, list[str]], default_target: str | None,
                    masked: list[str], sysv: list[dict], openrc: list[dict] | None = None) -> dict:
    wanted: dict[str, list[str]] = {}
    for target, units in wants.items():
        for unit in units:
            wanted.setdefault(unit, []).append(target)
    enabled = [{"name": unit, "wanted_by": sorted(targets)} for unit, targets in sorted(wanted.items())]
    return {"init": init, "default_target": default_target, "enabled": enabled, "masked": sorted(masked),
            "sysv": sysv, "openrc": openrc or []}


def _kernels(root: Path, versions: list[str], initrd: str, with_modules: list[str]) -> list[dict]:
    truth = []
    for version in versions:
        _write(root, f"/boot/vmlinuz-{version}", b"MZ\x00fake-kernel-" + version.encode(), 0o644)
        initrd_path = initrd.format(version=version)
        _write(root, initrd_path, b"\x1f\x8b fake initramfs", 0o600)
        if version in with_modules:
            _write(root, f"/usr/lib/modules/{version}/modules.dep", "")
        truth.append({"version": version, "kernel": f"/boot/vmlinuz-{version}", "initramfs": initrd_path,
                      "modules": version in with_modules, "config": None, "boot_entry": None, "default": False})
    return truth


def _fstab(root: Path, rows: list[tuple[str, str, str, str, int, int]], header: str) -> None:
    body = "".join("\t".join(str(field) for field in row) + "\n" for row in rows)
    _write(root, "/etc/fstab", header + body, 0o644)


# --------------------------------------------------------------------------- Debian

DEBIAN_PACKAGES: list[tuple[str, str, str]] = [
    # (name, version as dpkg writes it, architecture)
    ("adduser", "3.134", "all"), ("apparmor", "3.0.8-3", "amd64"), ("apt", "2.6.1", "amd64"),
    ("base-files", "12.4+deb12u5", "amd64"), ("base-passwd", "3.6.1", "amd64"),
    ("bash", "5.2.15-2+b2", "amd64"), ("cloud-init", "22.4.2-1", "all"), ("coreutils", "9.1-1", "amd64"),
    ("cron", "3.0pl1-162", "amd64"), ("dash", "0.5.12-2", "amd64"), ("debconf", "1.5.82", "all"),
    ("dpkg", "1.21.22", "amd64"), ("e2fsprogs", "1.47.0-2", "amd64"), ("grep", "3.8-5", "amd64"),
    ("gzip", "1.12-1", "amd64"), ("init-system-helpers", "1.65.2", "all"), ("iproute2", "6.1.0-3", "amd64"),
    ("libc6", "2.36-9+deb12u4", "amd64"), ("libc6", "2.36-9+deb12u4", "i386"),
    ("libssl3", "3.0.11-1~deb12u2", "amd64"), ("linux-image-6.1.0-18-amd64", "6.1.76-1", "amd64"),
    ("login", "1:4.13+dfsg1-1+b1", "amd64"), ("netplan.io", "0.106-2+deb12u1", "amd64"),
    ("openssh-client", "1:9.2p1-2+deb12u2", "amd64"), ("openssh-server", "1:9.2p1-2+deb12u2", "amd64"),
    ("openssl", "3.0.11-1~deb12u2", "amd64"), ("passwd", "1:4.13+dfsg1-1+b1", "amd64"),
    ("procps", "2:4.0.2-3", "amd64"), ("python3", "3.11.2-1+b1", "amd64"), ("rsyslog", "8.2302.0-1", "amd64"),
    ("sudo", "1.9.13p3-1+deb12u1", "amd64"), ("systemd", "252.22-1~deb12u1", "amd64"),
    ("systemd-sysv", "252.22-1~deb12u1", "amd64"), ("tzdata", "2024a-0+deb12u1", "all"),
    ("ufw", "0.36.2-1", "all"), ("util-linux", "2.38.1-5+b1", "amd64"), ("vim-tiny", "2:9.0.1378-2", "amd64"),
    ("zlib1g", "1:1.2.13.dfsg-1", "amd64"), ("ifupdown", "0.8.41", "amd64"),
]


def _dpkg_version(text: str) -> tuple[int | None, str, str | None]:
    epoch: int | None = None
    if ":" in text:
        head, text = text.split(":", 1)
        epoch = int(head)
    if "-" in text:
        upstream, revision = text.rsplit("-", 1)
        return epoch, upstream, revision
    return epoch, text, None


def _dpkg_status(packages: list[tuple[str, str, str]]) -> str:
    stanzas = []
    for name, version, arch in packages:
        multi = "Multi-Arch: same\n" if name.startswith("lib") else ""
        conffiles = (" /etc/ssh/moduli 0123456789abcdef0123456789abcdef\n"
                     if name == "openssh-server" else "")
        stanzas.append(
            f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: admin\n"
            f"Installed-Size: 1234\nMaintainer: Debian Developers <debian-devel@lists.debian.org>\n"
            f"Architecture: {arch}\n{multi}Version: {version}\nDepends: libc6 (>= 2.34)\n"
            + (f"Conffiles:\n{conffiles}" if conffiles else "")
            + f"Description: the {name} package\n Longer description of {name}.\n .\n Second paragraph.\n"
        )
    stanzas.append(  # removed, only its configuration remains: not installed
        "Package: telnet\nStatus: deinstall ok config-files\nPriority: standard\nArchitecture: amd64\n"
        "Version: 0.17+2.4-2\nDescription: basic telnet client\n"
    )
    return "\n".join(stanzas) + "\n"


DEBIAN_SSHD = """\
# This is the sshd server system-wide configuration file.
Include /etc/ssh/sshd_config.d/*.conf

#PermitRootLogin prohibit-password
#MaxAuthTries 6
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
"""


def make_debian_tree(
    root: str | os.PathLike[str],
    *,
    root_uuid: str = DEBIAN_ROOT_UUID,
    efi_uuid: str = DEBIAN_EFI_UUID,
    swap_uuid: str = DEBIAN_SWAP_UUID,
    hostname: str = "deb-web01",
    arch: str = "x86_64",
) -> dict[str, Any]:
    root = Path(root)
    for directory in ("usr/bin", "usr/sbin", "usr/lib"):
        _mkdir(root, directory)
    for name in ("bin", "sbin", "lib"):
        _link(root, f"/{name}", f"usr/{name}")
    for directory in ("tmp", "var/tmp", "home", "root", "proc", "sys", "dev", "run"):
        _mkdir(root, directory)

    _os_release(root, {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "NAME": "Debian GNU/Linux", "VERSION_ID": "12",
        "VERSION": "12 (bookworm)", "VERSION_CODENAME": "bookworm", "ID": "debian",
        "HOME_URL": "https://www.debian.org/",
    })
    _write(root, "/etc/debian_version", "12.5\n")
    _write(root, "/etc/hostname", f"{hostname}\n")
    machine_id = "4f2c8a9d1e7b4c3a9f0e6d5c4b3a2918"
    _write(root, "/etc/machine-id", machine_id + "\n", 0o444)
    _write(root, "/usr/bin/dash", elf_header(arch), 0o755)
    _link(root, "/usr/bin/sh", "dash")
    _write(root, "/usr/bin/bash", elf_header(arch), 0o755)
    _write(root, "/usr/bin/apt", elf_header(arch), 0o755)
    _write(root, "/usr/bin/dpkg", elf_header(arch), 0o755)

    # accounts
    users = [
        ("root", 0, 0, "root", "/root", "/bin/bash", "$y$j9T$Kx1fGq0aZ3$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"),
        ("daemon", 1, 1, "daemon", "/usr/sbin", "/usr/sbin/nologin", "*"),
        ("bin", 2, 2, "bin", "/bin", "/usr/sbin/nologin", "*"),
        ("sys", 3, 3, "sys", "/dev", "/usr/sbin/nologin", "*"),
        ("sync", 4, 65534, "sync", "/bin", "/bin/sync", "*"),
        ("backup", 34, 34, "backup", "/var/backups", "/bin/sh", "*"),
        ("nobody", 65534, 65534, "nobody", "/nonexistent", "/usr/sbin/nologin", "*"),
        ("messagebus", 100, 107, "", "/nonexistent", "/usr/sbin/nologin", "!"),
        ("sshd", 101, 65534, "", "/run/sshd", "/usr/sbin/nologin", "!"),
        ("systemd-network", 998, 998, "systemd Network Management", "/", "/usr/sbin/nologin", "!*"),
        ("alice", 1000, 1000, "Alice Admin,,,", "/home/alice", "/bin/bash",
         "$6$saltsalt$Q0gmRiCqmS3jKm5tbZyH0c1pXo0QWmwPz2d2tZ0iZ4lqVcXn0x6s0vGm1Y7oJ6o3x8pJ3Vt0kYh8oC8u6fYtL/"),
        ("bob", 1001, 1001, "Bob,,,", "/home/bob", "/bin/bash", ""),
        ("carol", 1002, 1002, "Carol,,,", "/home/carol", "/usr/bin/zsh", "!$6$saltsalt$lockedhashvalue"),
    ]
    groups = [
        ("root", 0, []), ("daemon", 1, []), ("bin", 2, []), ("sys", 3, []), ("adm", 4, ["alice"]),
        ("sudo", 27, ["alice"]), ("backup", 34, []), ("users", 100, ["alice", "bob"]),
        ("messagebus", 107, []), ("systemd-network", 998, []), ("alice", 1000, []), ("bob", 1001, []),
        ("carol", 1002, []), ("nogroup", 65534, []),
    ]
    _accounts(root, users, groups, 0o640)
    _write(root, "/etc/sudoers", "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n"
           "@includedir /etc/sudoers.d\n", 0o440)
    _write(root, "/etc/sudoers.d/90-carol", "carol ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    _write(root, "/etc/pam.d/common-password", "# as pam-auth-update writes it\n"
           "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"
           "password\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n")
    _write(root, "/etc/pam.d/common-auth", "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n"
           "auth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n")
    _write(root, "/etc/login.defs", "MAIL_DIR        /var/mail\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\n"
           "PASS_WARN_AGE\t7\nUMASK\t\t022\nENCRYPT_METHOD YESCRYPT\n")

    # packages
    _write(root, "/var/lib/dpkg/status", _dpkg_status(DEBIAN_PACKAGES))
    packages = []
    for name, version, parch in DEBIAN_PACKAGES:
        epoch, upstream, revision = _dpkg_version(version)
        packages.append({"name": name, "epoch": epoch, "version": upstream, "release": revision, "arch": parch})
    packages.sort(key=lambda p: (p["name"], p["arch"]))

    # services
    unit_dir = "/usr/lib/systemd/system"
    wants = {
        "multi-user.target": ["ssh.service", "cron.service", "rsyslog.service", "ufw.service",
                              "networking.service", "systemd-networkd.service"],
        "sysinit.target": ["apparmor.service", "systemd-timesyncd.service"],
        "getty.target": ["getty@tty1.service"],
        "timers.target": ["apt-daily.timer", "apt-daily-upgrade.timer"],
        "cloud-init.target": ["cloud-init.service", "cloud-final.service"],
        "network-online.target": ["systemd-networkd.service"],
    }
    init = _systemd(root, wants, unit_dir, "multi-user.target", masked=[], arch=arch)
    _link(root, "/etc/systemd/system/sshd.service", f"{unit_dir}/ssh.service")  # alias, not a want
    sysv = {"cron": [2, 3, 4, 5], "rsyslog": [2, 3, 4, 5], "ssh": [2, 3, 4, 5]}
    for service, runlevels in sysv.items():
        _write(root, f"/etc/init.d/{service}", "#!/bin/sh\n", 0o755)
        for level in range(7):
            prefix = "S01" if level in runlevels else "K01"
            _link(root, f"/etc/rc{level}.d/{prefix}{service}", f"../init.d/{service}")
    _write(root, "/etc/init.d/hwclock.sh", "#!/bin/sh\n", 0o755)
    _link(root, "/etc/rc0.d/K01hwclock.sh", "../init.d/hwclock.sh")
    _write(root, "/etc/rc2.d/README", "runlevel 2\n")
    services = _services_truth(init, wants, "multi-user.target", [], [
        {"name": name, "runlevels": levels} for name, levels in sorted(sysv.items())])

    # network
    _write(root, "/etc/netplan/50-cloud-init.yaml", """\
# generated by cloud-init
network:
  version: 2
  renderer: networkd
  ethernets:
    eth0:
      match:
        macaddress: "52:54:00:12:34:56"
      set-name: eth0
      dhcp4: true
    eth1:
      addresses:
        - 10.0.0.5/24
        - "fd00::5/64"
      routes:
        - to: default
          via: 10.0.0.1
      nameservers:
        addresses: [1.1.1.1, 9.9.9.9]
        search: [corp.example]
""", 0o600)
    _write(root, "/etc/network/interfaces", "# ifupdown\nsource /etc/network/interfaces.d/*\n\n"
           "auto lo\niface lo inet loopback\n")
    _write(root, "/etc/network/interfaces.d/ens5", "auto ens5\niface ens5 inet static\n"
           "    address 192.168.50.10\n    netmask 255.255.255.0\n    gateway 192.168.50.1\n"
           "    dns-nameservers 192.168.50.2 192.168.50.3\n    hwaddress ether 52:54:00:ab:cd:ef\n"
           "iface ens5 inet6 auto\n")
    _write(root, "/etc/resolv.conf", "# managed\ndomain corp.example\nsearch corp.example example.org\n"
           "nameserver 10.0.0.2\nnameserver 10.0.0.3\noptions edns0\n")
    # interfaces in file order (ifupdown follows its "source" line where it stands)
    network = {
        "interfaces": [
            {"name": "eth0", "source": "netplan", "file": "/etc/netplan/50-cloud-init.yaml", "method": "dhcp",
             "addresses": [], "gateway": None, "dns": [], "mac": "52:54:00:12:34:56"},
            {"name": "eth1", "source": "netplan", "file": "/etc/netplan/50-cloud-init.yaml", "method": "static",
             "addresses": ["10.0.0.5/24", "fd00::5/64"], "gateway": "10.0.0.1", "dns": ["1.1.1.1", "9.9.9.9"],
             "mac": None},
            {"name": "ens5", "source": "ifupdown", "file": "/etc/network/interfaces.d/ens5", "method": "static",
             "addresses": ["192.168.50.10/24"], "gateway": "192.168.50.1",
             "dns": ["192.168.50.2", "192.168.50.3"], "mac": "52:54:00:ab:cd:ef"},
            {"name": "lo", "source": "ifupdown", "file": "/etc/network/interfaces", "method": "loopback",
             "addresses": [], "gateway": None, "dns": [], "mac": None},
        ],
        "dns": {"nameservers": ["10.0.0.2", "10.0.0.3"], "search": ["corp.example", "example.org"]},
    }

    # security
    _write(root, "/etc/ssh/sshd_config", DEBIAN_SSHD, 0o644)
    _write(root, "/etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n", 0o600)
    _write(root, "/etc/apparmor.d/usr.bin.man", "profile man /usr/bin/man {\n}\n")
    _write(root, "/etc/apparmor.d/usr.sbin.tcpdump", "profile tcpdump /usr/sbin/tcpdump {\n}\n")
    _write(root, "/etc/apparmor.d/usr.sbin.rsyslogd",
           "profile rsyslogd /usr/sbin/rsyslogd flags=(complain) {\n}\n")
    _write(root, "/etc/apparmor.d/usr.sbin.ntpd", "/usr/sbin/ntpd flags=(attach_disconnected) {\n}\n")
    _link(root, "/etc/apparmor.d/disable/usr.sbin.ntpd", "/etc/apparmor.d/usr.sbin.ntpd")
    _write(root, "/etc/apparmor.d/tunables/global", "# tunables\n")
    _write(root, "/etc/apparmor.d/abstractions/base", "# base\n")
    _write(root, "/etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
           'GRUB_CMDLINE_LINUX=""\n')
    _write(root, "/boot/grub/grub.cfg", "# grub.cfg\nmenuentry 'Debian' {\n}\n", 0o444)
    _write(root, "/etc/ufw/ufw.conf", "# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n")
    _write(root, "/etc/default/ufw", 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n')
    security = {
        "selinux": None,
        "apparmor": {"enabled": True, "profiles": {"usr.bin.man": "enforce", "usr.sbin.ntpd": "disabled",
                                                   "usr.sbin.rsyslogd": "complain", "usr.sbin.tcpdump": "enforce"}},
        "ssh": {
            "installed": True,
            "settings": {"passwordauthentication": "yes", "kbdinteractiveauthentication": "no", "usepam": "yes",
                         "x11forwarding": "yes", "printmotd": "no", "acceptenv": "LANG LC_*",
                         "subsystem": "sftp\t/usr/lib/openssh/sftp-server"},
            "permit_root_login": "prohibit-password", "password_authentication": True,
            "permit_empty_passwords": False, "x11_forwarding": True, "ports": [22],
        },
        "firewall": {"enabled": True, "backends": [
            {"type": "ufw", "enabled": True, "default_input_policy": "DROP"}]},
    }

    # boot, kernels, storage
    kernels = _kernels(root, ["6.1.0-17-amd64", "6.1.0-18-amd64"], "/boot/initrd.img-{version}",
                       with_modules=["6.1.0-18-amd64"])
    _write(root, "/boot/config-6.1.0-18-amd64", "CONFIG_X86_64=y\n")
    kernels[1]["config"] = "/boot/config-6.1.0-18-amd64"
    _write(root, "/boot/System.map-6.1.0-18-amd64", "ffffffff81000000 T _text\n")
    _link(root, "/vmlinuz", "boot/vmlinuz-6.1.0-18-amd64")
    fstab_rows = [
        (f"UUID={root_uuid}", "/", "ext4", "errors=remount-ro", 0, 1),
        (f"UUID={efi_uuid}", "/boot/efi", "vfat", "umask=0077", 0, 1),
        (f"UUID={swap_uuid}", "none", "swap", "sw", 0, 0),
        ("tmpfs", "/tmp", "tmpfs", "defaults,nodev,nosuid,size=512m", 0, 0),
    ]
    _fstab(root, fstab_rows, "# /etc/fstab: static file system information.\n#\n"
           "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n")
    _mkdir(root, "/boot/efi")

    # misc
    _write(root, "/etc/cloud/cloud.cfg", "users:\n  - default\ndisable_root: true\n")
    _write(root, "/etc/cloud/cloud.cfg.d/90_dpkg.cfg",
           "# to update this file, run dpkg-reconfigure cloud-init\n"
           "datasource_list: [ NoCloud, ConfigDrive, OpenStack, Ec2 ]\n")
    _write(root, "/usr/share/zoneinfo/Europe/Berlin", b"TZif2\x00fake")
    _link(root, "/etc/localtime", "/usr/share/zoneinfo/Europe/Berlin")
    _write(root, "/etc/timezone", "Europe/Berlin\n")
    _write(root, "/etc/sysctl.conf", "# /etc/sysctl.conf\n#net.ipv4.ip_forward=1\n#kernel.printk = 3 4 1 3\n")
    _write(root, "/etc/sysctl.d/99-custom.conf", "net.ipv4.ip_forward = 1\nvm.swappiness = 10\n")
    _write(root, "/usr/lib/sysctl.d/50-default.conf", "kernel.sysrq = 0x01b6\nnet.ipv4.ip_forward = 0\n")
    _write(root, "/etc/crontab", "SHELL=/bin/sh\n17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n",
           0o644)
    _write(root, "/etc/cron.d/e2scrub_all", "30 3 * * 0 root test -e /run/systemd/system || "
           "/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron\n")
    _write(root, "/var/spool/cron/crontabs/alice", "0 2 * * * /home/alice/backup.sh\n", 0o600)
    _write(root, "/etc/systemd/journald.conf", "[Journal]\n#Storage=auto\n")
    _write(root, "/etc/issue", "Debian GNU/Linux 12 \\n \\l\n")

    return {
        "package_database": "/var/lib/dpkg/status",
        "os": {"type": "linux", "distribution": "debian", "name": "Debian GNU/Linux",
               "pretty_name": "Debian GNU/Linux 12 (bookworm)", "version": "12.5", "version_major": 12,
               "version_minor": 5, "codename": "bookworm", "id_like": [], "family": "debian",
               "architecture": arch,
               "package_format": "deb", "package_manager": "apt"},
        "hostname": hostname,
        "machine_id": machine_id,
        "users": _user_truth(users, groups, {"sudo"}, {"carol", "root"}),
        "groups": _group_truth(groups),
        "packages": packages,
        "services": services,
        "network": network,
        "security": security,
        "kernels": kernels,
        "fstab": fstab_rows,
        "cloud_init": {"installed": True, "disabled": False, "datasources": ["NoCloud", "ConfigDrive",
                                                                             "OpenStack", "Ec2"]},
        "cron": [
            {"file": "/etc/crontab", "line": 2, "user": "root", "schedule": "17 * * * *",
             "command": "cd / && run-parts --report /etc/cron.hourly"},
            {"file": "/etc/cron.d/e2scrub_all", "line": 1, "user": "root", "schedule": "30 3 * * 0",
             "command": "test -e /run/systemd/system || /usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron"},
            {"file": "/var/spool/cron/crontabs/alice", "line": 1, "user": "alice", "schedule": "0 2 * * *",
             "command": "/home/alice/backup.sh"},
        ],
        "timezone": "Europe/Berlin",
        "sysctl": {"net.ipv4.ip_forward": "1", "vm.swappiness": "10", "kernel.sysrq": "0x01b6"},
        "login_defs": {"PASS_MAX_DAYS": "99999", "PASS_MIN_DAYS": "0", "PASS_WARN_AGE": "7", "UMASK": "022"},
    }


# --------------------------------------------------------------------------- RHEL

def encoded_package(package: dict[str, Any]) -> dict[str, Any]:
    """What a header written by ``encode_rpm_header`` for ``package`` decodes to (it writes no
    source rpm, install time, size, licence or vendor)."""
    unset = dict.fromkeys(("source_rpm", "install_time", "size", "license", "vendor"))
    return {**package, **unset, "summary": f"The {package['name']} package"}


RHEL_PACKAGES: list[dict[str, Any]] = [
    {"name": n, "epoch": e, "version": v, "release": r, "arch": a}
    for n, e, v, r, a in [
        ("NetworkManager", 1, "1.44.0", "3.el9", "x86_64"), ("audit", None, "3.0.7", "104.el9", "x86_64"),
        ("bash", None, "5.1.8", "6.el9_1", "x86_64"), ("chrony", None, "4.3", "1.el9", "x86_64"),
        ("cloud-init", None, "23.1.1", "11.el9", "noarch"), ("coreutils", None, "8.32", "34.el9", "x86_64"),
        ("cronie", None, "1.5.7", "8.el9", "x86_64"), ("dnf", None, "4.14.0", "8.el9", "noarch"),
        ("firewalld", None, "1.2.5", "2.el9", "noarch"), ("glibc", None, "2.34", "83.el9_3.7", "x86_64"),
        ("glibc", None, "2.34", "83.el9_3.7", "i686"), ("gpg-pubkey", None, "fd431d51", "4ae0493b", None),
        ("grub2-pc", 1, "2.06", "70.el9_3.1", "x86_64"), ("kernel", None, "5.14.0", "362.8.1.el9_3", "x86_64"),
        ("kernel-core", None, "5.14.0", "362.8.1.el9_3", "x86_64"),
        ("kernel-core", None, "5.14.0", "284.11.1.el9_2", "x86_64"),
        ("openssh-server", None, "8.7p1", "34.el9", "x86_64"), ("openssl", 1, "3.0.7", "24.el9", "x86_64"),
        ("policycoreutils", None, "3.5", "3.el9_3", "x86_64"), ("python3", None, "3.9.18", "1.el9_3", "x86_64"),
        ("redhat-release", None, "9.3", "0.5.el9", "x86_64"), ("rpm", None, "4.16.1.3", "25.el9", "x86_64"),
        ("rsyslog", None, "8.2102.0", "117.el9", "x86_64"),
        ("selinux-policy-targeted", None, "38.1.23", "1.el9", "noarch"),
        ("sudo", None, "1.9.5p2", "9.el9", "x86_64"), ("systemd", None, "252", "18.el9", "x86_64"),
        ("tuned", None, "2.21.0", "1.el9_3", "noarch"), ("tzdata", None, "2023c", "1.el9", "noarch"),
        ("util-linux", None, "2.37.4", "15.el9", "x86_64"), ("vim-minimal", 2, "8.2.2637", "20.el9_1", "x86_64"),
    ]
]

RHEL_SSHD = """\
#	$OpenBSD: sshd_config,v 1.104 2021/07/02 05:11:21 dtucker Exp $
Include /etc/ssh/sshd_config.d/*.conf

Port 22
Port 2222
PermitRootLogin yes
#MaxAuthTries 6
AuthorizedKeysFile	.ssh/authorized_keys
Subsystem	sftp	/usr/libexec/openssh/sftp-server

Match User backup
	PasswordAuthentication yes
"""


#: authselect's sssd profile as RHEL 9 installs it (pam_pwquality, no pam_faillock)
RHEL_SYSTEM_AUTH = """\
# Generated by authselect
# Do not modify this file manually, use authselect instead.
auth        required                                     pam_env.so
auth        required                                     pam_faildelay.so delay=2000000
auth        sufficient                                   pam_unix.so nullok
auth        required                                     pam_deny.so

account     required                                     pam_unix.so

password    requisite                                    pam_pwquality.so local_users_only
password    sufficient                                   pam_unix.so yescrypt shadow nullok use_authtok
password    required                                     pam_deny.so

session     optional                                     pam_keyinit.so revoke
session     required                                     pam_limits.so
-session    optional                                     pam_systemd.so
session     required                                     pam_unix.so
"""


def make_rhel_tree(
    root: str | os.PathLike[str],
    *,
    root_uuid: str = RHEL_ROOT_UUID,
    boot_uuid: str = RHEL_BOOT_UUID,
    swap_device: str = "/dev/mapper/rhel-swap",
    hostname: str = "rhel-db01.example.com",
    arch: str = "x86_64",
    rpm_tool: bool = False,
) -> dict[str, Any]:
    """``rpm_tool``: the rpm database is written by rpm itself (``tests/rpmdb_tool.py``) instead of by
    the tests' own header encoder."""
    root = Path(root)
    for directory in ("usr/bin", "usr/sbin", "usr/lib64", "usr/lib"):
        _mkdir(root, directory)
    for name in ("bin", "sbin", "lib", "lib64"):
        _link(root, f"/{name}", f"usr/{name}")
    for directory in ("tmp", "var/tmp", "home", "root", "proc", "sys", "dev", "run"):
        _mkdir(root, directory)

    _os_release(root, {
        "NAME": "Red Hat Enterprise Linux", "VERSION": "9.3 (Plow)", "ID": "rhel", "ID_LIKE": "fedora",
        "VERSION_ID": "9.3", "PLATFORM_ID": "platform:el9", "PRETTY_NAME": "Red Hat Enterprise Linux 9.3 (Plow)",
        "ANSI_COLOR": "0;31",
    })
    _write(root, "/etc/redhat-release", "Red Hat Enterprise Linux release 9.3 (Plow)\n")
    _write(root, "/etc/hostname", f"{hostname}\n")
    machine_id = "b7e3c1a09d8f4e2b8c6a5f4e3d2c1b0a"
    _write(root, "/etc/machine-id", machine_id + "\n", 0o444)
    _write(root, "/usr/bin/bash", elf_header(arch), 0o755)
    _link(root, "/usr/bin/sh", "bash")
    _write(root, "/usr/bin/dnf-3", b"#!/usr/bin/python3\n", 0o755)
    _link(root, "/usr/bin/dnf", "dnf-3")
    _link(root, "/usr/bin/yum", "dnf-3")
    _write(root, "/usr/bin/rpm", elf_header(arch), 0o755)

    users = [
        ("root", 0, 0, "root", "/root", "/bin/bash",
         "$6$rhsalt$e3M0n9Jx3dGf0Yk9wZp1Y8ZQ2fXl0Hq1tL7sG6bC3aVb1nN5mK4jH8gF2dS0aQ/"),
        ("bin", 1, 1, "bin", "/bin", "/sbin/nologin", "*"),
        ("daemon", 2, 2, "daemon", "/sbin", "/sbin/nologin", "*"),
        ("adm", 3, 4, "adm", "/var/adm", "/sbin/nologin", "*"),
        ("sync", 5, 0, "sync", "/sbin", "/bin/sync", "*"),
        ("shutdown", 6, 0, "shutdown", "/sbin", "/sbin/shutdown", "*"),
        ("halt", 7, 0, "halt", "/sbin", "/sbin/halt", "*"),
        ("operator", 11, 0, "operator", "/root", "/sbin/nologin", "*"),
        ("nobody", 65534, 65534, "Kernel Overflow User", "/", "/sbin/nologin", "*"),
        ("sshd", 74, 74, "Privilege-separated SSH", "/usr/share/empty.sshd", "/sbin/nologin", "!!"),
        ("chrony", 992, 987, "chrony system user", "/var/lib/chrony", "/sbin/nologin", "!!"),
        ("ec2-user", 1000, 1000, "Cloud User", "/home/ec2-user", "/bin/bash", "!!"),
        ("dave", 1001, 1001, "", "/home/dave", "/bin/bash",
         "$6$davesalt$Wl0xk2pB7n3Jq9Yt4sR8uV1eC6mA5dF0gH2iK3lM4nO5pQ6rS7tU8vW9xY0zA1bC2dE3fG4hI5jK6lM7nO8pQ."),
        ("toor", 0, 0, "", "/root", "/bin/bash", "$6$toorsalt$abc"),
    ]
    groups = [
        ("root", 0, []), ("bin", 1, []), ("daemon", 2, []), ("adm", 4, []), ("wheel", 10, ["ec2-user"]),
        ("sshd", 74, []), ("chrony", 987, []), ("ec2-user", 1000, []), ("dave", 1001, []),
        ("developers", 2000, ["dave", "ec2-user"]), ("nobody", 65534, []),
    ]
    _accounts(root, users, groups, 0o000)
    _write(root, "/etc/sudoers", "Defaults   !visiblepw\nroot\tALL=(ALL) \tALL\n%wheel\tALL=(ALL)\tALL\n"
           "# %wheel\tALL=(ALL)\tNOPASSWD: ALL\n#includedir /etc/sudoers.d\n", 0o440)
    _mkdir(root, "/etc/sudoers.d")
    _write(root, "/etc/login.defs", "MAIL_DIR\t/var/spool/mail\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\n"
           "PASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nENCRYPT_METHOD SHA512\n")

    _write(root, "/etc/pam.d/system-auth", RHEL_SYSTEM_AUTH)
    _write(root, "/etc/security/pwquality.conf", "# Configuration for systemwide password quality limits\n"
           "# minlen = 8\n# dcredit = 0\n")
    if rpm_tool:
        from tests.rpmdb_tool import rpm_database

        installed = rpm_database(RHEL_PACKAGES, root)
    else:
        write_rpmdb(root, RHEL_PACKAGES)
        installed = [encoded_package(package) for package in RHEL_PACKAGES]
    packages = sorted(installed, key=lambda p: (p["name"], p["arch"] or "", p["version"], p["release"]))

    unit_dir = "/usr/lib/systemd/system"
    wants = {
        "multi-user.target": ["sshd.service", "firewalld.service", "NetworkManager.service", "crond.service",
                              "auditd.service", "chronyd.service", "rsyslog.service", "cloud-init.service"],
        "sysinit.target": ["selinux-autorelabel-mark.service"],
        "getty.target": ["getty@tty1.service"],
        "network-online.target": ["NetworkManager-wait-online.service"],
        "timers.target": ["dnf-makecache.timer"],
    }
    init = _systemd(root, wants, unit_dir, "multi-user.target", masked=["ctrl-alt-del.target"], arch=arch)
    _write(root, "/etc/rc.d/init.d/legacy-agent", "#!/bin/sh\n", 0o755)
    for level in (3, 5):
        _link(root, f"/etc/rc.d/rc{level}.d/S50legacy-agent", "../init.d/legacy-agent")
    for level in range(7):
        _mkdir(root, f"/etc/rc.d/rc{level}.d")
        _link(root, f"/etc/rc{level}.d", f"rc.d/rc{level}.d")
    _link(root, "/etc/init.d", "rc.d/init.d")
    services = _services_truth(init, wants, "multi-user.target", ["ctrl-alt-del.target"],
                               [{"name": "legacy-agent", "runlevels": [3, 5]}])

    _write(root, "/etc/NetworkManager/system-connections/eth0.nmconnection", """\
[connection]
id=System eth0
uuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03
type=ethernet
interface-name=eth0

[ethernet]
mac-address=52:54:00:AA:BB:01

[ipv4]
method=manual
address1=192.168.1.10/24,192.168.1.1
address2=192.168.1.11/24
dns=8.8.8.8;8.8.4.4;
dns-search=example.com;

[ipv6]
method=ignore
""", 0o600)
    _write(root, "/etc/NetworkManager/system-connections/Wired connection 2.nmconnection",
           "[connection]\nid=Wired connection 2\ntype=ethernet\n\n[ipv4]\nmethod=auto\n", 0o600)
    _write(root, "/etc/sysconfig/network-scripts/ifcfg-eth1", """\
# legacy initscripts configuration
DEVICE=eth1
BOOTPROTO=none
ONBOOT=yes
HWADDR=52:54:00:aa:bb:02
IPADDR=172.16.0.20
NETMASK=255.255.0.0
GATEWAY=172.16.0.1
DNS1=172.16.0.53
DNS2="172.16.0.54"
""")
    _write(root, "/etc/sysconfig/network-scripts/ifcfg-eth2", 'DEVICE="eth2"\nBOOTPROTO="dhcp"\nONBOOT="no"\n')
    _write(root, "/etc/sysconfig/network", "# Created by anaconda\nNETWORKING=yes\n")
    _write(root, "/etc/resolv.conf", "# Generated by NetworkManager\nsearch example.com\nnameserver 8.8.8.8\n"
           "nameserver 8.8.4.4\n")
    network = {
        "interfaces": [
            {"name": "Wired connection 2", "source": "networkmanager",
             "file": "/etc/NetworkManager/system-connections/Wired connection 2.nmconnection", "method": "dhcp",
             "addresses": [], "gateway": None, "dns": [], "mac": None},
            {"name": "eth0", "source": "networkmanager",
             "file": "/etc/NetworkManager/system-connections/eth0.nmconnection", "method": "static",
             "addresses": ["192.168.1.10/24", "192.168.1.11/24"], "gateway": "192.168.1.1",
             "dns": ["8.8.8.8", "8.8.4.4"], "mac": "52:54:00:aa:bb:01"},
            {"name": "eth1", "source": "ifcfg", "file": "/etc/sysconfig/network-scripts/ifcfg-eth1",
             "method": "static", "addresses": ["172.16.0.20/16"], "gateway": "172.16.0.1",
             "dns": ["172.16.0.53", "172.16.0.54"], "mac": "52:54:00:aa:bb:02"},
            {"name": "eth2", "source": "ifcfg", "file": "/etc/sysconfig/network-scripts/ifcfg-eth2",
             "method": "dhcp", "addresses": [], "gateway": None, "dns": [], "mac": None},
        ],
        "dns": {"nameservers": ["8.8.8.8", "8.8.4.4"], "search": ["example.com"]},
    }

    _write(root, "/etc/ssh/sshd_config", RHEL_SSHD, 0o600)
    _write(root, "/etc/ssh/sshd_config.d/50-redhat.conf", "# RHEL defaults\nChallengeResponseAuthentication no\n"
           "GSSAPIAuthentication yes\nGSSAPICleanupCredentials no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\n",
           0o600)
    _write(root, "/etc/selinux/config", "# This file controls the state of SELinux on the system.\n"
           "SELINUX=enforcing\n# SELINUXTYPE= can take one of these three values:\nSELINUXTYPE=targeted\n")
    _write(root, "/etc/firewalld/firewalld.conf", "# firewalld config file\nDefaultZone=public\n"
           "FirewallBackend=nftables\n")
    _write(root, "/etc/default/grub", 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M '
           'resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root"\n')
    _write(root, "/boot/grub2/grub.cfg", "# grub2\n", 0o600)
    security = {
        "selinux": {"mode": "enforcing", "policy": "targeted"},
        "apparmor": None,
        "ssh": {
            "installed": True,
            "settings": {"challengeresponseauthentication": "no", "gssapiauthentication": "yes",
                         "gssapicleanupcredentials": "no", "usepam": "yes", "x11forwarding": "yes",
                         "printmotd": "no", "port": "22", "permitrootlogin": "yes",
                         "authorizedkeysfile": ".ssh/authorized_keys",
                         "subsystem": "sftp\t/usr/libexec/openssh/sftp-server"},
            "permit_root_login": "yes", "password_authentication": True, "permit_empty_passwords": False,
            "x11_forwarding": True, "ports": [22, 2222],
        },
        "firewall": {"enabled": True, "backends": [
            {"type": "firewalld", "enabled": True, "default_zone": "public"}]},
    }

    versions = ["5.14.0-284.11.1.el9_2.x86_64", "5.14.0-362.8.1.el9_3.x86_64"]
    kernels = _kernels(root, versions, "/boot/initramfs-{version}.img", with_modules=versions)
    _write(root, "/boot/initramfs-5.14.0-362.8.1.el9_3.x86_64kdump.img", b"kdump")
    rescue = f"0-rescue-{machine_id}"
    kernels.insert(0, {"version": rescue, "kernel": f"/boot/vmlinuz-{rescue}",
                       "initramfs": f"/boot/initramfs-{rescue}.img", "modules": False, "config": None,
                       "boot_entry": None, "default": False})
    # grub2 BLS entries, one per kernel, as kernel-install writes them; grubenv boots the newest
    options = "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root"
    for kernel in kernels:
        version = kernel["version"]
        entry_id = f"{machine_id}-{version}"
        title = f"Red Hat Enterprise Linux ({version}) 9.3 (Plow)"
        _write(root, f"/boot/loader/entries/{entry_id}.conf", f"title {title}\nversion {version}\n"
               f"linux /vmlinuz-{version}\ninitrd /initramfs-{version}.img $tuned_initrd\noptions {options}\n"
               "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n")
        kernel["boot_entry"] = {"id": entry_id, "file": f"/boot/loader/entries/{entry_id}.conf", "title": title,
                                "options": options}
        kernel["default"] = version == versions[-1]
    _write(root, "/boot/grub2/grubenv", f"# GRUB Environment Block\nsaved_entry={machine_id}-{versions[-1]}\n"
           "boot_success=0\n" + "#" * 900)
    _write(root, f"/boot/vmlinuz-{rescue}", b"MZ rescue")
    _write(root, f"/boot/initramfs-{rescue}.img", b"rescue initramfs")
    _write(root, "/boot/.vmlinuz-5.14.0-362.8.1.el9_3.x86_64.hmac", "hmac\n")
    fstab_rows = [
        (f"UUID={root_uuid}", "/", "ext4", "defaults", 1, 1),
        (f"UUID={boot_uuid}", "/boot", "ext4", "defaults", 1, 2),
        (swap_device, "none", "swap", "defaults", 0, 0),
    ]
    _fstab(root, fstab_rows, "\n#\n# /etc/fstab\n# Created by anaconda\n#\n")

    _write(root, "/etc/cloud/cloud.cfg", "users:\n - default\ndisable_root: 1\n"
           "datasource_list: [ ConfigDrive ]\n")
    _write(root, "/etc/cloud/cloud.cfg.d/99-datasource.cfg", "datasource_list: [ Ec2, None ]\n")
    _write(root, "/etc/cloud/cloud-init.disabled", "")
    _write(root, "/usr/share/zoneinfo/America/New_York", b"TZif2\x00fake")
    _link(root, "/etc/localtime", "../usr/share/zoneinfo/America/New_York")
    _write(root, "/etc/sysctl.d/50-hardening.conf", "kernel.randomize_va_space = 2\n"
           "net.ipv4.conf.all.accept_redirects = 0\nnet/ipv4/conf/all/send_redirects = 0\n"
           "net.ipv4.tcp_syncookies=1\nfs.suid_dumpable = 0\n")
    _write(root, "/usr/lib/sysctl.d/50-hardening.conf", "kernel.randomize_va_space = 0\n")  # shadowed by /etc
    _link(root, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    _write(root, "/etc/sysctl.conf", "# System default settings live in /usr/lib/sysctl.d/00-system.conf.\n"
           "vm.swappiness = 80\n")
    _write(root, "/etc/crontab", "SHELL=/bin/bash\nPATH=/sbin:/bin:/usr/sbin:/usr/bin\nMAILTO=root\n", 0o600)
    _write(root, "/var/spool/cron/root", "@daily /usr/local/bin/rotate.sh\n", 0o600)
    _write(root, "/etc/systemd/journald.conf", "[Journal]\nStorage=persistent\n")
    _write(root, "/etc/tuned/active_profile", "virtual-guest\n")

    return {
        "package_database": "/var/lib/rpm/rpmdb.sqlite",
        "os": {"type": "linux", "distribution": "rhel", "name": "Red Hat Enterprise Linux",
               "pretty_name": "Red Hat Enterprise Linux 9.3 (Plow)", "version": "9.3", "version_major": 9,
               "version_minor": 3, "codename": None, "id_like": ["fedora"], "family": "rhel",
               "architecture": arch,
               "package_format": "rpm", "package_manager": "dnf"},
        "hostname": hostname,
        "machine_id": machine_id,
        "users": _user_truth(users, groups, {"wheel"}, {"root"}),
        "groups": _group_truth(groups),
        "packages": packages,
        "services": services,
        "network": network,
        "security": security,
        "kernels": kernels,
        "fstab": fstab_rows,
        "cloud_init": {"installed": True, "disabled": True, "datasources": ["Ec2", "None"]},
        "cron": [{"file": "/var/spool/cron/root", "line": 1, "user": "root", "schedule": "@daily",
                  "command": "/usr/local/bin/rotate.sh"}],
        "timezone": "America/New_York",
        "sysctl": {"kernel.randomize_va_space": "2", "net.ipv4.conf.all.accept_redirects": "0",
                   "net.ipv4.conf.all.send_redirects": "0", "net.ipv4.tcp_syncookies": "1",
                   "fs.suid_dumpable": "0", "vm.swappiness": "80"},
        "login_defs": {"PASS_MAX_DAYS": "99999", "PASS_MIN_DAYS": "0", "PASS_WARN_AGE": "7", "UMASK": "022"},
    }


def make_rocky_tree(root: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """The RHEL tree as Rocky Linux 9.3 ships it: its own os-release and release file, to which
    /etc/redhat-release and /etc/system-release are links."""
    truth = make_rhel_tree(root, **options)
    root = Path(root)
    (root / "usr/lib/os-release").unlink()
    _os_release(root, {
        "NAME": "Rocky Linux", "VERSION": "9.3 (Blue Onyx)", "ID": "rocky", "ID_LIKE": "rhel centos fedora",
        "VERSION_ID": "9.3", "PLATFORM_ID": "platform:el9", "PRETTY_NAME": "Rocky Linux 9.3 (Blue Onyx)",
        "ANSI_COLOR": "0;32", "ROCKY_SUPPORT_PRODUCT": "Rocky-Linux-9", "ROCKY_SUPPORT_PRODUCT_VERSION": "9.3",
    })
    (root / "etc/redhat-release").unlink()
    _write(root, "/etc/rocky-release", "Rocky Linux release 9.3 (Blue Onyx)\n")
    _link(root, "/etc/redhat-release", "rocky-release")
    _link(root, "/etc/system-release", "rocky-release")
    truth["os"] = {**truth["os"], "distribution": "rocky", "name": "Rocky Linux",
                   "pretty_name": "Rocky Linux 9.3 (Blue Onyx)", "id_like": ["rhel", "centos", "fedora"]}
    return truth


def _package_list(rows: str) -> list[dict[str, Any]]:
    """``name epoch version release arch`` lines ('-' for no epoch) as package dicts."""
    packages = []
    for row in rows.split(";"):
        name, epoch, version, release, arch = row.split()
        packages.append({"name": name, "epoch": None if epoch == "-" else int(epoch), "version": version,
                         "release": release, "arch": arch})
    return packages


CENTOS7_PACKAGES = _package_list(
    "bash - 4.2.46 35.el7_9 x86_64; centos-release - 7 9.2009.1.el7.centos x86_64; coreutils - 8.22 24.el7_9.2 x86_64;"
    "glibc - 2.17 326.el7_9 x86_64; glibc - 2.17 326.el7_9 i686; kernel - 3.10.0 1160.108.1.el7 x86_64;"
    "kernel - 3.10.0 1160.el7 x86_64; openssh-server - 7.4p1 23.el7_9 x86_64; openssl 1 1.0.2k 26.el7_9 x86_64;"
    "python - 2.7.5 94.el7_9 x86_64; rpm - 4.11.3 48.el7_9 x86_64; systemd - 219 78.el7_9.9 x86_64;"
    "yum - 3.4.3 168.el7.centos noarch; vim-minimal 2 7.4.629 8.el7_9 x86_64")
SLES15_PACKAGES = _package_list(
    "bash - 4.4 150400.27.3.2 x86_64; glibc - 2.31 150300.63.1 x86_64; kernel-default - 5.14.21 150500.55.39.1 x86_64;"
    "openssh-server - 9.6p1 150600.4.3 x86_64; rpm-ndb - 4.14.3 150400.59.7.1 x86_64;"
    "sles-release - 15.5 150500.59.3 x86_64; systemd - 249.16 150400.8.35.5 x86_64;"
    "zypper - 1.14.68 150400.3.40.1 x86_64; wicked - 0.6.74 150500.3.18.1 x86_64")


def _replace_rpm_database(root: Path, packages: list[dict[str, Any]], write: Callable[[list[bytes]], None]
                          ) -> list[dict[str, Any]]:
    """The tree's sqlite rpm database replaced by one of another format holding ``packages``
    (headers written by rpm itself), written by ``write``; returns them as rpm reads them."""
    import tempfile

    from tests.rpmdb_build import installed_headers

    for name in ("rpmdb.sqlite", "rpmdb.sqlite-wal", "rpmdb.sqlite-shm"):
        (root / "var/lib/rpm" / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="rpm-headers-") as work:
        blobs, installed = installed_headers(packages, Path(work))
    write(blobs)
    return sorted(installed, key=lambda p: (p["name"], p["arch"] or "", p["version"], p["release"]))


def make_centos7_tree(root: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """CentOS 7.9 as installed: os-release says ``7`` (the minor is in /etc/centos-release), yum,
    and the rpm database a Berkeley DB hash file (/var/lib/rpm/Packages)."""
    from tests.rpmdb_build import write_bdb

    truth = make_rhel_tree(root, **options)
    root = Path(root)
    (root / "usr/lib/os-release").unlink()
    _os_release(root, {"NAME": "CentOS Linux", "VERSION": "7 (Core)", "ID": "centos", "ID_LIKE": "rhel fedora",
                       "VERSION_ID": "7", "PRETTY_NAME": "CentOS Linux 7 (Core)", "ANSI_COLOR": "0;31",
                       "CPE_NAME": "cpe:/o:centos:centos:7"})
    (root / "etc/redhat-release").unlink()
    _write(root, "/etc/centos-release", "CentOS Linux release 7.9.2009 (Core)\n")
    _link(root, "/etc/redhat-release", "centos-release")
    for name in ("dnf", "dnf-3"):
        (root / "usr/bin" / name).unlink()
    _write(root, "/usr/bin/yum", b"#!/usr/bin/python\n", 0o755)
    truth["packages"] = _replace_rpm_database(root, CENTOS7_PACKAGES,
                                              lambda blobs: write_bdb(root / "var/lib/rpm/Packages", blobs))
    truth["package_database"] = "/var/lib/rpm/Packages"
    truth["os"] = {**truth["os"], "distribution": "centos", "name": "CentOS Linux",
                   "pretty_name": "CentOS Linux 7 (Core)", "version": "7.9.2009", "version_major": 7,
                   "version_minor": 9, "id_like": ["rhel", "fedora"], "package_manager": "yum"}
    return truth


def make_sles15_tree(root: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """SLES 15 SP5's release files, zypper, and an ndb rpm database in /usr/lib/sysimage/rpm (to
    which /var/lib/rpm links), on the RHEL tree's other files."""
    from tests.rpmdb_build import write_ndb

    truth = make_rhel_tree(root, **options)
    root = Path(root)
    (root / "usr/lib/os-release").unlink()
    _os_release(root, {"NAME": "SLES", "VERSION": "15-SP5", "VERSION_ID": "15.5", "ID": "sles", "ID_LIKE": "suse",
                       "PRETTY_NAME": "SUSE Linux Enterprise Server 15 SP5", "ANSI_COLOR": "0;32",
                       "CPE_NAME": "cpe:/o:suse:sles:15:sp5"})
    (root / "etc/redhat-release").unlink()
    for name in ("dnf", "dnf-3", "yum"):
        (root / "usr/bin" / name).unlink()
    _write(root, "/usr/bin/zypper", elf_header("x86_64"), 0o755)
    database = root / "usr/lib/sysimage/rpm"
    database.mkdir(parents=True)
    truth["packages"] = _replace_rpm_database(root, SLES15_PACKAGES,
                                              lambda blobs: write_ndb(database / "Packages.db", blobs))
    shutil.rmtree(root / "var/lib/rpm")
    _link(root, "/var/lib/rpm", "../../usr/lib/sysimage/rpm")
    truth["package_database"] = "/var/lib/rpm/Packages.db"  # the first path searched, through the link
    truth["os"] = {**truth["os"], "distribution": "sles", "name": "SLES",
                   "pretty_name": "SUSE Linux Enterprise Server 15 SP5", "version": "15.5", "version_major": 15,
                   "version_minor": 5, "id_like": ["suse"], "family": "suse", "package_manager": "zypper"}
    return truth


OPENSUSE_RELEASES = {
    "leap": {"NAME": "openSUSE Leap", "VERSION": "15.6", "ID": "opensuse-leap", "ID_LIKE": "suse opensuse",
             "VERSION_ID": "15.6", "PRETTY_NAME": "openSUSE Leap 15.6", "CPE_NAME": "cpe:/o:opensuse:leap:15.6"},
    "tumbleweed": {"NAME": "openSUSE Tumbleweed", "ID": "opensuse-tumbleweed", "ID_LIKE": "opensuse suse",
                   "VERSION_ID": "20261201", "PRETTY_NAME": "openSUSE Tumbleweed",
                   "CPE_NAME": "cpe:/o:opensuse:tumbleweed:20261201"},
}
WICKED_INTERFACES = [
    {"name": "eth0", "source": "wicked", "file": "/etc/sysconfig/network/ifcfg-eth0", "method": "static",
     "addresses": ["10.20.30.40/24"], "gateway": "10.20.30.1", "dns": ["10.20.30.53"], "mac": "52:54:00:aa:bb:10"},
    {"name": "eth1", "source": "wicked", "file": "/etc/sysconfig/network/ifcfg-eth1", "method": "dhcp",
     "addresses": [], "gateway": None, "dns": ["10.20.30.53"], "mac": None},
]


def _suse_system(root: Path, truth: dict[str, Any]) -> None:
    """What SUSE has where Red Hat has something else: wicked instead of NetworkManager and initscripts,
    AppArmor instead of SELinux."""
    shutil.rmtree(root / "etc/sysconfig/network-scripts")
    shutil.rmtree(root / "etc/NetworkManager")
    (root / "etc/sysconfig/network").unlink()
    _write(root, "/etc/sysconfig/network/ifcfg-eth0", "BOOTPROTO='static'\nSTARTMODE='auto'\n"
           "IPADDR='10.20.30.40/24'\nLLADDR='52:54:00:aa:bb:10'\n")
    _write(root, "/etc/sysconfig/network/ifcfg-eth1", "BOOTPROTO='dhcp'\nSTARTMODE='auto'\n")
    _write(root, "/etc/sysconfig/network/ifcfg-lo", "IPADDR='127.0.0.1/8'\nSTARTMODE='nfsroot'\n")
    _write(root, "/etc/sysconfig/network/routes", "default 10.20.30.1 - -\n")
    _write(root, "/etc/sysconfig/network/config", 'NETCONFIG_DNS_STATIC_SERVERS="10.20.30.53"\n')
    truth["network"] = {**truth["network"], "interfaces": WICKED_INTERFACES}
    (root / "etc/selinux/config").unlink()
    _write(root, "/etc/apparmor.d/usr.sbin.nscd", "profile nscd /usr/sbin/nscd {\n}\n")
    _write(root, "/etc/apparmor.d/usr.bin.lessopen.sh", "/usr/bin/lessopen.sh flags=(complain) {\n}\n")
    truth["security"] = {**truth["security"], "selinux": None,
                         "apparmor": {"enabled": True, "profiles": {"usr.bin.lessopen.sh": "complain",
                                                                    "usr.sbin.nscd": "enforce"}}}


def make_opensuse_tree(root: str | os.PathLike[str], variant: str = "leap", **options: Any) -> dict[str, Any]:
    """openSUSE Leap or Tumbleweed: SLES's packaging (zypper, an ndb rpm database), wicked, AppArmor."""
    truth = make_sles15_tree(root, **options)
    root = Path(root)
    (root / "usr/lib/os-release").unlink()
    release = OPENSUSE_RELEASES[variant]
    _os_release(root, release)
    _suse_system(root, truth)
    version = release["VERSION_ID"]
    major, _, minor = version.partition(".")
    truth["os"] = {**truth["os"], "distribution": release["ID"], "name": release["NAME"],
                   "pretty_name": release["PRETTY_NAME"], "version": version, "version_major": int(major),
                   "version_minor": int(minor) if minor else None, "id_like": release["ID_LIKE"].split()}
    return truth


def make_sles15_btrfs_tree(root: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """SLES 15 as installed on btrfs: wicked and AppArmor as well."""
    truth = make_sles15_tree(root, **options)
    _suse_system(Path(root), truth)
    return truth


def make_fedora_tree(root: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Fedora 41 Server: the RHEL tree's system with Fedora's release files (its rpm database in sqlite)."""
    truth = make_rhel_tree(root, **options)
    root = Path(root)
    (root / "usr/lib/os-release").unlink()
    _os_release(root, {"NAME": "Fedora Linux", "VERSION": "41 (Server Edition)", "ID": "fedora",
                       "VERSION_ID": "41", "PRETTY_NAME": "Fedora Linux 41 (Server Edition)",
                       "CPE_NAME": "cpe:/o:fedoraproject:fedora:41", "VARIANT_ID": "server"})
    (root / "etc/redhat-release").unlink()
    _write(root, "/etc/fedora-release", "Fedora release 41 (Forty One)\n")
    truth["os"] = {**truth["os"], "distribution": "fedora", "name": "Fedora Linux",
                   "pretty_name": "Fedora Linux 41 (Server Edition)", "version": "41", "version_major": 41,
                   "version_minor": None, "id_like": []}
    return truth


def assert_report_matches(report: dict[str, Any], truth: dict[str, Any]) -> None:
    """An inspect report against a tree's ground truth, field by field."""
    assert report["os"] == {**truth["os"], "hostname": truth["hostname"]}
    assert report["packages"]["installed"] == truth["packages"]
    assert report["packages"]["count"] == len(truth["packages"])
    assert report["packages"]["format"] == truth["os"]["package_format"]
    for key in ("users", "groups", "services", "network", "security", "kernels", "machine_id", "cloud_init",
                "timezone"):
        assert report[key] == truth[key], key
    assert report["scheduled_tasks"] == truth["cron"]


#: distro name -> tree builder
MAKERS: dict[str, Callable[[Path], dict[str, Any]]] = {"debian": make_debian_tree, "rhel": make_rhel_tree,
                                                       "rocky": make_rocky_tree, "centos7": make_centos7_tree,
                                                       "sles15": make_sles15_tree}


# --------------------------------------------------------------------------- a handler context for tests


@dataclass
class FakeContext:
    """Implements ``app.plugin.handler.HandlerContext`` for calling handlers directly in tests."""

    work_dir: Path
    allowed_dirs: list[Path]
    job_id: str = "test-job-0001"
    attempt: int = 1
    max_disk_size_gb: int | None = None
    max_chain_depth: int = 0
    limits: Limits = field(default_factory=Limits)
    cancelled: bool = False
    progress: list[tuple[str, int, str]] = field(default_factory=list)
    logger: logging.LoggerAdapter = field(
        default_factory=lambda: logging.LoggerAdapter(logging.getLogger("tests.guestkit"), {}))

    def report_progress(self, phase: str, percent: int, message: str, details: dict[str, Any] | None = None) -> None:
        assert 0 <= percent <= 100, percent
        self.progress.append((phase, percent, message))

    def cancel_requested(self) -> bool:
        return self.cancelled

    def allowed_path(self, path: str | Path, *, must_exist: bool = True) -> Path:
        return resolve_allowed(path, self.allowed_dirs, must_exist=must_exist)
