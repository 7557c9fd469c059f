"""guestkit.profile: every check fires on a case made for it (with its evidence), stays quiet on the
fixed case, and is reported not applicable where it cannot apply."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.guestos.checks import CATALOGUE
from handlers.inspect import inspect_tree
from handlers.payloads import SEVERITY_ORDER, ProfilePayloadV1
from handlers.profile import ProfileHandler, catalogue, profile_tree
from handlers.tree import DirectoryTree
from tests.guestdata import MAKERS, FakeContext, make_debian_tree, make_rhel_tree
from tests.guestdata_windows import make_windows_tree
from tests.imagebuild import build_image

SSHD = "/etc/ssh/sshd_config"
SHADOW_OK = "root:$6$s$h:19700:0:99999:7:::\n"
PASSWD_ROOT = "root:x:0:0:root:/root:/bin/bash\n"
WANTS = "/etc/systemd/system/multi-user.target.wants"
UNITS = "/usr/lib/systemd/system"
Mutation = dict[str, Any]  # path -> text (write) | int (chmod) | ("link", target) | None (delete)


def _sshd(keyword: str, bad: str, good: str) -> tuple:
    return ("debian", {SSHD: f"{keyword} {bad}\n"}, (SSHD, 1), {SSHD: f"{keyword} {good}\n"})


def _sysctl(key: str, bad: str, good: str) -> tuple:
    path = "/etc/sysctl.d/zz-test.conf"
    return ("debian", {path: f"{key} = {bad}\n"}, (path, 1), {path: f"{key} = {good}\n"})


def _login_defs(key: str, bad: str, good: str) -> tuple:
    return ("debian", {"/etc/login.defs": f"{key}\t{bad}\n"}, ("/etc/login.defs", 1),
            {"/etc/login.defs": f"{key}\t{good}\n"})


#: check id -> (base tree, mutation that makes it fire, expected evidence (file, line),
#: mutation of the base tree on which it passes)
CASES: dict[str, tuple[str, Mutation, tuple[str, int | None], Mutation]] = {
    "SSH-001": _sshd("PermitRootLogin", "yes", "no"),
    "SSH-002": _sshd("PermitEmptyPasswords", "yes", "no"),
    "SSH-003": _sshd("PasswordAuthentication", "yes", "no"),
    "SSH-004": _sshd("X11Forwarding", "yes", "no"),
    "SSH-005": _sshd("MaxAuthTries", "10", "3"),
    "SSH-006": _sshd("PermitUserEnvironment", "yes", "no"),
    "SSH-007": _sshd("HostbasedAuthentication", "yes", "no"),
    "SSH-008": _sshd("IgnoreRhosts", "no", "yes"),
    "SSH-009": _sshd("Banner", "none", "/etc/issue.net"),
    "SSH-010": _sshd("LogLevel", "QUIET", "VERBOSE"),
    "ACCT-001": ("debian", {"/etc/shadow": SHADOW_OK + "bob::19700:0:99999:7:::\n"}, ("/etc/shadow", 2),
                 {"/etc/shadow": SHADOW_OK + "bob:!:19700:0:99999:7:::\n"}),
    "ACCT-002": ("debian", {"/etc/passwd": PASSWD_ROOT + "toor:x:0:0::/root:/bin/bash\n"}, ("/etc/passwd", 2),
                 {"/etc/passwd": PASSWD_ROOT + "toor:x:1500:1500::/home/toor:/bin/bash\n"}),
    "ACCT-003": ("rhel", {"/etc/passwd": PASSWD_ROOT + "a:x:1000:1000::/a:/bin/bash\nb:x:1000:1000::/b:/bin/bash\n"},
                 ("/etc/passwd", 3), {"/etc/passwd": PASSWD_ROOT + "a:x:1000:1000::/a:/bin/bash\n"}),
    "ACCT-004": ("rhel", {"/etc/passwd": PASSWD_ROOT + "backup:x:34:34::/var/backups:/bin/sh\n"}, ("/etc/passwd", 2),
                 {"/etc/passwd": PASSWD_ROOT + "backup:x:34:34::/var/backups:/usr/sbin/nologin\n"}),
    "ACCT-005": ("debian", {"/etc/sudoers.d/90-carol": "Defaults env_reset\ncarol ALL=(ALL) NOPASSWD: ALL\n"},
                 ("/etc/sudoers.d/90-carol", 2), {"/etc/sudoers.d/90-carol": "carol ALL=(ALL) ALL\n"}),
    "PERM-001": ("debian", {"/etc/shadow": 0o644}, ("/etc/shadow", None), {"/etc/shadow": 0o640}),
    "PERM-002": ("rhel", {"/etc/passwd": 0o666}, ("/etc/passwd", None), {"/etc/passwd": 0o644}),
    "PERM-003": ("debian", {"/etc/crontab": 0o644}, ("/etc/crontab", None), {"/etc/crontab": 0o600}),
    "PERM-004": ("debian", {"/boot/grub/grub.cfg": 0o644}, ("/boot/grub/grub.cfg", None),
                 {"/boot/grub/grub.cfg": 0o600}),
    "MAC-001": ("rhel", {"/etc/selinux/config": "SELINUX=permissive\nSELINUXTYPE=targeted\n"},
                ("/etc/selinux/config", 1), {"/etc/selinux/config": "SELINUX=enforcing\n"}),
    "MAC-002": ("debian", {"/etc/default/grub": 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="quiet apparmor=0"\n'},
                ("/etc/default/grub", 2), {"/etc/default/grub": 'GRUB_CMDLINE_LINUX="quiet"\n'}),
    "MAC-003": ("debian", {"/etc/apparmor.d/usr.sbin.rsyslogd": "# x\nprofile r /usr/sbin/r flags=(complain) {\n}\n"},
                ("/etc/apparmor.d/usr.sbin.rsyslogd", 2),
                {"/etc/apparmor.d/usr.sbin.rsyslogd": "profile r /usr/sbin/r {\n}\n"}),
    "FW-001": ("debian", {"/etc/ufw/ufw.conf": "# ufw\nENABLED=no\n"}, ("/etc/ufw/ufw.conf", 2),
               {"/etc/ufw/ufw.conf": "ENABLED=yes\n"}),
    "SVC-001": ("debian", {f"{WANTS}/telnet.socket": ("link", f"{UNITS}/telnet.socket")},
                (f"{WANTS}/telnet.socket", None), {}),
    "SVC-002": ("rhel", {f"{WANTS}/crond.service": None}, (WANTS, None), {}),
    "SVC-003": ("debian", {}, (WANTS, None), {f"{WANTS}/auditd.service": ("link", f"{UNITS}/auditd.service")}),
    "SVC-004": ("debian", {}, ("/etc/systemd/system/ctrl-alt-del.target", None),
                {"/etc/systemd/system/ctrl-alt-del.target": ("link", "/dev/null")}),
    "FS-001": ("rhel", {}, ("/etc/fstab", None), {"/etc/fstab": "tmpfs /tmp tmpfs nodev,nosuid,noexec 0 0\n"}),
    "FS-002": ("debian", {"/etc/fstab": "UUID=1 / ext4 defaults 0 1\ntmpfs /tmp tmpfs nodev,nosuid 0 0\n"},
               ("/etc/fstab", 2), {"/etc/fstab": "tmpfs /tmp tmpfs nodev,nosuid,noexec 0 0\n"}),
    "FS-003": ("rhel", {"/etc/fstab": "UUID=1 / ext4 defaults 0 1\nUUID=2 /home ext4 defaults 0 2\n"},
               ("/etc/fstab", 2), {"/etc/fstab": "UUID=2 /home ext4 defaults,nodev 0 2\n"}),
    "FS-004": ("debian", {}, ("/etc/fstab", None), {"/etc/fstab": "UUID=3 /var/log ext4 defaults 0 2\n"}),
    "KRN-001": _sysctl("net.ipv4.ip_forward", "1", "0"),
    "KRN-002": _sysctl("kernel.randomize_va_space", "1", "2"),
    "KRN-003": _sysctl("net.ipv4.conf.all.accept_redirects", "1", "0"),
    "KRN-004": _sysctl("net.ipv4.conf.all.send_redirects", "1", "0"),
    "KRN-005": _sysctl("net.ipv4.conf.all.accept_source_route", "1", "0"),
    "KRN-006": _sysctl("net.ipv4.tcp_syncookies", "0", "1"),
    "KRN-007": _sysctl("fs.suid_dumpable", "2", "0"),
    "KRN-008": _sysctl("kernel.dmesg_restrict", "0", "1"),
    "PERF-002": _sysctl("vm.swappiness", "100", "10"),
    "PASS-001": _login_defs("PASS_MAX_DAYS", "99999", "90"),
    "PASS-002": _login_defs("PASS_MIN_DAYS", "0", "1"),
    "PASS-003": _login_defs("PASS_WARN_AGE", "3", "14"),
    "PASS-004": _login_defs("UMASK", "022", "027"),
    "PERF-001": ("rhel", {"/etc/fstab": "UUID=1 / ext4 defaults 1 1\n"}, ("/etc/fstab", None), {}),
    "PERF-003": ("rhel", {}, (WANTS, None), {f"{WANTS}/tuned.service": ("link", f"{UNITS}/tuned.service")}),
    "PERF-004": ("debian", {f"/boot/vmlinuz-6.1.0-{n}-amd64": "k" for n in (10, 11, 12)}, ("/boot", None), {}),
    "PERF-005": ("rhel", {}, ("/etc/systemd/journald.conf", 2),
                 {"/etc/systemd/journald.conf": "[Journal]\nStorage=persistent\nSystemMaxUse=500M\n"}),
    "PERF-006": ("debian", {"/etc/fstab": "UUID=1 / ext4 defaults,strictatime 0 1\n"}, ("/etc/fstab", 1),
                 {"/etc/fstab": "UUID=1 / ext4 defaults 0 1\n"}),
}

#: the guest boots nothing (a container's root file system): no init, systemd's binary gone
NO_INIT: Mutation = {"/usr/sbin/init": None, "/usr/lib/systemd/systemd": None}
#: Debian with sysvinit-core instead of systemd; /etc/systemd/system is still there
SYSVINIT: Mutation = {"/usr/sbin/init": "\x7fELF sysvinit", "/usr/lib/systemd/systemd": None}
#: check id -> (base tree, mutation) on which the check cannot apply
NOT_APPLICABLE: dict[str, tuple[str, Mutation]] = {
    "MAC-001": ("debian", {}), "MAC-002": ("rhel", {}), "MAC-003": ("rhel", {}), "PERF-003": ("debian", {}),
    "FS-002": ("rhel", {}), "FS-003": ("debian", {}), "PERM-001": ("debian", {"/etc/shadow": None}),
    "PERM-002": ("rhel", {"/etc/passwd": None}), "PERM-003": ("rhel", {"/etc/crontab": None}),
    "PERM-004": ("debian", {"/boot/grub": None}), "SVC-004": ("debian", SYSVINIT), "PERF-005": ("rhel", SYSVINIT),
    **{f"SSH-{n:03d}": ("rhel", {"/etc/ssh": None}) for n in range(1, 11)},
    "ACCT-001": ("debian", {"/etc/shadow": None}), "ACCT-005": ("rhel", {"/etc/sudoers": None}),
    **{f"ACCT-00{n}": ("rhel", {"/etc/passwd": None}) for n in (2, 3, 4)},
    **{check_id: ("debian", NO_INIT) for check_id in ("FW-001", "SVC-001", "SVC-002", "SVC-003")},
    **{check_id: ("debian", {"/etc/fstab": None}) for check_id in ("FS-001", "FS-004", "PERF-001", "PERF-006")},
    **{f"KRN-00{n}": ("rhel", {"/boot": None}) for n in range(1, 9)},
    "PERF-002": ("debian", {"/boot": None}), "PERF-004": ("debian", {"/boot": None}),
    **{f"PASS-00{n}": ("debian", {"/etc/login.defs": None}) for n in range(1, 5)},
}
PWQUALITY = "/etc/security/pwquality.conf"
COMMON_PASSWORD, SYSTEM_AUTH = "/etc/pam.d/common-password", "/etc/pam.d/system-auth"
FAILLOCK = ("auth        required      pam_faillock.so preauth silent\n"
            "auth        sufficient    pam_unix.so nullok\n"
            "auth        required      pam_faillock.so authfail\n")
CASES.update({
    "PAM-001": ("debian", {COMMON_PASSWORD: "password requisite pam_unix.so obscure\n"},
                (COMMON_PASSWORD, None),
                {COMMON_PASSWORD: "password requisite pam_pwquality.so retry=3\n"
                                  "password [success=1 default=ignore] pam_unix.so obscure use_authtok\n"}),
    "PAM-002": ("rhel", {PWQUALITY: "minlen = 8\n"}, (PWQUALITY, 1), {PWQUALITY: "minlen = 14\n"}),
    "PAM-003": ("rhel", {SYSTEM_AUTH: "auth required pam_unix.so\n"}, (SYSTEM_AUTH, None), {SYSTEM_AUTH: FAILLOCK}),
})
NOT_APPLICABLE.update({"PAM-001": ("rhel", {"/etc/pam.d": None}), "PAM-002": ("debian", {}),
                       "PAM-003": ("debian", {"/etc/pam.d": None})})
CS = "ControlSet001"
LSA = f"{CS}/Control/Lsa"
WINLOGON = "Microsoft/Windows NT/CurrentVersion/Winlogon"
PASSWORD_MARKER = "autologon-secret-7f3a"
#: Windows check id -> (make_windows_tree options with which it fires, expected evidence (hive, key, value),
#: options with which it passes); the default test guest has the private firewall profile off, real-time
#: protection off by policy, Remote Desktop without NLA, no LSA protection and no script block logging
WINDOWS_CASES: dict[str, tuple[dict[str, Any], tuple[str, str, str], dict[str, Any]]] = {
    "WIN-001": ({"registry": {"SOFTWARE": {"Policies/Microsoft/WindowsFirewall/PublicProfile": {"EnableFirewall": 0}},
                              "SYSTEM": {f"{CS}/Services/SharedAccess/Parameters/FirewallPolicy/StandardProfile":
                                         {"EnableFirewall": 1}}}},
                ("SOFTWARE", "Policies\\Microsoft\\WindowsFirewall\\PublicProfile", "EnableFirewall"),
                {"registry": {"SYSTEM": {f"{CS}/Services/SharedAccess/Parameters/FirewallPolicy/StandardProfile":
                                         {"EnableFirewall": 1}}}}),
    "WIN-002": ({}, ("SOFTWARE", "Policies\\Microsoft\\Windows Defender\\Real-Time Protection",
                     "DisableRealtimeMonitoring"),
                {"registry": {"SOFTWARE": {"Policies/Microsoft/Windows Defender/Real-Time Protection":
                                           {"DisableRealtimeMonitoring": None}}}}),
    "WIN-003": ({"registry": {"SYSTEM": {f"{CS}/Services/LanmanServer/Parameters": {"SMB1": 1},
                                         f"{CS}/Services/mrxsmb10": {"Start": 2}}}},
                ("SYSTEM", f"{CS}\\Services\\LanmanServer\\Parameters", "SMB1"),
                {"registry": {"SYSTEM": {f"{CS}/Services/LanmanServer/Parameters": {"SMB1": 0},
                                         f"{CS}/Services/mrxsmb10": {"Start": 4}}}}),
    "WIN-004": ({}, ("SYSTEM", f"{CS}\\Control\\Terminal Server\\WinStations\\RDP-Tcp", "UserAuthentication"),
                {"registry": {"SYSTEM": {f"{CS}/Control/Terminal Server/WinStations/RDP-Tcp":
                                         {"UserAuthentication": 1}}}}),
    "WIN-005": ({"registry": {"SOFTWARE": {WINLOGON: {"AutoAdminLogon": "1", "DefaultUserName": "Administrator",
                                                      "DefaultPassword": PASSWORD_MARKER}}}},
                ("SOFTWARE", WINLOGON.replace("/", "\\"), "DefaultPassword"),
                {"registry": {"SOFTWARE": {WINLOGON: {"AutoAdminLogon": "0", "DefaultUserName": "Administrator"}}}}),
    "WIN-006": ({"guest_enabled": True}, ("SAM", "SAM\\Domains\\Account\\Users\\000001F5", "F"), {}),
    "WIN-007": ({"registry": {"SYSTEM": {LSA: {"NoLMHash": 0}}}}, ("SYSTEM", f"{CS}\\Control\\Lsa", "NoLMHash"),
                {"registry": {"SYSTEM": {LSA: {"NoLMHash": 1}}}}),
    "WIN-008": ({"registry": {"SOFTWARE": {"Microsoft/Windows/CurrentVersion/Policies/System": {"EnableLUA": 0}}}},
                ("SOFTWARE", "Microsoft\\Windows\\CurrentVersion\\Policies\\System", "EnableLUA"),
                {"registry": {"SOFTWARE": {"Microsoft/Windows/CurrentVersion/Policies/System": {"EnableLUA": 1}}}}),
    "WIN-009": ({}, ("SYSTEM", f"{CS}\\Control\\Lsa", "RunAsPPL"),
                {"registry": {"SYSTEM": {LSA: {"RunAsPPL": 1}}}}),
    "WIN-010": ({"registry": {"SYSTEM": {f"{CS}/Control/SecurityProviders/WDigest": {"UseLogonCredential": 1}}}},
                ("SYSTEM", f"{CS}\\Control\\SecurityProviders\\WDigest", "UseLogonCredential"),
                {"registry": {"SYSTEM": {f"{CS}/Control/SecurityProviders/WDigest": {"UseLogonCredential": 0}}}}),
    "WIN-011": ({"registry": {"SYSTEM": {LSA: {"RestrictAnonymousSAM": 0}}}},
                ("SYSTEM", f"{CS}\\Control\\Lsa", "RestrictAnonymousSAM"),
                {"registry": {"SYSTEM": {LSA: {"RestrictAnonymousSAM": 1}}}}),
    "WIN-012": ({"registry": {"SOFTWARE": {"Policies/Microsoft/Windows/WindowsUpdate/AU": {"NoAutoUpdate": 1}},
                              "SYSTEM": {f"{CS}/Services/wuauserv": {"Start": 4}}}},
                ("SOFTWARE", "Policies\\Microsoft\\Windows\\WindowsUpdate\\AU", "NoAutoUpdate"),
                {"registry": {"SOFTWARE": {"Policies/Microsoft/Windows/WindowsUpdate/AU": {"NoAutoUpdate": 0}},
                              "SYSTEM": {f"{CS}/Services/wuauserv": {"Start": 3}}}}),
    "WIN-013": ({}, ("SOFTWARE", "Policies\\Microsoft\\Windows\\PowerShell\\ScriptBlockLogging",
                     "EnableScriptBlockLogging"),
                {"registry": {"SOFTWARE": {"Policies/Microsoft/Windows/PowerShell/ScriptBlockLogging":
                                           {"EnableScriptBlockLogging": 1}}}}),
}
NOT_APPLICABLE.update({check_id: ("debian", {}) for check_id in WINDOWS_CASES})
BY_ID = {item.id: item for item in CATALOGUE}


def _hardened_windows() -> dict[str, Any]:
    """Every Windows check's passing options at once."""
    registry: dict[str, dict[str, dict[str, Any]]] = {}
    for _fire, _evidence, fix in WINDOWS_CASES.values():
        for hive, keys in fix.get("registry", {}).items():
            for key, values in keys.items():
                registry.setdefault(hive, {}).setdefault(key, {}).update(values)
    return {"registry": registry}


