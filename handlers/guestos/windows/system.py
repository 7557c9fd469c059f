"""What the SYSTEM and SOFTWARE hives say of the machine: the Windows release, its names, time zone,
and the volumes its drive letters name (``MountedDevices``)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

from handlers.guestos.windows.hives import Hive, sid_text

CURRENT_VERSION = "Microsoft\\Windows NT\\CurrentVersion"
#: PROCESSOR_ARCHITECTURE -> the architecture names the Linux guests report
_ARCHITECTURES = {"AMD64": "x86_64", "X86": "i386", "ARM64": "aarch64", "IA64": "ia64"}


def control_set(system: Hive) -> str:
    """The control set Windows boots (``Select\\Current``), e.g. ``ControlSet001``."""
    current = system.value("Select", "Current")
    return f"ControlSet{current if isinstance(current, int) and 0 < current < 1000 else 1:03d}"


def windows_os(software: Hive | None, system: Hive | None) -> dict[str, Any]:
    """The ``os`` section of a Windows guest (its keys as a Linux guest's, and Windows' own)."""
    current = software.values(CURRENT_VERSION) if software else {}
    build = current.get("CurrentBuildNumber") or current.get("CurrentBuild")
    major, minor = current.get("CurrentMajorVersionNumber"), current.get("CurrentMinorVersionNumber")
    if not isinstance(major, int):  # before Windows 10: "6.3"
        head, _, tail = str(current.get("CurrentVersion") or "").partition(".")
        major, minor = (int(head), int(tail)) if head.isdigit() and tail.isdigit() else (None, None)
    ubr = current.get("UBR") if isinstance(current.get("UBR"), int) else None
    version = ".".join(str(part) for part in (major, minor, build, ubr) if part is not None) or None
    installed = current.get("InstallDate")
    environment = (system.values(f"{control_set(system)}\\Control\\Session Manager\\Environment")
                   if system else {})
    arch = str(environment.get("PROCESSOR_ARCHITECTURE") or "").upper()
    name = current.get("ProductName")
    display = current.get("DisplayVersion") or current.get("ReleaseId")
    return {
        "type": "windows", "distribution": "windows", "name": name,
        "pretty_name": f"{name} {display}" if name and display else name,
        "version": version, "version_major": major, "version_minor": minor, "codename": display,
        "id_like": [], "family": "windows", "architecture": _ARCHITECTURES.get(arch, arch.lower() or None),
        "package_format": "windows", "package_manager": None,
        "edition": current.get("EditionID"), "display_version": display, "build": build, "ubr": ubr,
        "install_date": (datetime.fromtimestamp(installed, UTC).isoformat().replace("+00:00", "Z")
                         if isinstance(installed, int) and installed > 0 else None),
        "system_root": current.get("SystemRoot"),
    }


def names(system: Hive) -> dict[str, Any]:
    """The computer's NetBIOS name, and its TCP/IP host name and DNS domain."""
    control = control_set(system)
    tcpip = system.values(f"{control}\\Services\\Tcpip\\Parameters")
    return {
        "computer_name": system.value(f"{control}\\Control\\ComputerName\\ComputerName", "ComputerName"),
        "hostname": tcpip.get("Hostname") or tcpip.get("NV Hostname"),
        "dns_domain": tcpip.get("Domain") or tcpip.get("NV Domain") or None,
    }


def time_zone(system: Hive) -> str | None:
    return system.value(f"{control_set(system)}\\Control\\TimeZoneInformation", "TimeZoneKeyName")


def mounted_devices(system: Hive) -> dict[str, dict[str, Any]]:
    """Drive letter -> the volume ``MountedDevices`` names for it: ``{"mbr_signature", "offset"}``
    on an MBR disk, ``{"gpt_partition"}`` (its unique GUID) on a GPT one."""
    found: dict[str, dict[str, Any]] = {}
    for name, data in sorted(system.values("MountedDevices").items()):
        if not name.upper().startswith("\\DOSDEVICES\\") or not isinstance(data, bytes):
            continue
        letter = name[len("\\DosDevices\\"):].upper()
        if len(data) == 12:
            signature, offset = struct.unpack("<IQ", data)
            found[letter] = {"mbr_signature": signature, "offset": offset}
        elif len(data) == 24 and data.startswith(b"DMIO:ID:"):
            found[letter] = {"gpt_partition": _guid(data[8:])}
    return found


def _guid(raw: bytes) -> str:
    first, second, third = struct.unpack_from("<IHH", raw)
    return f"{first:08X}-{second:04X}-{third:04X}-{raw[8:10].hex().upper()}-{raw[10:16].hex().upper()}"


def drive_letters(mounted: dict[str, dict[str, Any]], partitions: list[dict[str, Any]],
                  disk_signature: int | None) -> dict[str, str | None]:
    """Drive letter -> the guest partition it names (None where the volume is on another disk)."""
    letters: dict[str, str | None] = {}
    for letter, volume in mounted.items():
        match = None
        for part in partitions:
            if "gpt_partition" in volume and (part.get("uuid") or "").upper() == volume["gpt_partition"]:
                match = part["device"]
            elif (volume.get("mbr_signature") == disk_signature and part["table"] == "mbr"
                  and part["start_bytes"] == volume["offset"]):
                match = part["device"]
        letters[letter] = match
    return letters


def membership(security: Hive | None) -> dict[str, Any]:
    """Domain or workgroup, from the SECURITY hive's primary domain: its name (``PolPrDmN``, a
    counted UTF-16 string) and, for a domain, its SID (``PolPrDmS``; a workgroup has none)."""
    if security is None:
        return {"type": None, "name": None, "sid": None}
    raw = security.value("Policy\\PolPrDmN", "")
    name = None
    if isinstance(raw, bytes) and len(raw) >= 8:
        (length,) = struct.unpack_from("<H", raw)
        for start in (8, 16):  # the string follows a 32- or 64-bit header
            if len(raw) - start in (length, length + 2) and length % 2 == 0:
                name = raw[start:start + length].decode("utf-16-le", errors="replace")
    sid_raw = security.value("Policy\\PolPrDmS", "")
    sid = sid_text(sid_raw) if isinstance(sid_raw, bytes) and sid_raw else None
    return {"type": "domain" if sid else "workgroup", "name": name, "sid": sid[0] if sid else None}
