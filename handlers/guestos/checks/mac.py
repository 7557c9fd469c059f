"""Mandatory access control: SELinux and AppArmor."""

from __future__ import annotations

import posixpath
import re

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, NotApplicable, check, cis, evidence
from handlers.guestos.security.apparmor import APPARMOR_DIR
from handlers.guestos.security.bootargs import argument_setting
from handlers.guestos.security.selinux import SELINUX_CONFIG
from handlers.tree import read_text


@check("MAC-001", "security", "high", "SELinux is not enforcing",
       "In permissive or disabled mode SELinux logs or ignores policy violations instead of stopping them.",
       "Set 'SELINUX=enforcing' in /etc/selinux/config, remove selinux=0 from the kernel command line, "
       "and relabel (touch /.autorelabel).", cis("1.7.1.4"), subject=subjects.SELINUX)
def selinux_enforcing(facts: Facts) -> list[Evidence]:
    if not facts.selinux:
        raise NotApplicable("SELinux is not configured on this guest (no /etc/selinux/config)")
    boot = argument_setting(facts.tree, "selinux")
    if boot is not None and re.search(r"(^|\s)selinux=0(\s|$)", boot.value):
        return [boot.evidence()]
    mode = facts.selinux.get("SELINUX")
    if mode is None:
        return [evidence(SELINUX_CONFIG, None, "SELINUX= not set")]
    return [] if mode.value.lower() == "enforcing" else [mode.evidence()]


@check("MAC-002", "security", "high", "AppArmor is disabled at boot",
       "The kernel command line turns AppArmor off, so none of its profiles confine anything.",
       "Remove apparmor=0 / security=... from GRUB_CMDLINE_LINUX in /etc/default/grub and update grub.",
       cis("1.7.2.1"), subject=subjects.APPARMOR)
def apparmor_boot(facts: Facts) -> list[Evidence]:
    if facts.apparmor is None:
        raise NotApplicable("AppArmor is not installed on this guest (no /etc/apparmor.d)")
    if facts.apparmor["enabled"]:
        return []
    setting = argument_setting(facts.tree, "apparmor") or argument_setting(facts.tree, "security")
    return [setting.evidence()] if setting else []


@check("MAC-003", "hardening", "medium", "AppArmor profile in complain mode",
       "A profile in complain mode only logs what it would deny.",
       "Put the profile in enforce mode (aa-enforce <profile>) once its logs are clean.", cis("1.7.2.2"),
       subject=subjects.APPARMOR)
def apparmor_complain(facts: Facts) -> list[Evidence]:
    if facts.apparmor is None:
        raise NotApplicable("AppArmor is not installed on this guest (no /etc/apparmor.d)")
    found = []
    for name, mode in facts.apparmor["profiles"].items():
        if mode != "complain":
            continue
        path = posixpath.join(APPARMOR_DIR, name)
        lines = (read_text(facts.tree, path) or "").splitlines()
        number = next((i for i, line in enumerate(lines, 1) if "complain" in line), None)
        found.append(evidence(path, number, lines[number - 1] if number else "flags=(complain)"))
    return found