def _apply(root: Path, mutation: Mutation) -> None:
    for path, change in mutation.items():
        host = root / path.lstrip("/")
        if change is None:
            if host.is_dir() and not host.is_symlink():
                shutil.rmtree(host)
            elif host.is_symlink() or host.exists():
                host.unlink()
        elif isinstance(change, int):
            host.chmod(change)
        elif isinstance(change, tuple):
            host.parent.mkdir(parents=True, exist_ok=True)
            if host.is_symlink() or host.exists():
                host.unlink()
            host.symlink_to(change[1])
        else:
            host.parent.mkdir(parents=True, exist_ok=True)
            if host.is_symlink():
                host.unlink()
            mode = host.stat().st_mode & 0o7777 if host.exists() else None
            host.write_text(change)
            if mode is not None:
                host.chmod(mode)


def _run(tmp_path: Path, distro: str, mutation: Mutation, check_id: str) -> dict[str, Any]:
    MAKERS[distro](tmp_path)
    _apply(tmp_path, mutation)
    return profile_tree(DirectoryTree(tmp_path), [BY_ID[check_id].profile])


def test_catalogue_size_and_shape() -> None:
    assert len(CATALOGUE) >= 30
    assert {item.profile for item in CATALOGUE} == {"security", "compliance", "hardening", "performance"}
    for item in catalogue():
        assert item["severity"] in SEVERITY_ORDER
        assert item["title"] and item["description"] and item["remediation"]
        assert all(ref.startswith("CIS ") for ref in item["references"])
    assert sum(1 for item in CATALOGUE if item.references) >= 30


