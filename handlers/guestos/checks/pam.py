"""Password and login-failure policy, from the PAM stack each family keeps in its own files:
``/etc/pam.d/system-auth`` on the RHEL family (written by authselect), ``common-password`` and
``common-auth`` on the Debian family; password quality in ``/etc/security/pwquality.conf``."""

from __future__ import annotations

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, NotApplicable, check, cis, evidence
from handlers.guestos.common import content_lines, last_wins, read_settings
from handlers.tree import read_text

#: where each stack lives: the RHEL family's file first, then the Debian family's
PASSWORD_STACKS = ("/etc/pam.d/system-auth", "/etc/pam.d/common-password")
AUTH_STACKS = ("/etc/pam.d/system-auth", "/etc/pam.d/common-auth")
PASSWORD_STACK = subjects.files("a PAM password stack", *PASSWORD_STACKS)
AUTH_STACK = subjects.files("a PAM authentication stack", *AUTH_STACKS)
PWQUALITY = "/etc/security/pwquality.conf"
QUALITY_MODULES = ("pam_pwquality.so", "pam_cracklib.so")
LOCKOUT_MODULES = ("pam_faillock.so", "pam_tally2.so")
MIN_LENGTH = 14
#: libpwquality's minlen when neither the file nor the module line sets it
DEFAULT_MIN_LENGTH = 8


def _stack(facts: Facts, paths: tuple[str, ...], kind: str) -> tuple[str, list[tuple[int, str]]]:
    """(file, [(line, text)]) of the ``kind`` lines (password, auth) of the first stack present."""
    for path in paths:
        text = read_text(facts.tree, path)
        if text is not None:
            return path, [(number, stripped) for number, stripped, _ in content_lines(text)
                          if stripped.split()[0].lstrip("-") == kind]
    raise NotApplicable(f"no PAM {kind} stack on this guest ({' / '.join(paths)})")


def _uses(lines: list[tuple[int, str]], modules: tuple[str, ...]) -> tuple[int, str] | None:
    """The first line calling one of ``modules`` (by name or by path)."""
    return next(((n, text) for n, text in lines
                 if any(token.rsplit("/", 1)[-1] in modules for token in text.split()[1:])), None)


def _unless_called(facts: Facts, paths: tuple[str, ...], kind: str, modules: tuple[str, ...]) -> list[Evidence]:
    """A finding on the stack file unless its ``kind`` lines call one of ``modules``."""
    path, lines = _stack(facts, paths, kind)
    if _uses(lines, modules):
        return []
    return [evidence(path, None, f"no {' or '.join(modules)} in the {kind} stack")]


@check("PAM-001", "security", "medium", "Password quality is not checked",
       "No pam_pwquality (or pam_cracklib) in the password stack: any password, however short or "
       "common, is accepted when a user changes it.",
       "RHEL family: 'authselect select sssd --force' (pam_pwquality is in every profile); Debian family: "
       "install libpam-pwquality.", cis("5.3.1"), subject=PASSWORD_STACK)
def password_quality(facts: Facts) -> list[Evidence]:
    return _unless_called(facts, PASSWORD_STACKS, "password", QUALITY_MODULES)


@check("PAM-002", "compliance", "medium", f"Minimum password length below {MIN_LENGTH}",
       f"pam_pwquality accepts passwords shorter than {MIN_LENGTH} characters.",
       f"Set 'minlen = {MIN_LENGTH}' in {PWQUALITY} (and no smaller minlen= on the pam_pwquality.so line).",
       cis("5.3.1"), subject=PASSWORD_STACK)
def password_length(facts: Facts) -> list[Evidence]:
    try:
        path, lines = _stack(facts, PASSWORD_STACKS, "password")
        module = _uses(lines, ("pam_pwquality.so",))
    except NotApplicable:
        path, module = "", None
    setting = last_wins(read_settings(facts.tree, PWQUALITY)).get("minlen")
    if module is None and read_text(facts.tree, PWQUALITY, limit=1) is None:
        raise NotApplicable("pam_pwquality is not used on this guest")
    found: list[Evidence] = []
    if module is not None:  # an option on the module line wins over the file
        option = next((o.split("=", 1)[1] for o in module[1].split() if o.startswith("minlen=")), None)
        if option is not None:
            return [evidence(path, module[0], module[1])] if _below(option) else []
    if setting is not None:
        if _below(setting.value):
            found.append(setting.evidence())
    else:
        found.append(evidence(PWQUALITY, None, f"minlen not set (pam_pwquality's default: {DEFAULT_MIN_LENGTH})"))
    return found


def _below(value: str) -> bool:
    return not value.strip().isdigit() or int(value) < MIN_LENGTH


@check("PAM-003", "security", "medium", "No lockout after failed logins",
       "Neither pam_faillock nor pam_tally2 is in the auth stack: passwords can be guessed without limit.",
       "RHEL family: 'authselect enable-feature with-faillock'; Debian family: add pam_faillock.so "
       "preauth/authfail lines to /etc/pam.d/common-auth.", cis("5.3.2"), subject=AUTH_STACK)
def login_lockout(facts: Facts) -> list[Evidence]:
    return _unless_called(facts, AUTH_STACKS, "auth", LOCKOUT_MODULES)
