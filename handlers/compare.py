"""``guestkit.compare``: what differs between two guests — packages, users, groups, services,
configuration files under /etc (with unified diffs) and file listings of selected directories.
Windows guests are compared from their registry: installed applications, local users and groups,
services (start type, image path, account), and the files under ``/Windows/System32/drivers/etc``.

``compare_trees`` works on any two ``GuestTree``s; ``CompareHandler`` opens both images first.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from app.plugin.handler import Handler, HandlerContext, HandlerResult
from handlers.guestos import read_groups, read_packages, read_services, read_users
from handlers.guestos.packages import format_version, package_key
from handlers.guestos.walk import TooManyEntries, walk
from handlers.guestos.windows.accounts import local_groups, local_users
from handlers.guestos.windows.hives import Hive, open_hive
from handlers.guestos.windows.services import windows_services
from handlers.guestos.windows.software import installed_applications
from handlers.imagejob import PhaseProgress, image_facts, open_image, phase_reporter, report_destination, write_output
from handlers.payloads import CompareOptions, ComparePayloadV1
from handlers.tree import FileInfo, GuestTree

CONFIG_ROOT = "/etc"
WINDOWS_CONFIG_ROOT = "/Windows/System32/drivers/etc"
FILE_ROOTS = ("/boot", "/opt", "/root", "/home", "/srv", "/usr/local", "/var/spool/cron")
MAX_DIFF_BYTES = 1024 * 1024
MAX_DIFF_LINES = 2000
#: files whose content never goes into a report (password hashes, private keys)
SECRET_PATTERNS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh/*_key",
                   "*.key", "/etc/security/opasswd", "/etc/krb5.keytab", "/etc/ssl/private/*",
                   "/etc/pki/tls/private/*", "/etc/NetworkManager/system-connections/*",
                   "/etc/wpa_supplicant/*", "/etc/sysconfig/network-scripts/keys-*")


def _no_progress(phase: str, percent: int, message: str) -> None:
    return None


# ---------------------------------------------------------------------------------------- records


def _diff_records(before: list[dict[str, Any]], after: list[dict[str, Any]], key: str,
                  fields: tuple[str, ...]) -> dict[str, Any]:
    """added / removed names and changed fields between two lists of records keyed by ``key``."""
    old = {r[key]: r for r in before}
    new = {r[key]: r for r in after}
    changed = []
    for name in sorted(old.keys() & new.keys()):
        changes = {f: {"from": old[name].get(f), "to": new[name].get(f)} for f in fields
                   if old[name].get(f) != new[name].get(f)}
        if changes:
            changed.append({key: name, "changes": changes})
    return {"added": sorted(new.keys() - old.keys()), "removed": sorted(old.keys() - new.keys()),
            "changed": changed}


def application_key(application: dict[str, Any]) -> tuple[str, str]:
    """A Windows application by its uninstall key, which an upgrade keeps while its display name
    ("7-Zip 23.01 (x64)") changes."""
    return application["key"], application["arch"] or ""


def compare_packages(before: list[dict[str, Any]], after: list[dict[str, Any]],
                     key: Callable[[dict[str, Any]], tuple[str, str]] = package_key) -> dict[str, Any]:
    """Keyed by ``key`` ((name, arch)); several installed versions (kernels) are compared as sets. A
    change keyed by something other than the name names the key, and the name it had where that changed."""
    old: dict[tuple[str, str], list[dict[str, Any]]] = {}
    new: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for side, packages in ((old, before), (new, after)):
        for package in packages:
            side.setdefault(key(package), []).append(package)
    added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for name in sorted(old.keys() | new.keys()):
        was = {format_version(p): p for p in old.get(name, [])}
        now = {format_version(p): p for p in new.get(name, [])}
        if was.keys() == now.keys():
            continue
        if len(was) == 1 and len(now) == 1:
            previous, current = next(iter(was.values())), next(iter(now.values()))
            change = {"name": current["name"], "arch": name[1] or None, "from": next(iter(was)), "to": next(iter(now))}
            if name[0] != current["name"]:
                change["key"] = name[0]
            if previous["name"] != current["name"]:
                change["from_name"] = previous["name"]
            changed.append(change)
            continue
        added += [now[v] for v in sorted(now.keys() - was.keys())]
        removed += [was[v] for v in sorted(was.keys() - now.keys())]
    return {"added": added, "removed": removed, "changed": changed}


def _runlevel_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """SysV or OpenRC services enabled, disabled, or moved to other runlevels."""
    old = {s["name"]: s["runlevels"] for s in before}
    new = {s["name"]: s["runlevels"] for s in after}
    return {"enabled": sorted(new.keys() - old.keys()), "disabled": sorted(old.keys() - new.keys()),
            "changed": [{"name": n, "from": old[n], "to": new[n]} for n in sorted(old.keys() & new.keys())
                        if old[n] != new[n]]}


def _change(before: Any, after: Any) -> dict[str, Any] | None:  # noqa: ANN401 - any JSON value
    return None if before == after else {"from": before, "to": after}


def compare_services(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    old = {u["name"] for u in before["enabled"]}
    new = {u["name"] for u in after["enabled"]}
    return {
        "init": _change(before["init"]["name"], after["init"]["name"]),
        "enabled": sorted(new - old), "disabled": sorted(old - new),
        "masked": sorted(set(after["masked"]) - set(before["masked"])),
        "unmasked": sorted(set(before["masked"]) - set(after["masked"])),
        "default_target": _change(before["default_target"], after["default_target"]),
        "sysv": _runlevel_changes(before["sysv"], after["sysv"]),
        "openrc": _runlevel_changes(before["openrc"], after["openrc"]),
    }


# ---------------------------------------------------------------------------------------- files


def _is_secret(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in SECRET_PATTERNS)


def _metadata_changes(old: FileInfo, new: FileInfo, ignore_timestamps: bool) -> dict[str, Any]:
    fields = ["type", "size", "mode", "uid", "gid"] + ([] if ignore_timestamps else ["mtime"])
    return {f: {"from": getattr(old, f), "to": getattr(new, f)} for f in fields
            if getattr(old, f) != getattr(new, f)}


def _text_diff(path: str, old: bytes, new: bytes) -> dict[str, Any]:
    if b"\0" in old or b"\0" in new:
        return {"binary": True, "diff": None}
    lines = list(difflib.unified_diff(
        old.decode("utf-8", "replace").splitlines(keepends=True),
        new.decode("utf-8", "replace").splitlines(keepends=True), fromfile=f"a{path}", tofile=f"b{path}"))
    truncated = len(lines) > MAX_DIFF_LINES
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines[:MAX_DIFF_LINES])
    return {"binary": False, "diff": text, "truncated": truncated}


def _content(tree: GuestTree, path: str, info: FileInfo) -> bytes | str | None:
    if info.type == "symlink":
        return tree.readlink(path)
    if info.type == "file":
        return tree.read_bytes(path, limit=MAX_DIFF_BYTES + 1)
    return None


def compare_file_sets(a: GuestTree, b: GuestTree, top: str, *, ignore_timestamps: bool,
                      with_diffs: bool) -> dict[str, Any]:
    """Entries added, removed and modified under ``top``; content diffs of text files when ``with_diffs``."""
    try:
        old, new = walk(a, top), walk(b, top)
    except TooManyEntries as exc:
        return {"added": [], "removed": [], "modified": [], "skipped": str(exc)}
    modified = []
    for path in sorted(old.keys() & new.keys()):
        before, after = old[path], new[path]
        if before.type == "dir" and after.type == "dir":
            changes = _metadata_changes(before, after, ignore_timestamps)
            changes.pop("size", None)
            if changes:
                modified.append({"path": path, "metadata": changes})
            continue
        was, now = _content(a, path, before), _content(b, path, after)
        metadata = _metadata_changes(before, after, ignore_timestamps)
        if was == now and not metadata:
            continue
        entry: dict[str, Any] = {"path": path, "content_changed": was != now, "metadata": metadata}
        if was != now and before.type == after.type == "symlink":
            entry["link"] = {"from": was, "to": now}
        elif was != now and with_diffs and before.type == after.type == "file":
            if _is_secret(path):
                entry.update(redacted=True, diff=None)
            elif max(len(was or b""), len(now or b"")) > MAX_DIFF_BYTES:
                entry.update(diff=None, too_large=True)
            else:
                entry.update(_text_diff(path, was or b"", now or b""))  # type: ignore[arg-type]
        modified.append(entry)
    return {"added": sorted(new.keys() - old.keys()), "removed": sorted(old.keys() - new.keys()),
            "modified": modified}


# ---------------------------------------------------------------------------------------- assembly

_USER_FIELDS = ("uid", "gid", "gecos", "home", "shell", "password", "login_allowed", "groups", "sudo")
_WINDOWS_USER_FIELDS = ("rid", "full_name", "comment", "disabled", "password_never_expires", "groups")
_WINDOWS_SERVICE_FIELDS = ("display_name", "start_type", "type", "image_path", "account")


class GuestRecords:
    """What compare reads of one guest, each part read once: from the registry on Windows (its SYSTEM
    hive readable), from the files under /etc otherwise."""

    def __init__(self, tree: GuestTree) -> None:
        self.tree = tree

    def _hive(self, name: str) -> Hive | None:
        return open_hive(self.tree, name)[0]

    @cached_property
    def system(self) -> Hive | None:
        return self._hive("SYSTEM")

    @property
    def windows(self) -> bool:
        return self.system is not None

    @property
    def os(self) -> str:
        return "windows" if self.windows else "linux"

    @property
    def config_root(self) -> str:
        return WINDOWS_CONFIG_ROOT if self.windows else CONFIG_ROOT

    @cached_property
    def packages(self) -> list[dict[str, Any]]:
        if not self.windows:
            return read_packages(self.tree)["packages"]
        software = self._hive("SOFTWARE")
        return installed_applications(software) if software else []

    @cached_property
    def users(self) -> list[dict[str, Any]]:
        if not self.windows:
            return read_users(self.tree)
        sam = self.sam
        return local_users(sam) if sam else []

    @cached_property
    def sam(self) -> Hive | None:
        return self._hive("SAM")

    @cached_property
    def groups(self) -> list[dict[str, Any]]:
        if not self.windows:
            return read_groups(self.tree)
        return local_groups(self.sam, self.users) if self.sam else []

    @cached_property
    def services(self) -> dict[str, Any] | list[dict[str, Any]]:
        """Linux: ``read_services``; Windows: every service with its start type."""
        if not self.windows:
            return read_services(self.tree)
        assert self.system is not None
        return windows_services(self.system)

    def service_names(self) -> list[dict[str, Any]]:
        """The services as records with a name only: the enabled units, or every Windows service."""
        services = self.services
        return [{"name": s["name"]} for s in (services if isinstance(services, list) else services["enabled"])]


def _compare_accounts_and_services(a: GuestRecords, b: GuestRecords) -> dict[str, Any]:
    """users, groups and services; between a Linux and a Windows guest, by name only."""
    if a.windows != b.windows:
        return {"users": _diff_records(a.users, b.users, "name", ()),
                "groups": _diff_records(a.groups, b.groups, "name", ()),
                "services": _diff_records(a.service_names(), b.service_names(), "name", ())}
    if a.windows:
        assert isinstance(a.services, list) and isinstance(b.services, list)
        return {"users": _diff_records(a.users, b.users, "name", _WINDOWS_USER_FIELDS),
                "groups": _diff_records(a.groups, b.groups, "name", ("rid", "comment", "members")),
                "services": _diff_records(a.services, b.services, "name", _WINDOWS_SERVICE_FIELDS)}
    assert isinstance(a.services, dict) and isinstance(b.services, dict)
    return {"users": _diff_records(a.users, b.users, "name", _USER_FIELDS),
            "groups": _diff_records(a.groups, b.groups, "name", ("gid", "members")),
            "services": compare_services(a.services, b.services)}


def compare_trees(a: GuestTree, b: GuestTree, options: CompareOptions | None = None,
                  progress: PhaseProgress | None = None) -> dict[str, Any]:
    """Differences from baseline ``a`` to target ``b``; sections follow the compare_* options."""
    options = options or CompareOptions()
    report_progress: Callable[[str, int, str], None] = progress or _no_progress
    base, target = GuestRecords(a), GuestRecords(b)
    report: dict[str, Any] = {"os": {"baseline": base.os, "target": target.os}}
    if options.compare_packages:
        report_progress("package_scan", 55, "comparing packages" if not base.windows else "comparing applications")
        both_windows = base.windows and target.windows
        report["packages"] = compare_packages(base.packages, target.packages,
                                              application_key if both_windows else package_key)
    if options.compare_config:
        report_progress("service_scan", 65, "comparing users, groups and services")
        report.update(_compare_accounts_and_services(base, target))
        roots = {base.config_root, target.config_root}
        report_progress("security_scan", 75, f"comparing {' and '.join(sorted(roots))}")
        report["config"] = compare_file_sets(a, b, base.config_root, ignore_timestamps=options.ignore_timestamps,
                                             with_diffs=True)
    if options.compare_files:
        report_progress("disk_inspection", 80, "comparing file listings")
        report["files"] = {top: compare_file_sets(a, b, top, ignore_timestamps=options.ignore_timestamps,
                                                  with_diffs=False) for top in FILE_ROOTS}
    report["summary"] = _summary(report)
    # what the job's limits cut from either guest (app.plugin.limits)
    report["truncated"] = ([{**cut, "image": "baseline"} for cut in a.truncated]
                           + [{**cut, "image": "target"} for cut in b.truncated])
    return report


def _summary(report: dict[str, Any]) -> dict[str, int]:
    summary: dict[str, int] = {}
    if "packages" in report:
        for kind in ("added", "removed", "changed"):
            summary[f"packages_{kind}"] = len(report["packages"][kind])
    if "users" in report:
        summary["users_changed"] = sum(len(report["users"][k]) for k in ("added", "removed", "changed"))
        services = report["services"]
        summary["services_changed"] = (len(services["enabled"]) + len(services["disabled"]) if "enabled" in services
                                       else sum(len(services[k]) for k in ("added", "removed", "changed")))
        summary["config_files_changed"] = sum(len(report["config"][k]) for k in ("added", "removed", "modified"))
    if "files" in report:
        summary["files_changed"] = sum(len(part[k]) for part in report["files"].values()
                                       for k in ("added", "removed", "modified"))
    summary["total"] = sum(summary.values())
    return summary


class CompareHandler(Handler):
    operation = "guestkit.compare"
    payload_models = {1: ComparePayloadV1}
    features = ("compare",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, ComparePayloadV1)
        # every path checked before either image is opened
        destination = report_destination(ctx, payload.output,
                                         {"baseline.path": payload.baseline, "target.path": payload.target})
        with open_image(ctx, payload.baseline, low=0, high=20, label="baseline: ") as (base_guest, base_tree), \
                open_image(ctx, payload.target, low=20, high=40, label="target: ") as (target_guest, target_tree):
            report = compare_trees(base_tree, target_tree, payload.options, phase_reporter(ctx))
            ctx.report_progress("result_generation", 90, f"{report['summary']['total']} differences")
            report = {"baseline": image_facts(base_guest), "target": image_facts(target_guest), **report}
        written = write_output(ctx, destination, payload.output.overwrite, report)
        ctx.report_progress("cleanup", 100, "comparison complete")
        return HandlerResult(data=report, primary=written, artifacts=[written] if written else [])