def test_every_check_has_cases() -> None:
    assert sorted([*CASES, *WINDOWS_CASES]) == sorted(BY_ID) == sorted(NOT_APPLICABLE)


@pytest.mark.parametrize("check_id", sorted(CASES))
def test_check_fires_with_evidence(tmp_path: Path, check_id: str) -> None:
    distro, fire, (file, line), _fix = CASES[check_id]
    report = _run(tmp_path, distro, fire, check_id)
    found = [f for f in report["findings"] if f["id"] == check_id]
    assert found, f"{check_id} did not fire: {report['not_applicable']} {report['errors']}"
    item = BY_ID[check_id]
    for finding in found:
        assert finding["severity"] == item.severity and finding["profile"] == item.profile
        assert set(finding) == {"id", "profile", "severity", "title", "description", "evidence", "remediation",
                                "references"}
    assert any(f["evidence"]["file"] == file and f["evidence"]["line"] == line for f in found), found
    assert report["errors"] == []


@pytest.mark.parametrize("check_id", sorted(CASES))
def test_check_passes_when_fixed(tmp_path: Path, check_id: str) -> None:
    distro, _fire, _evidence, fix = CASES[check_id]
    report = _run(tmp_path, distro, fix, check_id)
    assert check_id not in {f["id"] for f in report["findings"]}
    assert check_id in report["passed"]


