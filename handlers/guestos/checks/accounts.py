"""passwd/shadow/sudoers checks."""

from __future__ import annotations

import re

from handlers.guestos.accounts import NOLOGIN_SHELLS, sudoers_files
from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, check, cis, evidence, mode_check
from handlers.guestos.common import content_lines


@check("ACCT-001", "security", "critical", "Account with an empty password",
       "An empty password field lets anybody log in as this user wherever password logins are allowed.",
       "Lock the account ('passwd -l <user>') or set a password.", cis("6.2.1"), subject=subjects.SHADOW)
def empty_password(facts: Facts) -> list[Evidence]:
    return [r.evidence() for r in facts.shadow if r.fields[1] == ""]


@check("ACCT-002", "security", "critical", "Account other than root with UID 0",
       "Every UID 0 account is root; a second one is a classic backdoor.",
       "Remove the account or give it a unique non-zero UID.", cis("6.2.6"), subject=subjects.PASSWD)
def uid0(facts: Facts) -> list[Evidence]:
    return [r.evidence() for r in facts.passwd if r.fields[2] == "0" and r.fields[0] != "root"]


@check("ACCT-003", "security", "high", "Duplicate UIDs",
       "Users sharing a UID share every file and privilege, and audit trails cannot tell them apart.",
       "Give each user a unique UID and fix file ownership.", cis("6.2.16"), subject=subjects.PASSWD)
def duplicate_uid(facts: Facts) -> list[Evidence]:
    seen: set[str] = set()
    found = []
    for record in facts.passwd:
        if record.fields[2] in seen:
            found.append(record.evidence())
        seen.add(record.fields[2])
    return found


@check("ACCT-004", "hardening", "medium", "System account with a login shell",
       "Service accounts (UID below UID_MIN) should not be able to start an interactive shell.",
       "Set the shell to /usr/sbin/nologin ('usermod -s /usr/sbin/nologin <user>').", cis("5.4.2"),
       subject=subjects.PASSWD)
def system_shell(facts: Facts) -> list[Evidence]:
    setting = facts.login_defs.get("UID_MIN")
    uid_min = int(setting.value) if setting and setting.value.isdigit() else 1000
    found = []
    for record in facts.passwd:
        name, uid, shell = record.fields[0], record.fields[2], record.fields[6]
        if uid.isdigit() and 0 < int(uid) < uid_min and name != "root" and shell not in NOLOGIN_SHELLS:
            found.append(record.evidence())
    return found


@check("ACCT-005", "security", "medium", "sudo without a password",
       "NOPASSWD rules let anybody with the user's session (or a stolen key) become root silently.",
       "Remove NOPASSWD from the sudoers rule, or restrict it to specific commands.", subject=subjects.SUDO)
def sudo_nopasswd(facts: Facts) -> list[Evidence]:
    found = []
    for path, text in sudoers_files(facts.tree, "/etc/sudoers"):
        for number, line, raw in content_lines(text):
            if re.search(r"\bNOPASSWD\s*:", line) and not line.startswith("Defaults"):
                found.append(evidence(path, number, raw))
    return found


mode_check("PERM-001", "security", "high", ("/etc/shadow",), 0o137,
           "/etc/shadow is readable or writable by others", cis("6.1.3"))
mode_check("PERM-002", "security", "high", ("/etc/passwd",), 0o133,
           "/etc/passwd is writable by group or others", cis("6.1.2"))
