"""Services, firewall and scheduled-task checks."""

from __future__ import annotations

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, check, cis, evidence, mode_check
from handlers.guestos.common import last_wins, read_settings
from handlers.guestos.services import SYSTEMD_CONFIG_DIR, is_enabled

INSECURE_SERVICES = ("telnet.socket", "telnetd.service", "rsh.socket", "rlogin.socket", "rexec.socket",
                     "tftp.socket", "tftp.service", "xinetd.service", "vsftpd.service", "ypserv.service",
                     "rsyncd.service", "inetutils-inetd.service", "openbsd-inetd.service")


def _wanted_by(facts: Facts) -> dict[str, list[str]]:
    return {unit["name"]: unit["wanted_by"] for unit in facts.services["enabled"]}


def _unit_evidence(facts: Facts, unit: str) -> Evidence:
    wanted_by = _wanted_by(facts).get(unit, ["multi-user.target"])
    path = f"{SYSTEMD_CONFIG_DIR}/{wanted_by[0]}.wants/{unit}"
    return evidence(path, None, f"{unit} -> {facts.tree.readlink(path) or '(enabled)'}")


def _missing_unit_evidence(text: str) -> Evidence:
    return evidence(f"{SYSTEMD_CONFIG_DIR}/multi-user.target.wants", None, text)


@check("SVC-001", "security", "high", "Insecure network service enabled",
       "telnet, rsh/rlogin/rexec, tftp, FTP and inetd services send credentials or data in clear text.",
       "Disable and remove the service (systemctl disable --now <unit>; remove its package).", cis("2.1", "2.2"),
       subject=subjects.SERVICES)
def insecure_services(facts: Facts) -> list[Evidence]:
    enabled = _wanted_by(facts)
    return [_unit_evidence(facts, unit) for unit in INSECURE_SERVICES if unit in enabled]


@check("FW-001", "security", "high", "No host firewall enabled",
       "Without ufw, firewalld, nftables or iptables enabled every listening service is reachable.",
       "Enable a firewall: 'ufw enable' (Debian/Ubuntu) or 'systemctl enable --now firewalld' (RHEL).",
       cis("3.5"), subject=subjects.SERVICES)
def firewall(facts: Facts) -> list[Evidence]:
    if facts.firewall["enabled"]:
        return []
    ufw = last_wins(read_settings(facts.tree, "/etc/ufw/ufw.conf")).get("ENABLED")
    if ufw is not None and ufw.value.lower() != "yes":
        return [ufw.evidence()]
    kinds = ", ".join(b["type"] for b in facts.firewall["backends"]) or "none configured"
    return [_missing_unit_evidence(f"no firewall service enabled (backends: {kinds})")]


@check("SVC-002", "compliance", "low", "cron daemon is not enabled",
       "Scheduled maintenance (log rotation, updates, audits) does not run without cron.",
       "Enable cron: 'systemctl enable cron' (Debian) or 'systemctl enable crond' (RHEL).", cis("5.1.1"),
       subject=subjects.SERVICES)
def cron_enabled(facts: Facts) -> list[Evidence]:
    if is_enabled(facts.services, "cron", "crond", "cronie"):
        return []
    return [_missing_unit_evidence("neither cron.service nor crond.service is enabled")]


@check("SVC-003", "compliance", "medium", "auditd is not enabled",
       "Without the audit daemon, security-relevant events (logins, privilege use, file changes) are not recorded.",
       "Install auditd and enable it ('systemctl enable auditd').", cis("4.1.1.2"), subject=subjects.SERVICES)
def auditd_enabled(facts: Facts) -> list[Evidence]:
    if is_enabled(facts.services, "auditd"):
        return []
    return [_missing_unit_evidence("auditd.service is not enabled")]


@check("SVC-004", "hardening", "low", "Ctrl-Alt-Del reboots the machine",
       "ctrl-alt-del.target is not masked, so a console key press reboots the system.",
       "systemctl mask ctrl-alt-del.target", subject=subjects.SYSTEMD)
def ctrl_alt_del(facts: Facts) -> list[Evidence]:
    if "ctrl-alt-del.target" in facts.services["masked"]:
        return []
    return [evidence(f"{SYSTEMD_CONFIG_DIR}/ctrl-alt-del.target", None, "ctrl-alt-del.target is not masked")]


mode_check("PERM-003", "compliance", "medium", ("/etc/crontab",), 0o077,
           "/etc/crontab is accessible by group or others", cis("5.1.2"))
mode_check("PERM-004", "hardening", "medium", ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"), 0o077,
           "Boot loader configuration is accessible by group or others", cis("1.5.1"))
