"""Kernel parameters (sysctl) checks."""

from __future__ import annotations

from collections.abc import Callable

from handlers.guestos.checks import subjects
from handlers.guestos.checks.base import Evidence, Facts, check, cis, evidence
from handlers.guestos.sysctl import SYSCTL_CONF

#: sysctls whose built-in value depends on how the kernel was built: key -> (option, the value when
#: the option is ``y``, the value otherwise). Debian's kernels set CONFIG_SECURITY_DMESG_RESTRICT,
#: RHEL's do not; a kernel with CONFIG_COMPAT_BRK randomises less.
CONFIG_DEFAULTS = {
    "kernel.dmesg_restrict": ("CONFIG_SECURITY_DMESG_RESTRICT", "1", "0"),
    "kernel.randomize_va_space": ("CONFIG_COMPAT_BRK", "1", "2"),
}


def kernel_default(facts: Facts, key: str, upstream: str) -> tuple[str, str]:
    """(the value ``key`` has when nothing sets it, where that value comes from)."""
    rule = CONFIG_DEFAULTS.get(key)
    if rule is None:
        return upstream, "kernel default"
    if facts.kernel_config is None:
        return upstream, "upstream kernel default; the guest keeps no configuration of its kernel"
    path, options = facts.kernel_config
    option, when_set, otherwise = rule
    built = options.get(option, "n")
    return (when_set if built == "y" else otherwise), f"kernel default with {option}={built} in {path}"


def sysctl_check(id: str, profile: str, severity: str, key: str, default: str, good: Callable[[str], bool],
                 title: str, description: str, remediation: str, references: tuple[str, ...] = ()) -> None:
    """Fires when the effective value of ``key`` is not ``good``; unset, its value is the booted
    kernel's built-in one (``default`` upstream, unless its build configuration changes it)."""
    @check(id, profile, severity, title, description, remediation, references, subject=subjects.KERNEL)
    def run(facts: Facts) -> list[Evidence]:
        setting = facts.sysctl.get(key)
        if setting is not None:
            return [] if good(setting.value.strip()) else [setting.evidence()]
        value, source = kernel_default(facts, key, default)
        return [] if good(value) else [evidence(SYSCTL_CONF, None, f"{key} not set ({source}: {value})")]


def _is(expected: str) -> Callable[[str], bool]:
    return lambda value: value == expected


def _set(key: str, value: str) -> str:
    return f"Set '{key} = {value}' in /etc/sysctl.d/60-hardening.conf."


sysctl_check("KRN-001", "hardening", "medium", "net.ipv4.ip_forward", "0", _is("0"),
             "IP forwarding is enabled", "A host that forwards packets can be used as a router between networks.",
             _set("net.ipv4.ip_forward", "0"), cis("3.1.1"))
sysctl_check("KRN-002", "hardening", "high", "kernel.randomize_va_space", "2", _is("2"),
             "Address space layout randomisation is weakened",
             "Without full ASLR, memory-corruption exploits find their targets at predictable addresses.",
             _set("kernel.randomize_va_space", "2"), cis("1.6.2"))
sysctl_check("KRN-003", "hardening", "medium", "net.ipv4.conf.all.accept_redirects", "1", _is("0"),
             "ICMP redirects are accepted", "Forged ICMP redirects can reroute the host's traffic.",
             _set("net.ipv4.conf.all.accept_redirects", "0"), cis("3.2.2"))
sysctl_check("KRN-004", "hardening", "medium", "net.ipv4.conf.all.send_redirects", "1", _is("0"),
             "ICMP redirects are sent", "Only routers need to send redirects.",
             _set("net.ipv4.conf.all.send_redirects", "0"), cis("3.1.2"))
sysctl_check("KRN-005", "hardening", "medium", "net.ipv4.conf.all.accept_source_route", "0", _is("0"),
             "Source-routed packets are accepted", "Source routing lets a sender choose the path around firewalls.",
             _set("net.ipv4.conf.all.accept_source_route", "0"), cis("3.2.1"))
sysctl_check("KRN-006", "hardening", "medium", "net.ipv4.tcp_syncookies", "1", _is("1"),
             "TCP SYN cookies are disabled", "Without SYN cookies a SYN flood exhausts the connection backlog.",
             _set("net.ipv4.tcp_syncookies", "1"), cis("3.2.8"))
sysctl_check("KRN-007", "hardening", "medium", "fs.suid_dumpable", "0", _is("0"),
             "setuid programs may dump core", "Core dumps of setuid programs can leak secrets such as password hashes.",
             _set("fs.suid_dumpable", "0"), cis("1.6.4"))
sysctl_check("KRN-008", "hardening", "low", "kernel.dmesg_restrict", "0", _is("1"),
             "Kernel log readable by unprivileged users", "dmesg exposes kernel addresses that help exploits.",
             _set("kernel.dmesg_restrict", "1"))
sysctl_check("PERF-002", "performance", "low", "vm.swappiness", "60",
             lambda v: v.isdigit() and int(v) <= 60,
             "Swappiness above 60", "A high vm.swappiness swaps application memory out early, adding latency.",
             _set("vm.swappiness", "10"))
