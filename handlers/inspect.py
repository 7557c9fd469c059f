"""``guestkit.inspect``: read a VM disk image offline and report what is inside.

``inspect_tree`` builds the report from any ``GuestTree`` (no image needed); ``InspectHandler``
opens the image through the guest-image engine and adds the storage facts. Opening the image
under the job's rules is ``handlers.imagejob``'s, shared with profile and compare.

Report (handler): ``report_version``, ``image`` {path, format, virtual_size, actual_size, compressed,
warnings (what could not be read as the guest sees it: a dirty XFS log)},
``os`` {type, distribution, name, pretty_name, version, version_major, version_minor, codename,
id_like, family, architecture, package_format, package_manager, hostname}, ``kernels``, ``machine_id``,
``cloud_init``, ``timezone``, ``errors``; switched by options: ``storage`` {partitions, filesystems,
lvm, mountpoints, root_device, unplaced_mounts, fstab}, ``packages`` {format, source, count,
installed [{name, epoch, version, release, arch; for rpm also source_rpm, install_time, size, license,
vendor, summary; for apk and pacman origin, license, size, install_time (None for apk, which keeps
none), build_time, summary, and maintainer (apk) or packager and explicit (pacman)}], warning},
``databases``, ``services`` {init {name, evidence}, default_target, enabled, masked, sysv, openrc} and
``scheduled_tasks``, ``users`` and ``groups``, ``network`` {interfaces, dns}, ``security`` {selinux,
apparmor, ssh, firewall}, ``sysctl`` (deep_scan); ``truncated``: what the job's limits cut, each
{file, limit, value, found} (``app.plugin.limits``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from app.plugin.errors import JobError
from app.plugin.handler import Handler, HandlerContext, HandlerResult
from handlers.guestos import (
    detect_os,
    read_cloud_init,
    read_cron,
    read_groups,
    read_hostname,
    read_kernels,
    read_machine_id,
    read_network,
    read_packages,
    read_security,
    read_services,
    read_sysctl,
    read_timezone,
    read_users,
)
from handlers.guestos.databases import read_databases
from handlers.guestos.snapper import read_root_snapshot
from handlers.guestos.storage import fstab_as_dicts, read_fstab_entries
from handlers.guestos.windows import read_windows
from handlers.guestos.windows.system import drive_letters
from handlers.imagejob import PhaseProgress, image_facts, open_image, phase_reporter, report_destination, write_output
from handlers.payloads import InspectOptions, InspectPayloadV1
from handlers.tree import GuestTree

if TYPE_CHECKING:
    from handlers.guestimage import Guest

REPORT_VERSION = 1


def _no_progress(phase: str, percent: int, message: str) -> None:
    return None


def _guarded(errors: list[dict[str, str]], section: str, read: Callable[[], Any]) -> Any:
    """``read()``, or None with an entry in ``errors`` if it fails: one parser tripping over an odd
    guest file must not lose the rest of the report. Job errors (cancellation, unreadable image) pass."""
    try:
        return read()
    except JobError:
        raise
    except Exception as exc:  # noqa: BLE001
        errors.append({"section": section, "error": f"{type(exc).__name__}: {exc}"})
        return None


def inspect_tree(tree: GuestTree, options: InspectOptions | None = None,
                 progress: PhaseProgress | None = None) -> dict[str, Any]:
    """The inspect report of a guest file tree; each ``include_*`` option switches its section.

    Sections switched off are absent from the report; a section whose parser failed is None and
    the failure is listed under ``errors``. ``storage`` holds only ``fstab`` here; the handler adds
    what only the image knows (partitions, file systems, mountpoints).
    """
    options = options or InspectOptions()
    report_progress = progress or _no_progress
    errors: list[dict[str, str]] = []

    def guarded(section: str, read: Callable[[], Any]) -> Any:
        return _guarded(errors, section, read)

    report_progress("os_detection", 45, "detecting the operating system")
    os_facts = guarded("os", lambda: detect_os(tree) | {"hostname": read_hostname(tree)})
    if os_facts is not None and os_facts["type"] == "windows":
        return _inspect_windows(tree, options, report_progress, errors, os_facts)
    report: dict[str, Any] = {
        "os": os_facts,
        "kernels": guarded("kernels", lambda: read_kernels(tree)),
        "machine_id": guarded("machine_id", lambda: read_machine_id(tree)),
        "cloud_init": guarded("cloud_init", lambda: read_cloud_init(tree)),
        "timezone": guarded("timezone", lambda: read_timezone(tree)),
    }
    if options.include_storage:
        report["storage"] = {"fstab": guarded("storage", lambda: fstab_as_dicts(read_fstab_entries(tree)))}
    packages: dict[str, Any] | None = None
    if options.include_packages or options.include_databases:
        report_progress("package_scan", 55, "reading the package database")
        packages = guarded("packages", lambda: read_packages(tree))
    if options.include_packages:
        report["packages"] = None if packages is None else {
            "format": packages["format"], "source": packages["source"], "count": len(packages["packages"]),
            "installed": packages["packages"], "warning": packages["warning"]}
    if options.include_databases:
        report["databases"] = None if packages is None else guarded(
            "databases", lambda: read_databases(tree, packages["packages"]))
    services: dict[str, Any] | None = None
    if options.include_services or options.include_security:
        report_progress("service_scan", 65, "reading enabled services")
        services = guarded("services", lambda: read_services(tree))
    if options.include_services:
        report["services"] = services
        report["scheduled_tasks"] = guarded("scheduled_tasks", lambda: read_cron(tree))
    if options.include_users:
        report["users"] = guarded("users", lambda: read_users(tree))
        report["groups"] = guarded("groups", lambda: read_groups(tree))
    if options.include_network:
        report["network"] = guarded("network", lambda: read_network(tree))
    if options.include_security:
        report_progress("security_scan", 75, "reading the security configuration")
        report["security"] = None if services is None else guarded(
            "security", lambda: read_security(tree, services))
    if options.deep_scan:
        report["sysctl"] = guarded("sysctl", lambda: {k: s.value for k, s in read_sysctl(tree).items()})
    report["errors"] = errors
    report["truncated"] = tree.truncated  # what the job's limits cut (app.plugin.limits)
    return report


def _inspect_windows(tree: GuestTree, options: InspectOptions, report_progress: PhaseProgress,
                     errors: list[dict[str, str]], os_facts: dict[str, Any]) -> dict[str, Any]:
    """A Windows guest's report, from its registry: the sections a Linux guest has where they mean
    the same (``os``, ``timezone``, ``packages`` as its applications, ``services`` as its service
    list) and ``windows`` for what only Windows has."""
    report_progress("package_scan", 55, "reading the registry")
    found = _guarded(errors, "windows", lambda: read_windows(tree))
    if found is None:
        return {"os": os_facts, "errors": errors, "truncated": tree.truncated}
    report: dict[str, Any] = {"os": found["os"], "kernels": [], "machine_id": None, "cloud_init": None,
                              "timezone": found["timezone"]}
    if options.include_storage:
        report["storage"] = {"fstab": []}
    if options.include_packages:
        report["packages"] = found["packages"]
    if options.include_services:
        report["services"] = found["services"]
    if options.include_users:
        report["users"], report["groups"] = found["users"], found["groups"]
    if options.include_network:
        report["network"] = found["network"]
    report["windows"] = {**found["windows"], "warnings": found["warnings"]}
    report["errors"] = errors
    report["truncated"] = tree.truncated
    return report


def storage_facts(guest: Guest, tree: GuestTree) -> dict[str, Any]:
    """Partitions, file systems, LVM, mountpoints and fstab as the engine found them; on btrfs, the
    subvolume the root is, and the snapper snapshot it is (SUSE)."""
    return {
        "partitions": [asdict(p) for p in guest.partitions],
        "filesystems": [fs.as_dict() for fs in guest.filesystems],
        "lvm": guest.lvm,
        "mountpoints": dict(guest.mountpoints),
        "root_device": guest.root_device,
        "root_subvolume": guest.root_subvolume,
        "snapper": read_root_snapshot(tree, guest.root_subvolume),
        "unplaced_mounts": list(guest.unplaced_mounts),
    }


class InspectHandler(Handler):
    operation = "guestkit.inspect"
    payload_models = {1: InspectPayloadV1}
    features = ("inspect",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, InspectPayloadV1)
        destination = report_destination(ctx, payload.output, {"image.path": payload.image})  # before any work starts
        with open_image(ctx, payload.image) as (guest, tree):
            report = inspect_tree(tree, payload.options, phase_reporter(ctx))
            ctx.report_progress("result_generation", 90, "assembling the report")
            report = {"report_version": REPORT_VERSION, "image": image_facts(guest), **report}
            if payload.options.include_storage:
                report["storage"] = {**storage_facts(guest, tree), **report["storage"]}
            if "windows" in report:  # drive letters name the engine's partitions; hive warnings are the image's
                windows = report["windows"]
                windows["drive_letters"] = drive_letters(windows.pop("mounted_devices"),
                                                         [asdict(p) for p in guest.partitions], guest.disk_signature)
                report["image"]["warnings"] += windows["warnings"]
        written = write_output(ctx, destination, payload.output.overwrite, report)
        ctx.report_progress("cleanup", 100, "inspection complete")
        return HandlerResult(data=report, primary=written, artifacts=[written] if written else [])
