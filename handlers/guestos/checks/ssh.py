"""sshd_config checks."""

from __future__ import annotations

from collections.abc import Callable

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, check, cis, evidence
from handlers.guestos.security.sshd import SSHD_CONFIG


def _sshd_check(id: str, severity: str, keyword: str, default: str, bad: Callable[[str], bool], title: str,
                description: str, remediation: str, references: tuple[str, ...] = ()) -> None:
    key = keyword.lower()

    @check(id, "security", severity, title, description, remediation, references, subject=subjects.SSHD)
    def run(facts: Facts) -> list[Evidence]:
        setting = facts.sshd.get(key)
        value = setting.value.lower() if setting else default
        if not bad(value):
            return []
        if setting is not None:
            return [setting.evidence()]
        return [evidence(SSHD_CONFIG, None, f"{keyword} not set (default {default})")]


def _int_above(limit: int) -> Callable[[str], bool]:
    return lambda value: not value.isdigit() or int(value) > limit


_sshd_check("SSH-001", "high", "PermitRootLogin", "prohibit-password", lambda v: v == "yes",
            "SSH root login with a password is permitted",
            "PermitRootLogin yes lets anybody who guesses or steals the root password log in remotely as root.",
            "Set 'PermitRootLogin no' (or 'prohibit-password') in /etc/ssh/sshd_config.", cis("5.2.10"))
_sshd_check("SSH-002", "critical", "PermitEmptyPasswords", "no", lambda v: v == "yes",
            "SSH accepts empty passwords",
            "PermitEmptyPasswords yes lets accounts without a password log in over the network.",
            "Set 'PermitEmptyPasswords no' in /etc/ssh/sshd_config.", cis("5.2.11"))
_sshd_check("SSH-003", "medium", "PasswordAuthentication", "yes", lambda v: v == "yes",
            "SSH password authentication is enabled",
            "Password logins are open to brute force and credential stuffing; keys are not.",
            "Set 'PasswordAuthentication no' after installing authorized keys for every user who needs access.")
_sshd_check("SSH-004", "low", "X11Forwarding", "no", lambda v: v == "yes",
            "SSH X11 forwarding is enabled",
            "X11 forwarding exposes the client's display to the server and is rarely needed on servers.",
            "Set 'X11Forwarding no' in /etc/ssh/sshd_config.", cis("5.2.6"))
_sshd_check("SSH-005", "low", "MaxAuthTries", "6", _int_above(4),
            "SSH MaxAuthTries is above 4",
            "A high MaxAuthTries gives an attacker more password guesses per connection.",
            "Set 'MaxAuthTries 4' (or less) in /etc/ssh/sshd_config.", cis("5.2.7"))
_sshd_check("SSH-006", "medium", "PermitUserEnvironment", "no", lambda v: v != "no",
            "SSH lets users set environment variables",
            "PermitUserEnvironment lets users pass variables such as LD_PRELOAD to their sshd session.",
            "Set 'PermitUserEnvironment no' in /etc/ssh/sshd_config.", cis("5.2.12"))
_sshd_check("SSH-007", "medium", "HostbasedAuthentication", "no", lambda v: v == "yes",
            "SSH host-based authentication is enabled",
            "Host-based authentication trusts other hosts' claims about their users.",
            "Set 'HostbasedAuthentication no' in /etc/ssh/sshd_config.", cis("5.2.9"))
_sshd_check("SSH-008", "medium", "IgnoreRhosts", "yes", lambda v: v != "yes",
            "SSH honours .rhosts files",
            "With IgnoreRhosts no, sshd trusts ~/.rhosts and ~/.shosts files for authentication.",
            "Set 'IgnoreRhosts yes' in /etc/ssh/sshd_config.", cis("5.2.8"))
_sshd_check("SSH-009", "info", "Banner", "none", lambda v: v == "none",
            "No SSH warning banner",
            "A login banner states the terms of use; some compliance regimes require one.",
            "Set 'Banner /etc/issue.net' in /etc/ssh/sshd_config and write the legal notice there.", cis("5.2.19"))
_sshd_check("SSH-010", "low", "LogLevel", "info", lambda v: v not in ("info", "verbose"),
            "SSH LogLevel hides authentication events",
            "A LogLevel other than INFO or VERBOSE loses the records needed to investigate logins.",
            "Set 'LogLevel INFO' (or VERBOSE) in /etc/ssh/sshd_config.", cis("5.2.5"))