@pytest.mark.parametrize("check_id", sorted(NOT_APPLICABLE))
def test_check_not_applicable(tmp_path: Path, check_id: str) -> None:
    distro, mutation = NOT_APPLICABLE[check_id]
    report = _run(tmp_path, distro, mutation, check_id)
    assert check_id not in {f["id"] for f in report["findings"]}
    assert check_id not in report["passed"]
    (entry,) = [n for n in report["not_applicable"] if n["id"] == check_id]
    assert entry["reason"] and entry["profile"] == BY_ID[check_id].profile
    assert entry["subject"] == BY_ID[check_id].subject.describe()


def _windows_report(tmp_path: Path, options: dict[str, Any], profiles: Any = None) -> dict[str, Any]:
    make_windows_tree(tmp_path / "root", **options)
    return profile_tree(DirectoryTree(tmp_path / "root"), *([profiles] if profiles else []))


@pytest.mark.parametrize("check_id", sorted(WINDOWS_CASES))
def test_windows_check_fires_with_registry_evidence(tmp_path: Path, check_id: str) -> None:
    fire, (hive, key, value), _fix = WINDOWS_CASES[check_id]
    report = _windows_report(tmp_path, fire, [BY_ID[check_id].profile])
    found = [f for f in report["findings"] if f["id"] == check_id]
    assert found, f"{check_id} did not fire: {report['not_applicable']} {report['errors']}"
    item = BY_ID[check_id]
    assert len(item.references) >= 1 and item.remediation
    for finding in found:
        assert finding["severity"] == item.severity
        assert {"file", "line", "text", "hive", "key", "value", "data"} <= set(finding["evidence"])
    evidence = [f["evidence"] for f in found if (f["evidence"]["hive"], f["evidence"]["key"],
                                                  f["evidence"]["value"]) == (hive, key, value)]
    assert evidence, [f["evidence"] for f in found]
    assert evidence[0]["file"] == f"/Windows/System32/config/{hive}" and value in evidence[0]["text"]
    assert report["errors"] == []
    assert PASSWORD_MARKER not in json.dumps(report)  # an autologon password is named, never shown


