"""Performance checks."""

from __future__ import annotations

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, NotApplicable, check, evidence
from handlers.guestos.common import last_wins, read_settings
from handlers.guestos.services import SYSTEMD_CONFIG_DIR, is_enabled
from handlers.guestos.storage import FSTAB

JOURNALD_CONF = "/etc/systemd/journald.conf"
MAX_KERNELS = 3


@check("PERF-001", "performance", "info", "No swap configured",
       "Without swap, memory pressure goes straight to the OOM killer.",
       "Add a swap partition or swap file and an fstab entry for it (or configure zram).", subject=subjects.FSTAB)
def no_swap(facts: Facts) -> list[Evidence]:
    if any(entry.fstype == "swap" for entry in facts.fstab):
        return []
    return [evidence(FSTAB, None, "no swap entry")]


@check("PERF-003", "performance", "low", "tuned is installed but not enabled",
       "tuned applies a tuning profile for the workload (virtual-guest, throughput-performance, ...).",
       "systemctl enable tuned; tuned-adm profile virtual-guest", subject=subjects.package("tuned"))
def tuned(facts: Facts) -> list[Evidence]:
    if is_enabled(facts.services, "tuned"):
        return []
    return [evidence(f"{SYSTEMD_CONFIG_DIR}/multi-user.target.wants", None, "tuned.service is not enabled")]


@check("PERF-004", "performance", "info", f"More than {MAX_KERNELS} kernels installed",
       "Old kernels and their initramfs fill /boot and slow down package updates.",
       "Remove old kernels (apt autoremove; dnf remove --oldinstallonly) and set installonly_limit=3.",
       subject=subjects.KERNEL)
def many_kernels(facts: Facts) -> list[Evidence]:
    kernels = [k for k in facts.kernels if "rescue" not in k["version"]]
    if len(kernels) <= MAX_KERNELS:
        return []
    return [evidence("/boot", None, f"{len(kernels)} kernels: " + ", ".join(k["version"] for k in kernels))]


@check("PERF-005", "performance", "low", "Persistent journal without a size limit",
       "A persistent journal without SystemMaxUse can grow to 10% of its file system before it is trimmed.",
       "Set SystemMaxUse= (e.g. 500M) in the [Journal] section of /etc/systemd/journald.conf.",
       subject=subjects.SYSTEMD)
def journal_size(facts: Facts) -> list[Evidence]:
    if facts.tree.stat(JOURNALD_CONF) is None:
        raise NotApplicable("no /etc/systemd/journald.conf")
    settings = last_wins(read_settings(facts.tree, JOURNALD_CONF))
    storage = settings.get("Storage")
    if storage is None or storage.value.lower() != "persistent" or "SystemMaxUse" in settings:
        return []
    return [storage.evidence()]


@check("PERF-006", "performance", "info", "File system mounted with strictatime",
       "strictatime writes an access time on every read, turning reads into writes.",
       "Use the default relatime (or noatime) instead of strictatime in /etc/fstab.", subject=subjects.FSTAB)
def strictatime(facts: Facts) -> list[Evidence]:
    return [facts.fstab_evidence(entry) for entry in facts.fstab if "strictatime" in entry.options]
