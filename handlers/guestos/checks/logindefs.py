"""Password ageing and umask defaults in /etc/login.defs."""

from __future__ import annotations

from collections.abc import Callable

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, check, cis, evidence
from handlers.guestos.logindefs import LOGIN_DEFS


def _login_defs_check(id: str, severity: str, key: str, default: str, bad: Callable[[str], bool], title: str,
                      description: str, remediation: str, references: tuple[str, ...]) -> None:
    @check(id, "compliance", severity, title, description, remediation, references, subject=subjects.LOGIN_DEFS)
    def run(facts: Facts) -> list[Evidence]:
        setting = facts.login_defs.get(key)
        value = setting.value if setting else default
        if not bad(value):
            return []
        return [setting.evidence() if setting else evidence(LOGIN_DEFS, None, f"{key} not set (default {default})")]


def _number(value: str) -> int | None:
    try:
        return int(value, 8) if value.startswith("0") and len(value) > 1 else int(value)
    except ValueError:
        return None


def _weak_umask(value: str) -> bool:
    try:
        mask = int(value, 8)
    except ValueError:
        return True
    return mask & 0o027 != 0o027


_login_defs_check("PASS-001", "medium", "PASS_MAX_DAYS", "99999",
                  lambda v: (n := _number(v)) is None or n > 365 or n < 0,
                  "Passwords never expire (PASS_MAX_DAYS above 365)",
                  "New accounts get a maximum password age above a year.",
                  "Set 'PASS_MAX_DAYS 365' (or less) in /etc/login.defs and chage existing users.", cis("5.4.1.1"))
_login_defs_check("PASS-002", "low", "PASS_MIN_DAYS", "0", lambda v: (n := _number(v)) is None or n < 1,
                  "Passwords can be changed again immediately (PASS_MIN_DAYS below 1)",
                  "A zero minimum age lets users cycle straight back to an old password.",
                  "Set 'PASS_MIN_DAYS 1' (or more) in /etc/login.defs.", cis("5.4.1.2"))
_login_defs_check("PASS-003", "low", "PASS_WARN_AGE", "7", lambda v: (n := _number(v)) is None or n < 7,
                  "Password expiry warning shorter than 7 days",
                  "Users get less than a week's notice before their password expires.",
                  "Set 'PASS_WARN_AGE 7' (or more) in /etc/login.defs.", cis("5.4.1.3"))
_login_defs_check("PASS-004", "low", "UMASK", "022", _weak_umask,
                  "Default umask lets others read new files",
                  "A umask less strict than 027 makes new files readable by every user.",
                  "Set 'UMASK 027' in /etc/login.defs.", cis("5.4.4"))
