"""Ground-truth root trees of an Alpine guest (busybox, musl, OpenRC, apk) and an Arch guest (systemd,
pacman, systemd-networkd and netctl), each with its package database written in the real format.

Like ``tests.guestdata``: each ``make_*_tree`` writes the tree and returns what inspect must report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.guestdata import (
    _accounts,
    _group_truth,
    _link,
    _os_release,
    _services_truth,
    _systemd,
    _user_truth,
    _write,
    elf_header,
)

# --------------------------------------------------------------------------- Alpine

#: (name, version, origin, licence, installed size, build time, summary)
ALPINE_PACKAGES: list[tuple[str, str, str, str, int, int, str]] = [
    ("alpine-base", "3.19.1-r0", "alpine-base", "MIT", 4096, 1706263000, "Meta package for minimal alpine base"),
    ("alpine-baselayout", "3.4.3-r2", "alpine-baselayout", "GPL-2.0-only", 331776, 1700233000,
     "Alpine base dir structure and init scripts"),
    ("apk-tools", "2.14.0-r5", "apk-tools", "GPL-2.0-only", 307200, 1701259000, "Alpine Package Keeper"),
    ("busybox", "1.36.1-r15", "busybox", "GPL-2.0-only", 950272, 1700233020,
     "Size optimized toolbox of many common UNIX utilities"),
    ("busybox-openrc", "1.36.1-r15", "busybox", "GPL-2.0-only", 28672, 1700233020,
     "Size optimized toolbox of many common UNIX utilities (OpenRC init scripts)"),
    ("chrony", "4.5-r0", "chrony", "GPL-2.0-only", 413696, 1702551000, "NTP client and server programs"),
    ("iptables", "1.8.10-r3", "iptables", "GPL-2.0-or-later", 2011136, 1704294000,
     "Linux kernel firewall, NAT and packet mangling tools"),
    ("linux-lts", "6.6.14-r0", "linux-lts", "GPL-2.0-only", 104857600, 1706022000, "Linux lts kernel"),
    ("musl", "1.2.4_git20230717-r4", "musl", "MIT", 663552, 1697712355, "the musl c library (libc) implementation"),
    ("openrc", "0.52.1-r2", "openrc", "BSD-2-Clause", 1675264, 1702051000,
     "OpenRC manages the services, startup and shutdown of a host"),
    ("openssh-server", "9.6_p1-r0", "openssh", "SSH-OpenSSH", 909312, 1703061000,
     "OpenSSH server"),
]
ALPINE_MAINTAINER = "Natanael Copa <ncopa@alpinelinux.org>"
ALPINE_KERNEL = "6.6.14-0-lts"


def _apk_installed(packages: list[tuple[str, str, str, str, int, int, str]]) -> str:
    """The apk ``installed`` database as apk-tools 2 writes it, file lines included."""
    blocks = []
    for name, version, origin, licence, size, built, summary in packages:
        blocks.append(
            f"C:Q1{name.encode().hex()[:26]}=\nP:{name}\nV:{version}\nA:x86_64\nS:{size // 3}\nI:{size}\n"
            f"T:{summary}\nU:https://alpinelinux.org\nL:{licence}\no:{origin}\nm:{ALPINE_MAINTAINER}\nt:{built}\n"
            f"c:{'0' * 40}\nD:so:libc.musl-x86_64.so.1\nF:usr/share/doc/{name}\nR:README\na:0:0:644\n"
            f"Z:Q1{'A' * 26}=\n")
    return "\n".join(blocks) + "\n"


def _alpine_package_truth(packages: list[tuple[str, str, str, str, int, int, str]]) -> list[dict[str, Any]]:
    truth = []
    for name, version, origin, licence, size, built, summary in packages:
        upstream, release = version.rsplit("-", 1)
        truth.append({"name": name, "epoch": None, "version": upstream, "release": release, "arch": "x86_64",
                      "origin": origin, "license": licence, "size": size, "install_time": None, "build_time": built,
                      "maintainer": ALPINE_MAINTAINER, "summary": summary})
    return truth


def make_alpine_tree(root: str | os.PathLike[str], *, hostname: str = "alp-edge01") -> dict[str, Any]:
    """Alpine 3.19 as setup-alpine leaves a small server: busybox init handing over to OpenRC,
    ifupdown-ng, busybox crond, iptables, chrony, sshd; root's shell ash."""
    root = Path(root)
    for directory in ("bin", "sbin", "lib", "usr/bin", "usr/sbin", "tmp", "root", "home", "proc", "dev", "run"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    _write(root, "/bin/busybox", elf_header("x86_64"), 0o755)
    for applet in ("/bin/sh", "/bin/ash", "/sbin/init", "/bin/ls"):
        _link(root, applet, "/bin/busybox")
    for binary in ("/sbin/openrc", "/sbin/openrc-run", "/sbin/apk", "/usr/sbin/sshd", "/usr/sbin/chronyd"):
        _write(root, binary, elf_header("x86_64"), 0o755)
    _write(root, "/etc/os-release", 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'
           'PRETTY_NAME="Alpine Linux v3.19"\nHOME_URL="https://alpinelinux.org/"\n')
    _write(root, "/etc/alpine-release", "3.19.1\n")
    _write(root, "/etc/sysctl.d/00-alpine.conf", "# Prevent SYN attack\nnet.ipv4.tcp_syncookies = 1\n"
           "kernel.panic = 120\n")
    _write(root, "/etc/hostname", f"{hostname}\n")
    _link(root, "/etc/localtime", "/usr/share/zoneinfo/Europe/Paris")
    _write(root, "/usr/share/zoneinfo/Europe/Paris", b"TZif2")

    # accounts: busybox's passwd and shadow, no sudo (doas)
    users = [
        ("root", 0, 0, "root", "/root", "/bin/ash", "$6$rounds=5000$s$h"),
        ("bin", 1, 1, "bin", "/bin", "/sbin/nologin", "!"),
        ("daemon", 2, 2, "daemon", "/sbin", "/sbin/nologin", "!"),
        ("sshd", 22, 22, "sshd", "/dev/null", "/sbin/nologin", "!"),
        ("chrony", 100, 101, "chrony", "/var/lib/chrony", "/sbin/nologin", "!"),
        ("nobody", 65534, 65534, "nobody", "/", "/sbin/nologin", "!"),
        ("ops", 1000, 1000, "Operations", "/home/ops", "/bin/ash", "$6$s$opshash"),
    ]
    groups = [("root", 0, ["root"]), ("bin", 1, ["root", "bin", "daemon"]), ("daemon", 2, ["root", "bin", "daemon"]),
              ("wheel", 10, ["root", "ops"]), ("sshd", 22, []), ("chrony", 101, []), ("ops", 1000, []),
              ("nogroup", 65533, []), ("nobody", 65534, [])]
    _accounts(root, users, groups, 0o640)
    _write(root, "/etc/doas.d/doas.conf", "permit persist :wheel\n")

    # packages and the kernel
    _write(root, "/lib/apk/db/installed", _apk_installed(ALPINE_PACKAGES))
    _write(root, "/boot/vmlinuz-lts", b"MZ\x00alpine-lts-kernel", 0o644)
    _write(root, "/boot/initramfs-lts", b"\x1f\x8b initramfs", 0o644)
    _write(root, f"/boot/config-{ALPINE_KERNEL}", "CONFIG_X86_64=y\n# CONFIG_SECURITY_DMESG_RESTRICT is not set\n")
    _write(root, f"/boot/System.map-{ALPINE_KERNEL}", "ffffffff81000000 T _text\n")
    _write(root, f"/lib/modules/{ALPINE_KERNEL}/modules.dep", "")
    kernels = [{"version": ALPINE_KERNEL, "kernel": "/boot/vmlinuz-lts", "initramfs": "/boot/initramfs-lts",
                "modules": True, "config": f"/boot/config-{ALPINE_KERNEL}", "boot_entry": None, "default": False}]

    # OpenRC: /etc/init.d scripts added to runlevels
    runlevels = {"sysinit": ["devfs", "dmesg", "hwdrivers", "mdev"],
                 "boot": ["bootmisc", "hostname", "hwclock", "modules", "networking", "sysctl", "syslog", "urandom"],
                 "default": ["chronyd", "crond", "iptables", "sshd"],
                 "shutdown": ["killprocs", "mount-ro", "savecache"]}
    for level, scripts in runlevels.items():
        (root / "etc/runlevels" / level).mkdir(parents=True, exist_ok=True)
        for script in scripts:
            _write(root, f"/etc/init.d/{script}", "#!/sbin/openrc-run\n", 0o755)
            _link(root, f"/etc/runlevels/{level}/{script}", f"/etc/init.d/{script}")
    (root / "etc/runlevels/nonetwork").mkdir()
    _write(root, "/etc/init.d/auditd", "#!/sbin/openrc-run\n", 0o755)  # installed, in no runlevel
    openrc = sorted(({"name": s, "runlevels": [level]} for level, scripts in runlevels.items() for s in scripts),
                    key=lambda s: s["name"])
    services = _services_truth({"name": "openrc", "evidence": "/sbin/init -> /bin/busybox; /sbin/openrc"},
                               {}, None, [], [], openrc)

    # network: ifupdown-ng, one stanza in Debian's words, one in ifupdown-ng's own
    _write(root, "/etc/network/interfaces", "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
           "\thostname alp-edge01\n\nauto eth1\niface eth1\n\taddress 192.0.2.5/24\n\taddress 2001:db8::5/64\n"
           "\tgateway 192.0.2.1\n")
    _write(root, "/etc/resolv.conf", "search example.net\nnameserver 192.0.2.53\n")
    network = {"interfaces": [
        {"name": "lo", "source": "ifupdown", "file": "/etc/network/interfaces", "method": "loopback",
         "addresses": [], "gateway": None, "dns": [], "mac": None},
        {"name": "eth0", "source": "ifupdown", "file": "/etc/network/interfaces", "method": "dhcp",
         "addresses": [], "gateway": None, "dns": [], "mac": None},
        {"name": "eth1", "source": "ifupdown", "file": "/etc/network/interfaces", "method": "static",
         "addresses": ["192.0.2.5/24"], "gateway": "192.0.2.1", "dns": [], "mac": None},
    ], "dns": {"nameservers": ["192.0.2.53"], "search": ["example.net"]}}

    # security: sshd with root login off, iptables rules saved and the service in the default runlevel
    _write(root, "/etc/ssh/sshd_config", "# Alpine\nPermitRootLogin no\nAuthorizedKeysFile\t.ssh/authorized_keys\n"
           "AllowTcpForwarding no\nSubsystem\tsftp\tinternal-sftp\n")
    _write(root, "/etc/iptables/rules-save", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n", 0o600)
    security = {
        "selinux": None, "apparmor": None,
        "ssh": {"installed": True, "settings": {"permitrootlogin": "no", "authorizedkeysfile": ".ssh/authorized_keys",
                                                "allowtcpforwarding": "no", "subsystem": "sftp\tinternal-sftp"},
                "permit_root_login": "no", "password_authentication": True, "permit_empty_passwords": False,
                "x11_forwarding": False, "ports": [22]},
        "firewall": {"enabled": True, "backends": [{"type": "iptables", "enabled": True}]},
    }

    # busybox crond: one crontab per user in /etc/crontabs
    _write(root, "/etc/crontabs/root", "# do daily/weekly/monthly maintenance\n# min\thour\tday\tmonth\tweekday\t"
           "command\n*/15\t*\t*\t*\t*\trun-parts /etc/periodic/15min\n0\t*\t*\t*\t*\trun-parts /etc/periodic/hourly\n",
           0o600)
    cron = [{"file": "/etc/crontabs/root", "line": 3, "user": "root", "schedule": "*/15 * * * *",
             "command": "run-parts /etc/periodic/15min"},
            {"file": "/etc/crontabs/root", "line": 4, "user": "root", "schedule": "0 * * * *",
             "command": "run-parts /etc/periodic/hourly"}]
    return {
        "package_database": "/lib/apk/db/installed",
        "os": {"type": "linux", "distribution": "alpine", "name": "Alpine Linux", "pretty_name": "Alpine Linux v3.19",
               "version": "3.19.1", "version_major": 3, "version_minor": 19, "codename": None, "id_like": [],
               "family": "alpine", "architecture": "x86_64", "package_format": "apk", "package_manager": "apk"},
        "hostname": hostname,
        "machine_id": None,
        "users": _user_truth(users, groups, set(), set()),
        "groups": _group_truth(groups),
        "packages": sorted(_alpine_package_truth(ALPINE_PACKAGES), key=lambda p: p["name"]),
        "services": services,
        "network": network,
        "security": security,
        "kernels": kernels,
        "cloud_init": None,
        "cron": cron,
        "timezone": "Europe/Paris",
        "sysctl": {"net.ipv4.tcp_syncookies": "1", "kernel.panic": "120"},
        "fstab": [],
        "login_defs": {},
    }


# --------------------------------------------------------------------------- Arch

#: (name, version, base, licences, size, install date, explicitly installed, summary)
ARCH_PACKAGES: list[tuple[str, str, str, list[str], int, int, bool, str]] = [
    ("base", "3-2", "base", ["GPL-3.0-or-later"], 0, 1707300000, True, "Minimal package set to define a basic "
     "Arch Linux installation"),
    ("bash", "5.2.026-2", "bash", ["GPL-3.0-or-later"], 9437184, 1707300010, False, "The GNU Bourne Again shell"),
    ("cronie", "1.7.1-1", "cronie", ["custom:BSD"], 245760, 1707300020, True,
     "Daemon that runs specified programs at scheduled times and related tools"),
    ("filesystem", "2023.09.18-1", "filesystem", ["GPL-3.0-or-later"], 24576, 1707300000, False,
     "Base Arch Linux files"),
    ("glibc", "2.39-1", "glibc", ["GPL-2.0-or-later", "LGPL-2.1-or-later"], 49283072, 1707300005, False,
     "GNU C Library"),
    ("linux", "6.7.4.arch1-1", "linux", ["GPL-2.0-only"], 136314880, 1707300100, True,
     "The Linux kernel and modules"),
    ("linux-headers", "6.7.4.arch1-1", "linux", ["GPL-2.0-only"], 171966464, 1707300110, True,
     "Headers and scripts for building modules for the Linux kernel"),
    ("linux-lts", "6.6.16-1", "linux-lts", ["GPL-2.0-only"], 132120576, 1707300120, True,
     "The LTS Linux kernel and modules"),
    ("nftables", "1:1.0.9-1", "nftables", ["GPL-2.0-only"], 1048576, 1707300030, True,
     "Netfilter tables userspace tools"),
    ("openssh", "9.6p1-1", "openssh", ["SSH-OpenSSH"], 5767168, 1707300040, True,
     "SSH protocol implementation for remote login, command execution and file transfer"),
    ("pacman", "6.0.2-9", "pacman", ["GPL-2.0-or-later"], 4718592, 1707300002, False, "A library-based package "
     "manager with dependency support"),
    ("sudo", "1.9.15.p5-1", "sudo", ["custom"], 4194304, 1707300050, True, "Give certain users the ability to run "
     "some commands as root"),
    ("systemd", "255.3-2", "systemd", ["GPL-2.0-or-later", "LGPL-2.1-or-later"], 30408704, 1707300003, False,
     "system and service manager"),
]
ARCH_PACKAGER = "Arch Linux Packager <packager@archlinux.org>"
ARCH_KERNELS = {"linux": "6.7.4-arch1-1", "linux-lts": "6.6.16-1-lts"}


def _pacman_desc(name: str, version: str, base: str, licences: list[str], size: int, installed: int,
                 explicit: bool, summary: str) -> str:
    sections = [("NAME", [name]), ("VERSION", [version]), ("BASE", [base]), ("DESC", [summary]),
                ("URL", [f"https://archlinux.org/packages/{name}"]), ("ARCH", ["x86_64"]),
                ("BUILDDATE", [str(installed - 86400)]), ("INSTALLDATE", [str(installed)]),
                ("PACKAGER", [ARCH_PACKAGER]), ("SIZE", [str(size)])]
    if not explicit:
        sections.append(("REASON", ["1"]))
    sections += [("LICENSE", licences), ("VALIDATION", ["pgp"]), ("DEPENDS", ["glibc"])]
    return "".join(f"%{key}%\n" + "".join(f"{v}\n" for v in values) + "\n" for key, values in sections)


def _arch_package_truth() -> list[dict[str, Any]]:
    truth = []
    for name, version, base, licences, size, installed, explicit, summary in ARCH_PACKAGES:
        epoch, _, rest = version.rpartition(":")
        upstream, release = rest.rsplit("-", 1)
        truth.append({"name": name, "epoch": int(epoch) if epoch else None, "version": upstream, "release": release,
                      "arch": "x86_64", "origin": base, "license": " AND ".join(licences), "size": size,
                      "install_time": installed, "build_time": installed - 86400, "packager": ARCH_PACKAGER,
                      "explicit": explicit, "summary": summary})
    return truth


def make_arch_tree(root: str | os.PathLike[str], *, hostname: str = "arch-dev01") -> dict[str, Any]:
    """Arch as pacstrap and a few days of use leave it: merged /usr with /sbin in /usr/bin, systemd,
    two kernels (linux with its headers, linux-lts), systemd-networkd and a netctl profile, cronie,
    nftables, sudo for wheel."""
    root = Path(root)
    for directory in ("usr/bin", "usr/lib", "tmp", "root", "home", "proc", "dev", "run"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for name, target in (("bin", "usr/bin"), ("sbin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib")):
        _link(root, f"/{name}", target)
    _link(root, "/usr/sbin", "bin")
    for binary in ("/usr/bin/bash", "/usr/bin/pacman", "/usr/bin/sshd", "/usr/bin/crond"):
        _write(root, binary, elf_header("x86_64"), 0o755)
    _link(root, "/usr/bin/sh", "bash")
    _os_release(root, {"NAME": "Arch Linux", "PRETTY_NAME": "Arch Linux", "ID": "arch", "BUILD_ID": "rolling",
                       "HOME_URL": "https://archlinux.org/"})
    _write(root, "/etc/arch-release", "")
    _write(root, "/etc/hostname", f"{hostname}\n")
    machine_id = "5c0ffee0c0ffee0c0ffee0c0ffee0c0f"
    _write(root, "/etc/machine-id", f"{machine_id}\n")
    _link(root, "/etc/localtime", "../usr/share/zoneinfo/America/New_York")
    _write(root, "/usr/share/zoneinfo/America/New_York", b"TZif2")

    users = [
        ("root", 0, 0, "", "/root", "/usr/bin/bash", "$6$s$roothash"),
        ("bin", 1, 1, "", "/", "/usr/bin/nologin", "!*"),
        ("daemon", 2, 2, "", "/", "/usr/bin/nologin", "!*"),
        ("dbus", 81, 81, "System Message Bus", "/", "/usr/bin/nologin", "!*"),
        ("systemd-network", 980, 980, "systemd Network Management", "/", "/usr/bin/nologin", "!*"),
        ("nobody", 65534, 65534, "Kernel Overflow User", "/", "/usr/bin/nologin", "!*"),
        ("dev", 1000, 1000, "Developer", "/home/dev", "/usr/bin/bash", "$y$j9T$s$devhash"),
    ]
    groups = [("root", 0, ["root"]), ("bin", 1, ["daemon"]), ("daemon", 2, ["bin"]), ("wheel", 998, ["dev"]),
              ("dbus", 81, []), ("systemd-network", 980, []), ("dev", 1000, []), ("nobody", 65534, [])]
    _accounts(root, users, groups, 0o600)
    _write(root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n%wheel ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
           0o440)
    _write(root, "/etc/login.defs", "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nUMASK\t\t077\n")

    # pacman's local database, and the kernels it installed
    for name, version, *rest in ARCH_PACKAGES:
        _write(root, f"/var/lib/pacman/local/{name}-{version}/desc", _pacman_desc(name, version, *rest))
        _write(root, f"/var/lib/pacman/local/{name}-{version}/files", "%FILES%\nusr/\n\n")
    _write(root, "/var/lib/pacman/local/ALPM_DB_VERSION", "9\n")
    kernels = []
    for package, version in sorted(ARCH_KERNELS.items(), key=lambda item: item[1]):
        _write(root, f"/usr/lib/modules/{version}/pkgbase", f"{package}\n")
        _write(root, f"/usr/lib/modules/{version}/vmlinuz", b"MZ\x00arch-kernel")
        _write(root, f"/usr/lib/modules/{version}/modules.dep", "")
        _write(root, f"/boot/vmlinuz-{package}", b"MZ\x00arch-kernel", 0o644)
        _write(root, f"/boot/initramfs-{package}.img", b"\x1f\x8b initramfs", 0o644)
        _write(root, f"/boot/initramfs-{package}-fallback.img", b"\x1f\x8b initramfs", 0o644)
        config = None
        if package == "linux":  # linux-headers keeps the configuration the kernel was built with
            config = f"/usr/lib/modules/{version}/build/.config"
            _write(root, config, "CONFIG_X86_64=y\nCONFIG_SECURITY_DMESG_RESTRICT=y\n")
        kernels.append({"version": version, "kernel": f"/boot/vmlinuz-{package}",
                        "initramfs": f"/boot/initramfs-{package}.img", "modules": True, "config": config,
                        "boot_entry": None, "default": False})

    wants = {"multi-user.target": ["cronie.service", "nftables.service", "sshd.service", "systemd-networkd.service",
                                   "netctl@office.service"],
             "sysinit.target": ["systemd-timesyncd.service"],
             "sockets.target": ["systemd-networkd.socket"]}
    init = _systemd(root, wants, "/usr/lib/systemd/system", "multi-user.target", masked=[], arch="x86_64")
    services = _services_truth(init, wants, "multi-user.target", [], [])

    _write(root, "/etc/systemd/network/20-ethernet.network", "[Match]\nName=en*\nName=eth*\n\n[Network]\n"
           "DHCP=yes\nMulticastDNS=yes\n\n[DHCPv4]\nRouteMetric=100\n")
    _write(root, "/etc/systemd/network/30-lab.network", "[Match]\nMACAddress=52:54:00:AB:00:01\nName=lab0\n\n"
           "[Network]\nAddress=10.20.0.5/16\nGateway=10.20.0.1\nDNS=10.20.0.2\nDNS=10.20.0.3\n")
    _write(root, "/usr/lib/systemd/network/89-ethernet.network.example", "[Match]\nName=*\n")
    _write(root, "/etc/netctl/office", "Description='office wired'\nInterface=enp3s0\nConnection=ethernet\n"
           "IP=static\nAddress=('192.168.10.20/24')\nGateway='192.168.10.1'\nDNS=('192.168.10.1')\n")
    _write(root, "/etc/netctl/examples/wireless-wpa", "Interface=wlan0\nIP=dhcp\n")
    _write(root, "/etc/resolv.conf", "nameserver 10.20.0.2\n")
    network = {"interfaces": [
        {"name": "en*", "source": "systemd-networkd", "file": "/etc/systemd/network/20-ethernet.network",
         "method": "dhcp", "addresses": [], "gateway": None, "dns": [], "mac": None},
        {"name": "lab0", "source": "systemd-networkd", "file": "/etc/systemd/network/30-lab.network",
         "method": "static", "addresses": ["10.20.0.5/16"], "gateway": "10.20.0.1", "dns": ["10.20.0.2", "10.20.0.3"],
         "mac": "52:54:00:ab:00:01"},
        {"name": "enp3s0", "source": "netctl", "file": "/etc/netctl/office", "method": "static",
         "addresses": ["192.168.10.20/24"], "gateway": "192.168.10.1", "dns": ["192.168.10.1"], "mac": None},
    ], "dns": {"nameservers": ["10.20.0.2"], "search": []}}

    _write(root, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n"
           "UsePAM yes\nPrintMotd no\nSubsystem sftp /usr/lib/ssh/sftp-server\n")
    _write(root, "/etc/ssh/sshd_config.d/10-hardening.conf", "PasswordAuthentication no\nPermitRootLogin no\n")
    _write(root, "/etc/nftables.conf", "#!/usr/bin/nft -f\ntable inet filter {\n}\n", 0o755)
    security = {
        "selinux": None, "apparmor": None,
        "ssh": {"installed": True,
                "settings": {"passwordauthentication": "no", "permitrootlogin": "no",
                             "kbdinteractiveauthentication": "no", "usepam": "yes", "printmotd": "no",
                             "subsystem": "sftp /usr/lib/ssh/sftp-server"},
                "permit_root_login": "no", "password_authentication": False, "permit_empty_passwords": False,
                "x11_forwarding": False, "ports": [22]},
        "firewall": {"enabled": True, "backends": [{"type": "nftables", "enabled": True}]},
    }

    _write(root, "/etc/cron.d/0hourly", "SHELL=/bin/bash\n01 * * * * root run-parts /etc/cron.hourly\n")
    _write(root, "/var/spool/cron/dev", "0 3 * * * /home/dev/bin/sync-mirrors\n", 0o600)
    cron = [{"file": "/etc/cron.d/0hourly", "line": 2, "user": "root", "schedule": "01 * * * *",
             "command": "run-parts /etc/cron.hourly"},
            {"file": "/var/spool/cron/dev", "line": 1, "user": "dev", "schedule": "0 3 * * *",
             "command": "/home/dev/bin/sync-mirrors"}]
    return {
        "package_database": "/var/lib/pacman/local",
        "os": {"type": "linux", "distribution": "arch", "name": "Arch Linux", "pretty_name": "Arch Linux",
               "version": None, "version_major": None, "version_minor": None, "codename": None, "id_like": [],
               "family": "arch", "architecture": "x86_64", "package_format": "pacman", "package_manager": "pacman"},
        "hostname": hostname,
        "machine_id": machine_id,
        "users": _user_truth(users, groups, {"wheel"}, {"root"}),
        "groups": _group_truth(groups),
        "packages": sorted(_arch_package_truth(), key=lambda p: p["name"]),
        "services": services,
        "network": network,
        "security": security,
        "kernels": kernels,
        "cloud_init": None,
        "cron": cron,
        "timezone": "America/New_York",
        "sysctl": {},
        "fstab": [],
        "login_defs": {"PASS_MAX_DAYS": "99999", "PASS_MIN_DAYS": "0", "PASS_WARN_AGE": "7", "UMASK": "077"},
    }


#: distro name -> tree builder
MAKERS = {"alpine": make_alpine_tree, "arch": make_arch_tree}