@pytest.mark.parametrize("check_id", sorted(WINDOWS_CASES))
def test_windows_check_passes_when_fixed(tmp_path: Path, check_id: str) -> None:
    _fire, _evidence, fix = WINDOWS_CASES[check_id]
    report = _windows_report(tmp_path, fix, [BY_ID[check_id].profile])
    assert check_id not in {f["id"] for f in report["findings"]}
    assert check_id in report["passed"]


def test_a_hardened_windows_guest_passes_every_windows_check_and_no_linux_check_applies(tmp_path: Path) -> None:
    report = _windows_report(tmp_path, _hardened_windows())
    windows_checks = {item.id for item in CATALOGUE if item.id.startswith("WIN-")}
    assert len(windows_checks) >= 12 and windows_checks <= set(report["passed"])
    assert report["findings"] == [] and report["errors"] == []
    reasons = {n["id"]: n["reason"] for n in report["not_applicable"]}
    assert set(reasons) == {item.id for item in CATALOGUE} - windows_checks  # every Linux check
    assert all(reasons.values())


def test_windows_checks_do_not_apply_to_a_linux_guest(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    report = profile_tree(DirectoryTree(tmp_path))
    reasons = {n["id"]: n for n in report["not_applicable"] if n["id"].startswith("WIN-")}
    assert len(reasons) == len(WINDOWS_CASES)
    assert {n["reason"] for n in reasons.values()} == {
        "the guest is not Windows (no /Windows/System32/config/SYSTEM)"}
    assert {n["subject"]["kind"] for n in reasons.values()} == {"os"}


def test_ctrl_alt_del_on_a_debian_without_systemd_is_not_applicable(tmp_path: Path) -> None:
    """The guest keeps /etc/systemd/system (left by packages) but boots sysvinit."""
    report = _run(tmp_path, "debian", SYSVINIT, "SVC-004")
    (entry,) = [n for n in report["not_applicable"] if n["id"] == "SVC-004"]
    assert entry["reason"] == "the guest boots sysvinit, not systemd (/sbin/init -> /usr/sbin/init)"


def test_a_guest_with_no_init_and_no_kernel(tmp_path: Path) -> None:
    """Every check bound to the init system or the kernel says not applicable, and why."""
    _run(tmp_path, "debian", {**NO_INIT, "/boot": None}, "KRN-001")
    everything = profile_tree(DirectoryTree(tmp_path))
    bound = {item.id for item in CATALOGUE if item.subject.kind in ("init", "kernel")}
    reasons = {n["id"]: n["reason"] for n in everything["not_applicable"]}
    assert bound <= reasons.keys() and len(bound) >= 14
    assert {reasons[i] for i in bound} == {
        "the guest boots no init system (none of /sbin/init, /usr/sbin/init, /bin/init, /usr/lib/systemd/systemd, "
        "/lib/systemd/systemd, /sbin/openrc found)", "no kernel is installed (no /boot/vmlinuz-*)"}
    assert not bound & ({f["id"] for f in everything["findings"]} | set(everything["passed"]))


@pytest.mark.parametrize(("built", "fires"), [("CONFIG_SECURITY_DMESG_RESTRICT=y", False),
                                              ("# CONFIG_SECURITY_DMESG_RESTRICT is not set", True)])
def test_an_unset_sysctl_has_the_installed_kernels_default(tmp_path: Path, built: str, fires: bool) -> None:
    """Debian builds its kernels to restrict dmesg, upstream does not: the booted kernel's config decides."""
    config = "/boot/config-6.1.0-18-amd64"
    report = _run(tmp_path, "debian", {config: f"CONFIG_X86_64=y\n{built}\n"}, "KRN-008")
    found = [f["evidence"]["text"] for f in report["findings"] if f["id"] == "KRN-008"]
    assert found == ([f"kernel.dmesg_restrict not set (kernel default with CONFIG_SECURITY_DMESG_RESTRICT=n in "
                      f"{config}: 0)"] if fires else [])


@pytest.mark.parametrize(("distro", "check_id", "file"), [
    ("rhel", "PAM-001", SYSTEM_AUTH), ("debian", "PAM-003", "/etc/pam.d/common-auth"),
    ("rhel", "PAM-002", PWQUALITY)])
def test_pam_checks_read_each_familys_own_files(tmp_path: Path, distro: str, check_id: str, file: str) -> None:
    """As shipped: RHEL's authselect stack checks quality but does not lock out, and leaves minlen at
    its default; Debian's pam-auth-update stack does neither."""
    mutation = {SYSTEM_AUTH: "password requisite pam_unix.so\n"} if check_id == "PAM-001" else {}
    report = _run(tmp_path, distro, mutation, check_id)
    (finding,) = [f for f in report["findings"] if f["id"] == check_id]
    assert finding["evidence"]["file"] == file
    if check_id == "PAM-002":
        assert "default: 8" in finding["evidence"]["text"]


def test_selinux_disabled_in_the_booted_bls_entry_is_evidenced(tmp_path: Path) -> None:
    """RHEL 8/9: 'grubby --update-kernel ALL --args selinux=0' edits the BLS entries, not
    /etc/default/grub; the entry grubenv boots is the evidence (and inspect says disabled)."""
    truth = make_rhel_tree(tmp_path / "stock")
    booted = next(k for k in truth["kernels"] if k["default"])["boot_entry"]
    text = (tmp_path / "stock" / booted["file"].lstrip("/")).read_text()
    report = _run(tmp_path / "guest", "rhel", {booted["file"]: text.replace("options ", "options selinux=0 ")},
                  "MAC-001")
    (finding,) = [f for f in report["findings"] if f["id"] == "MAC-001"]
    assert (finding["evidence"]["file"], finding["evidence"]["line"]) == (booted["file"], 5)
    assert "selinux=0" in finding["evidence"]["text"]
    assert inspect_tree(DirectoryTree(tmp_path / "guest"))["security"]["selinux"]["mode"] == "disabled"
    assert "MAC-001" in _run(tmp_path / "stock", "rhel", {}, "MAC-001")["passed"]


def test_kernelopts_from_grubenv_are_the_rhel8_command_line(tmp_path: Path) -> None:
    truth = make_rhel_tree(tmp_path)
    booted = next(k for k in truth["kernels"] if k["default"])["boot_entry"]
    entry = tmp_path / booted["file"].lstrip("/")
    entry.write_text(entry.read_text().replace(f"options {booted['options']}", "options $kernelopts $tuned_params"))
    grubenv = tmp_path / "boot/grub2/grubenv"
    grubenv.write_text("# GRUB Environment Block\nkernelopts=root=/dev/mapper/rhel-root ro selinux=0\n")
    assert inspect_tree(DirectoryTree(tmp_path))["security"]["selinux"]["mode"] == "disabled"


def test_selinux_disabled_by_kernel_argument_is_evidenced(tmp_path: Path) -> None:
    make_rhel_tree(tmp_path)
    (tmp_path / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX="rhgb selinux=0"\n')
    (finding,) = [f for f in profile_tree(DirectoryTree(tmp_path), ["security"])["findings"] if f["id"] == "MAC-001"]
    assert finding["evidence"] == {"file": "/etc/default/grub", "line": 1,
                                   "text": 'GRUB_CMDLINE_LINUX="rhgb selinux=0"'}


def test_firewalld_not_enabled(tmp_path: Path) -> None:
    make_rhel_tree(tmp_path)
    (tmp_path / WANTS.lstrip("/") / "firewalld.service").unlink()
    (finding,) = [f for f in profile_tree(DirectoryTree(tmp_path), ["security"])["findings"] if f["id"] == "FW-001"]
    assert "firewalld" in finding["evidence"]["text"]


@pytest.mark.parametrize("threshold", SEVERITY_ORDER)
def test_severity_threshold_filters(tmp_path: Path, threshold: str) -> None:
    make_debian_tree(tmp_path)
    tree = DirectoryTree(tmp_path)
    everything = profile_tree(tree)
    filtered = profile_tree(tree, threshold=threshold)
    rank = SEVERITY_ORDER.index(threshold)
    assert filtered["findings"] == [f for f in everything["findings"] if SEVERITY_ORDER.index(f["severity"]) >= rank]
    assert filtered["summary"]["below_threshold"] == len(everything["findings"]) - len(filtered["findings"])
    assert filtered["not_applicable"] == everything["not_applicable"]
    assert filtered["summary"]["checks"] == everything["summary"]["checks"] == len(CATALOGUE)


def test_base_trees_findings_sorted_and_counted(tmp_path: Path) -> None:
    make_rhel_tree(tmp_path)
    report = profile_tree(DirectoryTree(tmp_path), include_remediation=False)
    ranks = [SEVERITY_ORDER.index(f["severity"]) for f in report["findings"]]
    assert ranks == sorted(ranks, reverse=True)
    assert all("remediation" not in f for f in report["findings"])
    assert report["summary"]["findings"] == len(report["findings"]) == sum(report["summary"]["by_severity"].values())
    assert report["summary"]["checks"] == len(CATALOGUE)
    with pytest.raises(ValueError):
        profile_tree(DirectoryTree(tmp_path), ["nonsense"])


@pytest.fixture(scope="module")
def debian_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("profile-image")
    make_debian_tree(base / "root")
    image = base / "debian.qcow2"
    build_image(base / "root", image, layout="plain", fmt="qcow2")
    return image


def test_handler_profiles_image(debian_image: Path, tmp_path: Path) -> None:
    ctx = FakeContext(work_dir=tmp_path, allowed_dirs=[debian_image.parent, tmp_path])
    payload = ProfilePayloadV1.model_validate({
        "image": {"path": str(debian_image)}, "profiles": ["security", "hardening"],
        "options": {"severity_threshold": "medium"}, "output": {"destination": str(tmp_path / "p.json")}})
    result = ProfileHandler().execute(ctx, payload)
    ids = {f["id"] for f in result.data["findings"]}
    assert {"ACCT-001", "ACCT-005", "KRN-001"} <= ids and "SSH-004" not in ids  # SSH-004 is low
    assert {f["profile"] for f in result.data["findings"]} <= {"security", "hardening"}
    assert result.primary == str(tmp_path / "p.json") and (tmp_path / "p.json").exists()
    assert ctx.progress[-1][:2] == ("cleanup", 100)
    percents = [percent for _, percent, _ in ctx.progress]
    assert percents == sorted(percents)


def test_handler_fail_on_critical_keeps_every_finding(debian_image: Path, tmp_path: Path) -> None:
    ctx = FakeContext(work_dir=tmp_path, allowed_dirs=[debian_image.parent])
    payload = ProfilePayloadV1.model_validate({"image": {"path": str(debian_image)},
                                               "options": {"fail_on_critical": True}})
    with pytest.raises(JobError) as caught:
        ProfileHandler().execute(ctx, payload)
    error = caught.value
    assert error.code == ErrorCode.EXECUTION_ERROR and "ACCT-001" in error.message
    findings = error.details["findings"]
    assert len(findings) == error.details["report"]["summary"]["findings"] > 1
    assert {f["severity"] for f in findings} > {"critical"}
    json.dumps(error.details)  # goes into the result document as it is
    assert pickle.loads(pickle.dumps(error)).details == error.details  # crosses process boundaries


def test_windows_checks_on_a_guest_without_a_software_hive_are_not_applicable_not_errors(tmp_path: Path) -> None:
    make_windows_tree(tmp_path / "root")
    (tmp_path / "root/Windows/System32/config/SOFTWARE").unlink()
    report = profile_tree(DirectoryTree(tmp_path / "root"))
    assert report["errors"] == []
    reasons = {n["id"]: n["reason"] for n in report["not_applicable"]}
    assert reasons["WIN-008"] == reasons["WIN-013"] == "the guest has no readable registry hive holding this setting"
    assert "WIN-007" in report["passed"]  # a SYSTEM setting is still judged
