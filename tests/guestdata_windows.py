"""The ground truth of a Windows Server 2022 guest the tests build: its registry hives, written by
``tests.hivebuild`` as Windows writes them, and what inspect must report of them.

``make_windows_tree`` writes the tree (hives under Windows/System32/config, a user profile) that
``tests.imagebuild``'s windows layout puts on C:, and returns the truth.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.hivebuild import REG_EXPAND_SZ, Key, write_hive
from tests.imagebuild import WINDOWS_DISK_SIGNATURE, WINDOWS_VOLUMES

#: (key, DisplayName, DisplayVersion, Publisher, InstallDate, InstallLocation); None: value absent
APPLICATIONS_64: list[tuple[str, str | None, str | None, str | None, str | None, str | None]] = [
    ("{90160000-008C-0000-1000-0000000FF1CE}", "Microsoft Office Professional Plus 2016", "16.0.4266.1001",
     "Microsoft Corporation", "20240110", "C:\\Program Files\\Microsoft Office"),
    ("7-Zip", "7-Zip 23.01 (x64)", "23.01", "Igor Pavlov", None, "C:\\Program Files\\7-Zip\\"),
    ("{ΕΛΛ-1}", "Λογιστικό Πρόγραμμα", "3.2.1", "Εταιρεία Λογισμικού Α.Ε.", "20231105", "D:\\Apps\\Logistiko"),
    ("KB5034129", None, None, None, None, None),  # an update's key without a display name: not listed
]
APPLICATIONS_32: list[tuple[str, str | None, str | None, str | None, str | None, str | None]] = [
    ("{JP-0001}", "会計ソフト 2024", "2024.1", "株式会社テスト", "20240201", "C:\\Program Files (x86)\\Kaikei"),
    ("Notepad++", "Notepad++ (32-bit x86)", "8.6.2", "Notepad++ Team", "20240115", None),
]
#: (name, display name, Start, Type, ImagePath, ObjectName, DelayedAutostart)
SERVICES: list[tuple[str, str, int, int, str, str | None, int | None]] = [
    ("Dnscache", "DNS Client", 2, 0x20, "%SystemRoot%\\system32\\svchost.exe -k NetworkService -p",
     "NT AUTHORITY\\NetworkService", None),
    ("TermService", "Remote Desktop Services", 3, 0x20, "%SystemRoot%\\System32\\svchost.exe -k NetworkService",
     "NT Authority\\NetworkService", None),
    ("WinDefend", "Microsoft Defender Antivirus Service", 2, 0x10,
     "\"C:\\ProgramData\\Microsoft\\Windows Defender\\platform\\4.18.23110.3-0\\MsMpEng.exe\"", "LocalSystem", None),
    ("sppsvc", "Software Protection", 2, 0x10, "%SystemRoot%\\system32\\sppsvc.exe",
     "NT AUTHORITY\\NetworkService", 1),
    ("RemoteRegistry", "Remote Registry", 4, 0x20, "%SystemRoot%\\system32\\svchost.exe -k localService -p",
     "NT AUTHORITY\\LocalService", None),
    ("disk", "Disk Driver", 0, 0x1, "System32\\drivers\\disk.sys", None, None),
    ("Ntfs", "Ntfs", 1, 0x2, None, None, None),
    ("サービス", "日本語のサービス", 3, 0x10, "C:\\Program Files\\JP\\svc.exe", ".\\svc-jp", None),
]
MACHINE_SID = (21, 1111111111, 2222222222, 3333333333)
#: (RID, name, full name, comment, account control bits, last logon FILETIME)
USERS: list[tuple[int, str, str, str, int, int]] = [
    (500, "Administrator", "", "Built-in account for administering the computer/domain", 0x0210,
     133_400_000_000_000_000),
    (501, "Guest", "", "Built-in account for guest access to the computer/domain", 0x0215, 0),
    (503, "DefaultAccount", "", "A user account managed by the system.", 0x0211, 0),
    (1001, "alice", "Alice Example", "", 0x0010, 133_497_000_000_000_000),
    (1002, "Γιώργος", "Γιώργος Παπαδόπουλος", "λογιστήριο", 0x0210, 0),
    (1003, "山田", "山田 太郎", "", 0x0011, 0),
]
DOMAIN_ADMINS = "S-1-5-21-999-888-777-512"
#: (domain, RID, name, comment, member SIDs: a local user's RID, or a SID)
GROUPS: list[tuple[str, int, str, str, list[int | str]]] = [
    ("Builtin", 0x220, "Administrators", "Administrators have complete and unrestricted access to the computer/domain",
     [500, 1001, DOMAIN_ADMINS]),
    ("Builtin", 0x221, "Users", "Users are prevented from making accidental or intentional system-wide changes",
     [1001, 1002, 1003, "S-1-5-4"]),
    ("Builtin", 0x222, "Guests", "Guests have the same access as members of the Users group by default", [501]),
    ("Builtin", 0x22B, "Remote Desktop Users", "Members in this group are granted the right to logon remotely",
     [1001]),
    ("Account", 1004, "Λογιστές", "τοπική ομάδα", [1002]),
]


def _sid(text_or_rid: int | str) -> bytes:
    if isinstance(text_or_rid, int):
        parts = [5, *MACHINE_SID, text_or_rid]
    else:
        parts = [int(p) for p in text_or_rid.split("-")[2:]]
    authority, subs = parts[0], parts[1:]
    return bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _strings_value(header: int, table: dict[int, str], tail: bytes = b"") -> bytes:
    """A SAM record: a header of ``header`` bytes whose (offset, length) pairs at the positions in
    ``table`` point to UTF-16LE texts after it (``tail``: more data after them)."""
    head, body = bytearray(header), bytearray()
    for at, text in table.items():
        raw = text.encode("utf-16-le")
        struct.pack_into("<II", head, at, len(body), len(raw))
        body += raw + bytes(-len(raw) % 4)
    return bytes(head) + bytes(body) + tail


def _sam(config: Path, guest_enabled: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sam = Key("ROOT")
    account = sam.key("SAM/Domains/Account")
    domain_sid = bytes([1, 4]) + (5).to_bytes(6, "big") + struct.pack("<4I", *MACHINE_SID)
    account.set("V", bytes(64) + domain_sid)  # the domain's SID ends the value
    users_truth = []
    by_rid = {}
    for rid, name, full, comment, control, logon in USERS:
        if rid == 501 and guest_enabled:
            control &= ~1
        fixed = bytearray(0x50)
        struct.pack_into("<Q", fixed, 0x08, logon)
        struct.pack_into("<I", fixed, 0x30, rid)
        struct.pack_into("<H", fixed, 0x38, control)
        variable = _strings_value(0xCC, {0x0C: name, 0x18: full, 0x24: comment})
        account.key(f"Users/{rid:08X}").set("F", bytes(fixed)).set("V", variable)
        account.key(f"Users/Names/{name}").set("", b"", type=rid)
        user = {"name": name, "rid": rid, "full_name": full or None, "comment": comment or None,
                "disabled": bool(control & 1), "password_never_expires": bool(control & 0x200),
                "last_logon": _logon(logon), "groups": []}
        users_truth.append(user)
        by_rid[rid] = user
    groups_truth = []
    for domain, rid, name, comment, members in GROUPS:
        sids = b"".join(_sid(member) for member in members)
        data = bytearray(_strings_value(0x34, {0x10: name, 0x1C: comment}))
        struct.pack_into("<I", data, 0x00, rid)
        struct.pack_into("<II", data, 0x28, len(data) - 0x34, 0)
        struct.pack_into("<I", data, 0x30, len(members))
        sam.key(f"SAM/Domains/{domain}/Aliases/{rid:08X}").set("C", bytes(data) + sids)
        groups_truth.append({"name": name, "rid": rid, "comment": comment,
                             "members": [by_rid[m]["name"] if isinstance(m, int) else m for m in members]})
        for member in members:
            if isinstance(member, int):
                by_rid[member]["groups"].append(name)
    for user in users_truth:
        user["groups"].sort()
    write_hive(config / "SAM", sam)
    return users_truth, sorted(groups_truth, key=lambda g: g["name"].casefold())


def _logon(filetime: int) -> str | None:
    if not filetime:
        return None
    return (datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=filetime // 10)).isoformat().replace(
        "+00:00", "Z")


_START = {0: "boot", 1: "system", 2: "automatic", 3: "manual", 4: "disabled"}
_TYPE = {0x1: "kernel_driver", 0x2: "file_system_driver", 0x10: "own_process", 0x20: "share_process"}


def _uninstall(root: Key, path: str, rows: list[tuple], arch: str) -> list[dict[str, Any]]:
    truth = []
    for key, name, version, publisher, date, location in rows:
        node = root.key(f"{path}/{key}")
        for value_name, value in (("DisplayName", name), ("DisplayVersion", version), ("Publisher", publisher),
                                  ("InstallDate", date), ("InstallLocation", location)):
            if value is not None:
                node.set(value_name, value)
        node.set("NoModify", 1)
        if name is not None:
            truth.append({"name": name, "version": version, "arch": arch, "publisher": publisher,
                          "install_date": f"{date[:4]}-{date[4:6]}-{date[6:]}" if date else None,
                          "install_location": location, "key": key})
    return truth


#: hive name -> key path -> value name -> data (None: the value removed)
Registry = dict[str, dict[str, dict[str, Any]]]


def _apply_registry(hive: Key, changes: dict[str, dict[str, Any]]) -> None:
    for path, values in changes.items():
        node = hive.key(path)
        for name, data in values.items():
            if data is None:
                node.values = [v for v in node.values if v.name.upper() != name.upper()]
            else:
                node.set(name, data)


def make_windows_tree(root: str | Path, *, dirty: str | None = None, registry: Registry | None = None,
                      guest_enabled: bool = False) -> dict[str, Any]:
    """Windows Server 2022 Standard 21H2 (build 20348.2227) named WIN-FS01 in corp.example.com;
    ``dirty``: the hive (SOFTWARE or SYSTEM) written with its transaction logs not applied;
    ``registry``: values set (or removed) in the SOFTWARE and SYSTEM hives after the defaults;
    ``guest_enabled``: the Guest account is not disabled."""
    registry = registry or {}
    root = Path(root)
    config = root / "Windows/System32/config"
    config.mkdir(parents=True)
    (root / "Users/Administrator").mkdir(parents=True)
    (root / "Program Files/7-Zip").mkdir(parents=True)

    software = Key("ROOT")
    current = software.key("Microsoft/Windows NT/CurrentVersion")
    current.set("ProductName", "Windows Server 2022 Standard").set("EditionID", "ServerStandard")
    current.set("DisplayVersion", "21H2").set("CurrentBuild", "20348").set("CurrentBuildNumber", "20348")
    current.set("CurrentMajorVersionNumber", 10).set("CurrentMinorVersionNumber", 0).set("UBR", 2227)
    current.set("CurrentVersion", "6.3").set("InstallDate", 1_700_000_000).set("SystemRoot", "C:\\Windows")
    current.set("RegisteredOwner", "Windows User")
    applications = _uninstall(software, "Microsoft/Windows/CurrentVersion/Uninstall", APPLICATIONS_64, "x64")
    applications += _uninstall(software, "WOW6432Node/Microsoft/Windows/CurrentVersion/Uninstall",
                               APPLICATIONS_32, "x86")
    packages = software.key("Microsoft/Windows/CurrentVersion/Component Based Servicing/Packages")
    for package in ("Package_for_KB5034129~31bf3856ad364e35~amd64~~20348.2227.1.0",
                    "Package_for_KB5034129~31bf3856ad364e35~wow64~~20348.2227.1.0",
                    "Package_1_for_KB5012170~31bf3856ad364e35~amd64~~20348.880.1.0",
                    "Package_for_RollupFix~31bf3856ad364e35~amd64~~20348.2227.1.11",
                    "Package_for_ServicingStack_2200~31bf3856ad364e35~amd64~~20348.2200.1.0",
                    "Microsoft-Windows-Foundation-Package~31bf3856ad364e35~amd64~~10.0.20348.1"):
        packages.key(package).set("CurrentState", 112)
    software.key("Policies/Microsoft/Windows Defender/Real-Time Protection").set("DisableRealtimeMonitoring", 1)
    software.key("Microsoft/Windows Defender").set("DisableAntiSpyware", 0)
    _apply_registry(software, registry.get("SOFTWARE", {}))
    write_hive(config / "SOFTWARE", software, dirty=dirty == "SOFTWARE")

    system = Key("ROOT")
    system.key("Select").set("Current", 1).set("Default", 1).set("LastKnownGood", 2)
    control = system.key("ControlSet001")
    control.key("Control/ComputerName/ComputerName").set("ComputerName", "WIN-FS01")
    control.key("Control/TimeZoneInformation").set("TimeZoneKeyName", "W. Europe Standard Time").set("Bias", -60)
    control.key("Control/Session Manager/Environment").set("PROCESSOR_ARCHITECTURE", "AMD64")
    control.key("Services/Tcpip/Parameters").set("Hostname", "win-fs01").set("Domain", "corp.example.com")
    control.key("Services/Tcpip/Parameters").set("NV Hostname", "win-fs01")
    for name, display, start, kind, image, account, delayed in SERVICES:
        node = control.key(f"Services/{name}").set("DisplayName", display).set("Start", start).set("Type", kind)
        if image is not None:
            node.set("ImagePath", image, REG_EXPAND_SZ)
        if account is not None:
            node.set("ObjectName", account)
        if delayed is not None:
            node.set("DelayedAutostart", delayed)
    tcpip = "Services/Tcpip/Parameters"
    control.key(tcpip).set("SearchList", "corp.example.com,example.com").set("NameServer", "")
    static, dhcp, unused = ("{1B2C3D4E-0000-4000-8000-000000000001}", "{1B2C3D4E-0000-4000-8000-000000000002}",
                            "{1B2C3D4E-0000-4000-8000-000000000003}")
    control.key(f"{tcpip}/Interfaces/{static}").set("EnableDHCP", 0).set("IPAddress", ["10.20.30.40", "10.20.31.40"]) \
        .set("SubnetMask", ["255.255.255.0", "255.255.254.0"]).set("DefaultGateway", ["10.20.30.1"]) \
        .set("NameServer", "10.20.30.2,10.20.30.3")
    control.key(f"{tcpip}/Interfaces/{dhcp}").set("EnableDHCP", 1).set("DhcpIPAddress", "192.168.56.101") \
        .set("DhcpSubnetMask", "255.255.255.0").set("DhcpDefaultGateway", ["192.168.56.1"]) \
        .set("DhcpNameServer", "192.168.56.1 1.1.1.1").set("NameServer", "")
    control.key(f"{tcpip}/Interfaces/{unused}").set("EnableDHCP", 0).set("IPAddress", ["0.0.0.0"])
    network_class = "Control/Network/{4D36E972-E325-11CE-BFC1-08002BE10318}"
    control.key(f"{network_class}/{static}/Connection").set("Name", "Ethernet0")
    control.key(f"{network_class}/{dhcp}/Connection").set("Name", "管理ネットワーク")
    firewall = "Services/SharedAccess/Parameters/FirewallPolicy"
    control.key(f"{firewall}/DomainProfile").set("EnableFirewall", 1)
    control.key(f"{firewall}/StandardProfile").set("EnableFirewall", 0)
    control.key(f"{firewall}/PublicProfile").set("DefaultInboundAction", 1)  # EnableFirewall unset: on
    control.key("Control/Terminal Server").set("fDenyTSConnections", 0)
    control.key("Control/Terminal Server/WinStations/RDP-Tcp").set("UserAuthentication", 0).set("PortNumber", 3389)
    system.key("ControlSet002/Control/ComputerName/ComputerName").set("ComputerName", "OLD-NAME")
    mounted = system.key("MountedDevices")
    for letter, (start, _, _) in WINDOWS_VOLUMES.items():
        mounted.set(f"\\DosDevices\\{letter}", struct.pack("<IQ", WINDOWS_DISK_SIGNATURE, start))
    mounted.set("\\DosDevices\\E:", struct.pack("<IQ", 0x0BADF00D, 1_048_576))  # a disk not in this image
    mounted.set("\\??\\Volume{b1c2d3e4-0000-0000-0000-100000000000}", struct.pack("<IQ", WINDOWS_DISK_SIGNATURE,
                                                                                 1_048_576))
    _apply_registry(system, registry.get("SYSTEM", {}))
    write_hive(config / "SYSTEM", system, dirty=dirty == "SYSTEM")
    users, groups = _sam(config, guest_enabled)
    security = Key("ROOT")
    name = "CORP".encode("utf-16-le")
    security.key("Policy/PolPrDmN").set("", struct.pack("<HHIQ", len(name), len(name), 0, 16) + name)
    security.key("Policy/PolPrDmS").set("", _sid("S-1-5-21-999-888-777"))
    write_hive(config / "SECURITY", security)

    services = [{"name": name, "display_name": display,
                 "start_type": "automatic_delayed" if delayed == 1 and start == 2 else _START[start],
                 "type": _TYPE[kind], "image_path": image, "account": account}
                for name, display, start, kind, image, account, delayed in SERVICES]
    return {
        "os": {"type": "windows", "distribution": "windows", "name": "Windows Server 2022 Standard",
               "pretty_name": "Windows Server 2022 Standard 21H2", "version": "10.0.20348.2227", "version_major": 10,
               "version_minor": 0, "codename": "21H2", "id_like": [], "family": "windows",
               "architecture": "x86_64", "package_format": "windows", "package_manager": None,
               "edition": "ServerStandard", "display_version": "21H2", "build": "20348", "ubr": 2227,
               "install_date": "2023-11-14T22:13:20Z", "system_root": "C:\\Windows", "hostname": "win-fs01"},
        "timezone": "W. Europe Standard Time",
        "packages": sorted(applications, key=lambda a: (a["name"].casefold(), a["arch"], a["version"] or "")),
        "services": sorted(services, key=lambda s: s["name"].casefold()),
        "users": users,
        "groups": groups,
        "network": {"interfaces": [
            {"name": "Ethernet0", "source": "windows",
             "file": f"SYSTEM\\ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\{static}", "method": "static",
             "addresses": ["10.20.30.40/24", "10.20.31.40/23"], "gateway": "10.20.30.1",
             "dns": ["10.20.30.2", "10.20.30.3"], "mac": None},
            {"name": "管理ネットワーク", "source": "windows",
             "file": f"SYSTEM\\ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\{dhcp}", "method": "dhcp",
             "addresses": ["192.168.56.101/24"], "gateway": "192.168.56.1", "dns": ["192.168.56.1", "1.1.1.1"],
             "mac": None}],
            "dns": {"nameservers": [], "search": ["corp.example.com", "example.com"]}},
        "windows": {"computer_name": "WIN-FS01", "dns_domain": "corp.example.com",
                    "drive_letters": {"C:": "/dev/sda1", "D:": "/dev/sda2", "E:": None},
                    "membership": {"type": "domain", "name": "CORP", "sid": "S-1-5-21-999-888-777"},
                    "hotfixes": ["KB5012170", "KB5034129"],
                    "defender": {"enabled": True, "realtime_protection": False,
                                 "source": "SOFTWARE\\Microsoft\\Windows Defender\\DisableAntiSpyware"},
                    "firewall": {
                        "domain": {"enabled": True, "source": "SYSTEM\\ControlSet001\\Services\\SharedAccess\\"
                                                              "Parameters\\FirewallPolicy\\DomainProfile\\EnableFirewall"},
                        "private": {"enabled": False, "source": "SYSTEM\\ControlSet001\\Services\\SharedAccess\\"
                                                                "Parameters\\FirewallPolicy\\StandardProfile\\"
                                                                "EnableFirewall"},
                        "public": {"enabled": True, "source": None}},
                    "remote_desktop": {"enabled": True, "nla": False,
                                       "source": "SYSTEM\\ControlSet001\\Control\\Terminal Server\\fDenyTSConnections",
                                       "nla_source": "SYSTEM\\ControlSet001\\Control\\Terminal Server\\WinStations\\"
                                                     "RDP-Tcp\\UserAuthentication"}},
    }
