"""Windows checks, read from the guest's registry: the evidence names the hive, key and value and the
data found (or that it is not set, and the default Windows then applies). A group policy key, where
set, wins over the local setting, as it does on the machine. References are CIS Microsoft Windows
Server 2022 Benchmark recommendations, by their title."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.guestos.checks.base import Evidence, Facts, NotApplicable, check
from handlers.guestos.checks.subjects import WINDOWS
from handlers.guestos.windows.accounts import local_users
from handlers.guestos.windows.hives import Hive
from handlers.guestos.windows.security import PROFILES, RegistryValue, first_set
from handlers.guestos.windows.system import control_set

POLICIES = "Policies\\Microsoft"
WINLOGON = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
UAC = "Microsoft\\Windows\\CurrentVersion\\Policies\\System"
GUEST_RID = 501


def cis(title: str) -> tuple[str, ...]:
    return (f"CIS Microsoft Windows Server 2022 Benchmark: {title}",)


def registry_evidence(found: RegistryValue | None, where: tuple[Hive, str, str], note: str = "") -> Evidence:
    """The value found (or, when it is not set, where it would be), in the Linux checks' form
    (``file``, ``line``, ``text``) with ``hive``, ``key``, ``value`` and ``data`` beside it."""
    hive, key, name = (found.hive, found.key, found.name) if found is not None else where
    data = found.data if found is not None else None
    shown = f"{data!r}" if found is not None else "not set"
    text = f"{hive.name}\\{key}\\{name} = {shown}" + (f" ({note})" if note else "")
    return {"file": hive.path, "line": None, "text": text, "hive": hive.name, "key": key, "value": name,
            "data": data if isinstance(data, int | str | None) else repr(data)}


def _system_key(facts: Facts, key: str) -> tuple[Hive | None, str]:
    system = facts.hives.get("SYSTEM")
    return system, (f"{control_set(system)}\\{key}" if system is not None else key)


def _value_check(id: str, profile: str, severity: str, title: str, description: str, remediation: str,
                 references: tuple[str, ...], locations: Callable[[Facts], list[tuple[Hive | None, str, str]]],
                 bad: Callable[[Any], bool], note: str) -> None:
    """A check on one setting: the first of ``locations`` set decides (none set: ``bad(None)``, the
    Windows default); evidence points at the value found, or, when none is set, at the last location
    (the local setting, where Windows keeps what no policy sets)."""
    @check(id, profile, severity, title, description, remediation, references, subject=WINDOWS)
    def run(facts: Facts) -> list[Evidence]:
        places = [place for place in locations(facts) if place[0] is not None]
        if not places:
            raise NotApplicable("the guest has no readable registry hive holding this setting")
        found = first_set(*places)
        if not bad(None if found is None else found.data):
            return []
        hive, key, name = places[-1]
        assert hive is not None
        return [registry_evidence(found, (hive, key, name), note)]


@check("WIN-001", "security", "high", "Windows Firewall is off in a profile",
       "A network profile (domain, private or public) with the firewall off accepts every inbound connection on "
       "the networks it applies to.",
       "Turn the firewall on for every profile (Group Policy: Windows Defender Firewall with Advanced Security > "
       "<profile> > Firewall state: On), or set EnableFirewall = 1 under each profile's key.",
       cis("'Windows Firewall: Domain: Firewall state' is set to 'On (recommended)'")
       + cis("'Windows Firewall: Private: Firewall state' is set to 'On (recommended)'")
       + cis("'Windows Firewall: Public: Firewall state' is set to 'On (recommended)'"),
       subject=WINDOWS)
def firewall_off(facts: Facts) -> list[Evidence]:
    software = facts.hives.get("SOFTWARE")
    found = []
    for profile, (local, policy) in PROFILES.items():
        system, key = _system_key(facts, f"Services\\SharedAccess\\Parameters\\FirewallPolicy\\{local}")
        value = first_set((software, f"{POLICIES}\\WindowsFirewall\\{policy}", "EnableFirewall"),
                          (system, key, "EnableFirewall"))
        if value is not None and value.data == 0:
            found.append(registry_evidence(value, (value.hive, value.key, value.name), f"the {profile} profile"))
    return found


@check("WIN-002", "security", "high", "Microsoft Defender real-time protection is off",
       "Without real-time protection, malware is not scanned when files are written or run.",
       "Remove DisableRealtimeMonitoring and DisableAntiSpyware (or set them to 0) under the Defender policy and "
       "local keys (Group Policy: Microsoft Defender Antivirus > Real-time Protection > Turn off real-time "
       "protection: Disabled).",
       cis("'Turn off real-time protection' is set to 'Disabled'"), subject=WINDOWS)
def defender_off(facts: Facts) -> list[Evidence]:
    software = facts.hives.get("SOFTWARE")
    found = []
    for key, name in (("Windows Defender\\Real-Time Protection", "DisableRealtimeMonitoring"),
                      ("Windows Defender", "DisableAntiSpyware")):
        value = first_set((software, f"{POLICIES}\\{key}", name), (software, f"Microsoft\\{key}", name))
        if value is not None and value.data == 1:
            found.append(registry_evidence(value, (value.hive, value.key, value.name), "1 turns it off"))
    return found


@check("WIN-003", "security", "high", "SMBv1 is enabled",
       "SMB version 1 has no encryption or pre-authentication integrity and was the way in for WannaCry and "
       "NotPetya; no supported Windows needs it.",
       "Remove the SMB 1.0/CIFS feature (Remove-WindowsFeature FS-SMB1), or set SMB1 = 0 under "
       "LanmanServer\\Parameters and Start = 4 for the mrxsmb10 driver.",
       cis("'Configure SMB v1 server' is set to 'Disabled'")
       + cis("'Configure SMB v1 client driver' is set to 'Enabled: Disable driver (recommended)'"),
       subject=WINDOWS)
def smb1(facts: Facts) -> list[Evidence]:
    system, server = _system_key(facts, "Services\\LanmanServer\\Parameters")
    assert system is not None
    found: list[Evidence] = []
    enabled = system.value(server, "SMB1")
    _, driver = _system_key(facts, "Services\\srv")
    if enabled not in (None, 0) or (enabled is None and system.key(driver) is not None):
        found.append(registry_evidence(None if enabled is None else RegistryValue(system, server, "SMB1", enabled),
                                       (system, server, "SMB1"),
                                       "the SMB1 server driver is installed" if enabled is None else "server"))
    _, client = _system_key(facts, "Services\\mrxsmb10")
    start = system.value(client, "Start")
    if system.key(client) is not None and start != 4:
        found.append(registry_evidence(None if start is None else RegistryValue(system, client, "Start", start),
                                       (system, client, "Start"), "the SMB1 client driver is not disabled"))
    return found


@check("WIN-004", "security", "high", "Remote Desktop accepts connections without Network Level Authentication",
       "Without NLA, anyone who reaches port 3389 gets a logon screen (and a session's resources) before "
       "authenticating: exposed to brute force and to pre-authentication flaws such as BlueKeep.",
       "Require NLA: Group Policy: Remote Desktop Session Host > Security > Require user authentication for remote "
       "connections by using Network Level Authentication: Enabled (UserAuthentication = 1); or turn Remote "
       "Desktop off (fDenyTSConnections = 1).",
       cis("'Require user authentication for remote connections by using Network Level Authentication' is set to "
           "'Enabled'"),
       subject=WINDOWS)
def rdp_without_nla(facts: Facts) -> list[Evidence]:
    software = facts.hives.get("SOFTWARE")
    policy = f"{POLICIES}\\Windows NT\\Terminal Services"
    system, server = _system_key(facts, "Control\\Terminal Server")
    deny = first_set((software, policy, "fDenyTSConnections"), (system, server, "fDenyTSConnections"))
    if deny is None or deny.data != 0:  # off unless allowed
        return []
    _, station = _system_key(facts, "Control\\Terminal Server\\WinStations\\RDP-Tcp")
    nla = first_set((software, policy, "UserAuthentication"), (system, station, "UserAuthentication"))
    if nla is not None and nla.data == 0:
        return [registry_evidence(nla, (nla.hive, nla.key, nla.name),
                                  f"Remote Desktop is on: {deny.source} = 0")]
    return []


@check("WIN-005", "security", "critical", "An autologon password is stored in the registry",
       "Winlogon's DefaultPassword holds the password in clear text: anyone who reads the SOFTWARE hive (a "
       "backup, this image) has it.",
       "Turn autologon off (AutoAdminLogon = 0), delete DefaultPassword from the Winlogon key and change that "
       "account's password.",
       cis("'MSS: (AutoAdminLogon) Enable Automatic Logon (not recommended)' is set to 'Disabled'"),
       subject=WINDOWS)
def autologon_password(facts: Facts) -> list[Evidence]:
    software = facts.hives.get("SOFTWARE")
    if software is None:
        return []
    password = software.value(WINLOGON, "DefaultPassword")
    if not password:
        return []
    user = software.value(WINLOGON, "DefaultUserName")
    secret = RegistryValue(software, WINLOGON, "DefaultPassword", "<set, not shown>")
    return [registry_evidence(secret, (software, WINLOGON, "DefaultPassword"),
                              f"for {user!r}, AutoAdminLogon = {software.value(WINLOGON, 'AutoAdminLogon')!r}")]


@check("WIN-006", "security", "medium", "The Guest account is enabled",
       "The built-in Guest account needs no password on most systems and gives anyone a local logon.",
       "Disable the Guest account (net user Guest /active:no; Group Policy: Accounts: Guest account status: "
       "Disabled).",
       cis("'Accounts: Guest account status' is set to 'Disabled'"), subject=WINDOWS)
def guest_enabled(facts: Facts) -> list[Evidence]:
    sam = facts.hives.get("SAM")
    if sam is None:
        return []
    guest = next((u for u in local_users(sam) if u["rid"] == GUEST_RID), None)
    if guest is None or guest["disabled"]:
        return []
    key = f"SAM\\Domains\\Account\\Users\\{GUEST_RID:08X}"
    return [registry_evidence(RegistryValue(sam, key, "F", "account control: enabled"), (sam, key, "F"),
                              f"the account {guest['name']!r} (RID {GUEST_RID})")]


def _lsa(facts: Facts, name: str) -> list[tuple[Hive | None, str, str]]:
    system, key = _system_key(facts, "Control\\Lsa")
    return [(system, key, name)]


_value_check(
    "WIN-007", "security", "high", "LAN Manager hashes of passwords are stored",
    "The LM hash is split in two 7-character halves, upper-cased and unsalted: cracked in minutes.",
    "Set NoLMHash = 1 under Control\\Lsa (Group Policy: Network security: Do not store LAN Manager hash value "
    "on next password change: Enabled), then have every account change its password.",
    cis("'Network security: Do not store LAN Manager hash value on next password change' is set to 'Enabled'"),
    lambda facts: _lsa(facts, "NoLMHash"), lambda data: data == 0, "0 stores them; the default is 1")
_value_check(
    "WIN-008", "security", "high", "User Account Control is off",
    "With EnableLUA = 0 every administrator's program runs with full rights, without a prompt, and the "
    "protections that depend on UAC (such as Edge's and Store apps') are off.",
    "Set EnableLUA = 1 (Group Policy: User Account Control: Run all administrators in Admin Approval Mode: "
    "Enabled) and restart.",
    cis("'User Account Control: Run all administrators in Admin Approval Mode' is set to 'Enabled'"),
    lambda facts: [(facts.hives.get("SOFTWARE"), UAC, "EnableLUA")], lambda data: data == 0,
    "0 turns UAC off; the default is 1")
_value_check(
    "WIN-009", "hardening", "medium", "LSA protection is off",
    "Without RunAsPPL, any administrator process can read the memory of lsass.exe, where credentials are kept "
    "(the way tools such as Mimikatz take them).",
    "Set RunAsPPL = 1 (or 2) under Control\\Lsa (Group Policy: Configure LSASS to run as a protected process) "
    "and restart.",
    cis("'Configure LSASS to run as a protected process' is set to 'Enabled: Enabled with UEFI Lock'"),
    lambda facts: _lsa(facts, "RunAsPPL"), lambda data: data in (None, 0), "off unless 1 or 2")
_value_check(
    "WIN-010", "security", "high", "WDigest keeps clear-text credentials in memory",
    "With UseLogonCredential = 1, WDigest keeps every signed-in user's password in clear text in lsass.exe.",
    "Set UseLogonCredential = 0 under Control\\SecurityProviders\\WDigest (Group Policy: WDigest "
    "Authentication: Disabled).",
    cis("'WDigest Authentication (disabling may require KB2871997)' is set to 'Disabled'"),
    lambda facts: [_system_key(facts, "Control\\SecurityProviders\\WDigest") + ("UseLogonCredential",)],
    lambda data: data == 1, "1 keeps them; the default is 0")
_value_check(
    "WIN-011", "security", "medium", "Anonymous users may list the SAM accounts",
    "With RestrictAnonymousSAM = 0, a null session lists every local account name: a list of targets.",
    "Set RestrictAnonymousSAM = 1 under Control\\Lsa (Group Policy: Network access: Do not allow anonymous "
    "enumeration of SAM accounts: Enabled).",
    cis("'Network access: Do not allow anonymous enumeration of SAM accounts' is set to 'Enabled'"),
    lambda facts: _lsa(facts, "RestrictAnonymousSAM"), lambda data: data == 0, "0 allows it; the default is 1")


@check("WIN-012", "compliance", "medium", "Automatic updates are turned off",
       "With Windows Update's automatic updates off (by policy, or its service disabled), security fixes are "
       "not installed unless someone does it by hand.",
       "Remove NoAutoUpdate (or set it to 0) under the WindowsUpdate\\AU policy key (Group Policy: Configure "
       "Automatic Updates: Enabled) and set the wuauserv service's Start to 3 (manual, its default).",
       cis("'Configure Automatic Updates' is set to 'Enabled'"), subject=WINDOWS)
def updates_off(facts: Facts) -> list[Evidence]:
    found = []
    software = facts.hives.get("SOFTWARE")
    policy = f"{POLICIES}\\Windows\\WindowsUpdate\\AU"
    if software is not None and software.value(policy, "NoAutoUpdate") == 1:
        found.append(registry_evidence(RegistryValue(software, policy, "NoAutoUpdate", 1),
                                       (software, policy, "NoAutoUpdate"), "1 turns automatic updates off"))
    system, service = _system_key(facts, "Services\\wuauserv")
    if system is not None and system.value(service, "Start") == 4:
        found.append(registry_evidence(RegistryValue(system, service, "Start", 4), (system, service, "Start"),
                                       "the Windows Update service is disabled"))
    return found


_value_check(
    "WIN-013", "compliance", "low", "PowerShell script block logging is off",
    "Without script block logging, the PowerShell code a machine ran (decoded, as it ran) is not in its event "
    "log: an attacker's scripts leave no trace there.",
    "Set EnableScriptBlockLogging = 1 under the PowerShell\\ScriptBlockLogging policy key (Group Policy: "
    "Windows PowerShell > Turn on PowerShell Script Block Logging: Enabled).",
    cis("'Turn on PowerShell Script Block Logging' is set to 'Enabled'"),
    lambda facts: [(facts.hives.get("SOFTWARE"), f"{POLICIES}\\Windows\\PowerShell\\ScriptBlockLogging",
                    "EnableScriptBlockLogging")],
    lambda data: data != 1, "off unless 1")
