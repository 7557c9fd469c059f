"""fstab checks: separate partitions and mount options."""

from __future__ import annotations

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, NotApplicable, check, cis, evidence
from handlers.guestos.services import is_enabled
from handlers.guestos.storage import FSTAB


def _missing(facts: Facts, mountpoint: str) -> list[Evidence]:
    if facts.fstab_entry(mountpoint) is not None:
        return []
    return [evidence(FSTAB, None, f"no separate file system for {mountpoint}")]


@check("FS-001", "compliance", "low", "/tmp is not a separate file system",
       "A /tmp on the root file system lets users fill it and defeats nodev/nosuid/noexec on /tmp.",
       "Mount /tmp as tmpfs or a separate partition (systemctl enable tmp.mount, or an fstab entry).",
       cis("1.1.2"), subject=subjects.FSTAB)
def tmp_separate(facts: Facts) -> list[Evidence]:
    return [] if is_enabled(facts.services, "tmp.mount") else _missing(facts, "/tmp")


def _options_check(id: str, mountpoint: str, required: tuple[str, ...], severity: str,
                   references: tuple[str, ...]) -> None:
    wanted = ",".join(required)

    @check(id, "compliance", severity, f"{mountpoint} lacks {wanted}",
           f"{mountpoint} should be mounted with {wanted} so users cannot place devices or setuid programs there.",
           f"Add {wanted} to the options of the {mountpoint} entry in /etc/fstab.", references, subject=subjects.FSTAB)
    def run(facts: Facts) -> list[Evidence]:
        entry = facts.fstab_entry(mountpoint)
        if entry is None:
            raise NotApplicable(f"{mountpoint} is not a separate file system")
        missing = [option for option in required if option not in entry.options]
        return [facts.fstab_evidence(entry)] if missing else []


_options_check("FS-002", "/tmp", ("nodev", "nosuid", "noexec"), "medium", cis("1.1.3", "1.1.4", "1.1.5"))
_options_check("FS-003", "/home", ("nodev",), "low", cis("1.1.18"))


@check("FS-004", "compliance", "low", "/var/log is not a separate file system",
       "Logs on the root file system can fill it, and a full root file system stops the system.",
       "Put /var/log on its own partition or logical volume.", cis("1.1.15"), subject=subjects.FSTAB)
def var_log_separate(facts: Facts) -> list[Evidence]:
    return _missing(facts, "/var/log")
