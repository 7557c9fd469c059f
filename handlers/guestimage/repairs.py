"""Offline repairs planned over a guest tree and applied to raw images with ExtWriter.

Each operation reads the current state through a ``Guest`` and returns a ``Plan``: the before and
after state for the report, and declarative edits. ``apply_edits`` carries the edits out on a raw
copy of the disk; a dry run just reports the plan.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from app.plugin.errors import ErrorCode
from app.plugin.limits import ResourceLimitExceeded
from handlers.tree import read_text

from .extwrite import ExtWriteError, ExtWriter, FatWriter
from .fstab import parse_fstab
from .guest import Guest, open_guest
from .view import GuestView

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")
_VIRTUAL = {"swap", "proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "nfs", "nfs4", "cifs", "none", "bind", "overlay"}


class RepairError(Exception):
    """An operation cannot be planned or applied; ``invalid`` when its options are wrong; ``code``
    when the job must fail with that contract code whatever its execution policy."""

    def __init__(self, message: str, *, invalid: bool = False, code: ErrorCode | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.invalid = invalid
        self.code = code
        self.details = details or {}


def _link_refused(guest: Guest, path: str) -> RepairError:
    target = guest.root_tree().readlink(path)
    return RepairError(f"{path} is a guest symlink to {target}; fix does not write through links (set "
                       "options.replace_link to replace the link itself with a file)",
                       code=ErrorCode.GUEST_LINK_REFUSED, details={"path": path, "link_target": target})


def _read_named(guest: Guest, path: str, options: dict[str, Any]) -> str | None:
    """The text of ``path`` itself, for an operation that rewrites it: a guest symlink there is
    refused (``GUEST_LINK_REFUSED``) unless ``options.replace_link``, and never read through."""
    tree = guest.root_tree()
    info = tree.stat(path)
    if info is not None and info.type == "symlink":
        if not options.get("replace_link", False):
            raise _link_refused(guest, path)
        return None
    text = read_text(tree, path)
    cut = next((entry for entry in tree.truncated if entry["file"] == path), None)
    if cut is not None:  # rewriting what was read would lose the rest of the file
        name = cut["limit"].removeprefix("GUESTKIT_").lower()
        raise ResourceLimitExceeded(f"rewriting {path}", name, cut["value"], cut["found"],
                                    "bytes" if name == "max_file_bytes" else "lines")
    return text


@dataclass
class Edit:
    kind: str  # write | remove | symlink | mkdir | fsck
    path: str = ""
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    device: str = ""


@dataclass
class Plan:
    target: str | None
    before: Any
    after: Any
    edits: list[Edit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.edits)


def file_state(guest: Guest, path: str) -> dict[str, Any]:
    """What the report shows of a file: existence, type, size, sha256, mode, owner."""
    tree = guest.root_tree()
    info = tree.stat(path)
    if info is None:
        return {"exists": False}
    state: dict[str, Any] = {"exists": True, "type": info.type, "mode": f"{info.mode:04o}", "uid": info.uid,
                             "gid": info.gid, "size": info.size}
    if info.type == "symlink":
        state["target"] = tree.readlink(path)
    elif info.type == "file":  # a file longer than the job may read has no checksum here
        data = tree.read_bytes(path) or b""
        state["sha256"] = hashlib.sha256(data).hexdigest() if len(data) == info.size else None
    return state


def _abs_path(options: dict[str, Any], key: str = "path") -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise RepairError(f"options.{key} must be an absolute guest path", invalid=True)
    normal = str(PurePosixPath(value))
    if ".." in PurePosixPath(normal).parts or normal == "/":
        raise RepairError(f"options.{key} must not be / or contain '..'", invalid=True)
    return normal


def _mode(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and 0 <= value <= 0o7777:
        return value
    if isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value):
        return int(value.replace("o", ""), 8)
    raise RepairError(f"mode {value!r} must be an octal string like '0644' or an int", invalid=True)


def _write_edit(guest: Guest, path: str, data: bytes, options: dict[str, Any], *, mode: int | None = None,
                uid: int | None = None, gid: int | None = None, default_mode: int = 0o644) -> Edit:
    """An edit writing ``data`` to ``path`` itself, keeping the existing file's mode and owner unless
    given. A guest symlink at ``path`` is refused unless ``options.replace_link`` (then the link is
    replaced by the file: a write never follows a link)."""
    info = guest.root_tree().stat(path)
    if info is not None and info.type == "symlink" and not options.get("replace_link", False):
        raise _link_refused(guest, path)
    if info is not None and info.type not in ("file", "symlink"):
        raise RepairError(f"{path} exists and is a {info.type}, not a file")
    keep_mode, keep_uid, keep_gid = (info.mode, info.uid, info.gid) if info and info.type == "file" else \
        (default_mode, 0, 0)
    return Edit("write", path, data, mode if mode is not None else keep_mode,
                uid if uid is not None else keep_uid, gid if gid is not None else keep_gid)


# -- operations ---------------------------------------------------------------------------------------
def plan_set_hostname(guest: Guest, options: dict[str, Any]) -> Plan:
    name = options.get("hostname")
    if not isinstance(name, str) or not _HOSTNAME.match(name):
        raise RepairError("options.hostname must be a valid host name", invalid=True)
    old_text = _read_named(guest, "/etc/hostname", options)
    old = (old_text or "").strip()
    hosts = _read_named(guest, "/etc/hosts", options)
    plan = Plan("/etc/hostname", {"hostname": old or None}, {"hostname": name})
    if old != name or old_text != name + "\n":
        plan.edits.append(_write_edit(guest, "/etc/hostname", f"{name}\n".encode(), options))
    if hosts is not None:
        lines = []
        for line in hosts.splitlines():
            body, _, comment = line.partition("#")
            fields = body.split()
            if old and old != "localhost" and old in fields[1:]:
                fields = [fields[0]] + [name if f == old else f for f in fields[1:]]
                line = "\t".join(fields) + (f" #{comment}" if comment else "")
            lines.append(line)
        if not any(name in line.partition("#")[0].split()[1:] for line in lines):
            lines.append(f"127.0.1.1\t{name}")
        new_hosts = "\n".join(lines) + "\n"
        if new_hosts != hosts:
            plan.edits.append(_write_edit(guest, "/etc/hosts", new_hosts.encode(), options))
            plan.before["hosts"], plan.after["hosts"] = hosts, new_hosts
    return plan


def plan_write_file(guest: Guest, options: dict[str, Any]) -> Plan:
    path = _abs_path(options)
    if "content_base64" in options:
        try:
            data = base64.b64decode(str(options["content_base64"]), validate=True)
        except ValueError as exc:
            raise RepairError("options.content_base64 is not valid base64", invalid=True) from exc
    elif isinstance(options.get("content"), str):
        data = options["content"].encode()
    else:
        raise RepairError("options.content (text) or options.content_base64 is required", invalid=True)
    tree = guest.root_tree()
    before = file_state(guest, path)
    if before["exists"] and options.get("overwrite", True) is False:
        raise RepairError(f"{path} exists and options.overwrite is false")
    plan = Plan(path, before, {})
    missing: list[str] = []
    parent = PurePosixPath(path).parent
    while tree.stat(str(parent)) is None:
        missing.insert(0, str(parent))
        parent = parent.parent
    if missing and not options.get("create_parents", False):
        raise RepairError(f"{missing[0]} does not exist (set options.create_parents)")
    plan.edits += [Edit("mkdir", p, mode=0o755) for p in missing]
    uid = options.get("uid")
    gid = options.get("gid")
    if uid is not None and (not isinstance(uid, int) or uid < 0) or gid is not None and (
            not isinstance(gid, int) or gid < 0):
        raise RepairError("options.uid and options.gid must be non-negative integers", invalid=True)
    mode = _mode(options.get("mode"), 0o644) if "mode" in options else None
    edit = _write_edit(guest, path, data, options, mode=mode, uid=uid, gid=gid)
    plan.edits.append(edit)
    plan.after = {"exists": True, "type": "file", "mode": f"{edit.mode:04o}", "uid": edit.uid, "gid": edit.gid,
                  "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if before == plan.after:
        plan.edits = []
    return plan


def plan_remove_file(guest: Guest, options: dict[str, Any]) -> Plan:
    path = _abs_path(options)
    before = file_state(guest, path)
    plan = Plan(path, before, {"exists": False})
    if not before["exists"]:
        if options.get("missing_ok", True) is False:
            raise RepairError(f"{path} does not exist")
        plan.notes.append("already absent")
        return plan
    if before["type"] == "dir":
        raise RepairError(f"{path} is a directory; remove_file removes files and symlinks only")
    if path in guest.mountpoints:
        raise RepairError(f"{path} is a mountpoint")
    plan.edits.append(Edit("remove", path))
    return plan


def _unit_name(options: dict[str, Any]) -> str:
    name = options.get("name") or options.get("service") or options.get("unit")
    if not isinstance(name, str) or not _UNIT.match(name) or name in (".", ".."):
        raise RepairError("options.name must be a service (unit) name", invalid=True)
    return name if "." in name else f"{name}.service"


def plan_disable_service(guest: Guest, options: dict[str, Any]) -> Plan:
    unit = _unit_name(options)
    tree = guest.root_tree()
    links: list[str] = []
    for base in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        if base != "/etc/systemd/system":
            continue  # only administrator links are enablement; vendor .wants links are static
        for sub in tree.listdir(base) or []:
            if sub.endswith((".wants", ".requires")) and unit in (tree.listdir(f"{base}/{sub}") or []):
                links.append(f"{base}/{sub}/{unit}")
    sysv_name = unit.removesuffix(".service")
    sysv: list[tuple[str, str, str]] = []
    for runlevel in ("0", "1", "2", "3", "4", "5", "6", "S"):
        directory = f"/etc/rc{runlevel}.d"
        for entry in tree.listdir(directory) or []:
            match = re.fullmatch(r"S(\d\d)(.+)", entry)
            if match and match.group(2) == sysv_name:
                target = tree.readlink(f"{directory}/{entry}") or f"../init.d/{sysv_name}"
                kill = f"{directory}/K{100 - int(match.group(1)):02d}{sysv_name}"
                sysv.append((f"{directory}/{entry}", kill, target))
    mask = bool(options.get("mask", False))
    masked_path = f"/etc/systemd/system/{unit}"
    masked_now = tree.readlink(masked_path) == "/dev/null"
    plan = Plan(unit, {"enabled_links": links, "sysv_start_links": [s for s, _, _ in sysv], "masked": masked_now},
                {"enabled_links": [], "sysv_start_links": [], "masked": masked_now or mask})
    plan.edits += [Edit("remove", link) for link in links]
    for start, kill, target in sysv:
        plan.edits += [Edit("remove", start), Edit("symlink", kill, target=target)]
    if mask and not masked_now:
        existing = tree.stat(masked_path)
        if existing is not None and existing.type != "symlink":
            raise RepairError(f"{masked_path} is a unit file; not masking over it")
        if existing is not None:
            plan.edits.append(Edit("remove", masked_path))
        plan.edits.append(Edit("symlink", masked_path, target="/dev/null"))
    if not plan.edits:
        plan.notes.append(f"{unit} is not enabled")
    return plan


def plan_lock_account(guest: Guest, options: dict[str, Any]) -> Plan:
    user = options.get("username") or options.get("user") or options.get("name")
    if not isinstance(user, str) or not _USER.match(user):
        raise RepairError("options.username must be a user name", invalid=True)
    shadow = _read_named(guest, "/etc/shadow", options)
    if shadow is None:
        raise RepairError("/etc/shadow does not exist")
    lines = shadow.splitlines()
    for index, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == user and len(fields) >= 2:
            locked = fields[1].startswith("!")
            plan = Plan("/etc/shadow", {"user": user, "locked": locked}, {"user": user, "locked": True})
            if not locked:
                fields[1] = "!" + fields[1]
                lines[index] = ":".join(fields)
                text = "\n".join(lines) + ("\n" if shadow.endswith("\n") else "")
                edit = _write_edit(guest, "/etc/shadow", text.encode(), options, default_mode=0o640)
                plan.edits.append(edit)
            else:
                plan.notes.append("already locked")
            return plan
    raise RepairError(f"user {user} is not in /etc/shadow")


def plan_selinux_relabel(guest: Guest, options: dict[str, Any]) -> Plan:
    tree = guest.root_tree()
    before = file_state(guest, "/.autorelabel")
    if before.get("type") == "symlink":  # not a flag: a link somewhere else, never written through
        _write_edit(guest, "/.autorelabel", b"", options)  # refuses unless options.replace_link
        before = {"exists": False}
    plan = Plan("/.autorelabel", {"autorelabel_scheduled": before["exists"]}, {"autorelabel_scheduled": True})
    config = read_text(tree, "/etc/selinux/config")
    if config is None:
        plan.notes.append("the guest has no /etc/selinux/config; the flag has no effect without SELinux")
    elif re.search(r"^\s*SELINUX\s*=\s*disabled", config, re.M):
        plan.notes.append("SELinux is disabled in /etc/selinux/config")
    if not before["exists"]:
        plan.edits.append(Edit("write", "/.autorelabel", b"", 0o644, 0, 0))
    return plan


def plan_fstab_repair(guest: Guest, options: dict[str, Any]) -> Plan:
    action = options.get("action", "comment")
    if action not in ("comment", "nofail"):
        raise RepairError("options.action must be 'comment' or 'nofail'", invalid=True)
    use_uuid = bool(options.get("use_uuid", True))
    text = _read_named(guest, "/etc/fstab", options)
    if text is None:
        raise RepairError("/etc/fstab does not exist")
    by_line = {entry.line: entry for entry in parse_fstab(text)}
    lines = text.splitlines()
    fixes: list[dict[str, str]] = []
    for number, entry in by_line.items():
        if entry.fstype in _VIRTUAL or not entry.mountpoint.startswith("/") and entry.fstype != "swap":
            continue
        device = guest.find_device(entry.spec)
        old = lines[number - 1]
        if device is None:
            if action == "comment":
                new = f"# {old}  # disabled by guestkit fstab_repair: {entry.spec} not found"
            elif "nofail" in entry.options:
                continue
            else:
                fields = old.split()
                fields[3:4] = [",".join([*entry.options, "nofail"])] if len(fields) > 3 else ["defaults,nofail"]
                new = "\t".join(fields)
            fixes.append({"line": str(number), "problem": f"{entry.spec} not found in the image", "before": old,
                          "after": new})
            lines[number - 1] = new
        elif use_uuid and entry.spec_kind == "device" and not entry.spec.startswith(("/dev/mapper/", "/dev/disk/")):
            info = guest.filesystem(device)
            if info is not None and info.uuid and "/" not in entry.spec.removeprefix("/dev/"):
                new = old.replace(entry.spec, f"UUID={info.uuid}", 1)
                fixes.append({"line": str(number), "problem": f"{entry.spec} is an unstable device name",
                              "before": old, "after": new})
                lines[number - 1] = new
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    plan = Plan("/etc/fstab", {"fstab": text}, {"fstab": new_text, "fixes": fixes})
    if new_text != text:
        plan.edits.append(_write_edit(guest, "/etc/fstab", new_text.encode(), options))
    return plan


def plan_fsck(guest: Guest, options: dict[str, Any]) -> Plan:
    wanted = options.get("device")
    devices = [fs.device for fs in guest.filesystems if fs.type in ("ext2", "ext3", "ext4")]
    if wanted is not None:
        if wanted not in devices:
            raise RepairError(f"options.device {wanted!r} is not an ext filesystem in the image", invalid=True)
        devices = [wanted]
    unplaceable = [d for d in devices if guest.filesystem(d).offset_bytes is None]  # type: ignore[union-attr]
    if unplaceable:
        raise RepairError(f"{', '.join(unplaceable)} are not contiguous in the image; cannot check them")
    if not devices:
        raise RepairError("the image has no ext2/3/4 filesystem to check")
    return Plan(",".join(devices), {}, {}, [Edit("fsck", device=d) for d in devices])


PLANNERS: dict[str, Callable[[Guest, dict[str, Any]], Plan]] = {
    "fsck": plan_fsck, "fstab_repair": plan_fstab_repair, "set_hostname": plan_set_hostname,
    "write_file": plan_write_file, "remove_file": plan_remove_file, "disable_service": plan_disable_service,
    "lock_account": plan_lock_account, "selinux_relabel": plan_selinux_relabel,
}


# -- applying -------------------------------------------------------------------------------------------
def _locate(guest: Guest, path: str, follow: bool) -> tuple[str, str]:
    """(device, path inside that filesystem) of a guest path, its parent always resolved."""
    tree = guest.root_tree()
    pure = PurePosixPath(path)
    parent = tree.resolve(str(pure.parent), follow=True)
    if parent is None:
        raise RepairError(f"the directory of {path} cannot be resolved")
    canonical = str(PurePosixPath(parent) / pure.name)
    if follow:
        resolved = tree.resolve(canonical, follow=True)
        if resolved is None:
            raise RepairError(f"{path} is a dangling or looping symlink")
        canonical = resolved
    fs, inner = tree.locate(canonical)
    return fs.device_name, inner


#: the filesystems fix writes, offline and in userspace (e2fsprogs' debugfs, mtools); XFS and btrfs
#: have no such writer outside libguestfs, and NTFS (with the registry hives on it) none the engine trusts
WRITABLE_FILESYSTEMS = ("ext2", "ext3", "ext4", "vfat")
#: the operation's target path, known before planning (a plan may fail first on a guest it cannot apply to)
def _path_option(options: dict[str, Any]) -> str | None:
    return options.get("path") if isinstance(options.get("path"), str) else None


_TARGETS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "set_hostname": lambda options: "/etc/hostname", "write_file": _path_option, "remove_file": _path_option,
}


def refuse_unwritable(guest: Guest, operation: str, options: dict[str, Any]) -> None:
    """Raise ``UNSUPPORTED_OPERATION`` when ``operation`` would write to a filesystem fix cannot write
    (its target path's, then every path its plan edits): said before anything is written."""
    target = _TARGETS.get(operation, lambda options: None)(options)
    places = [target] if target is not None and target.startswith("/") else []
    try:
        plan = PLANNERS[operation](guest, options)
    except RepairError:
        plan = None  # the operation fails on its own; the run says why, as its policy wants
    places += [edit.path for edit in plan.edits if edit.path] if plan else []  # fsck plans only ext devices
    tree = guest.root_tree()
    for path in places:
        fs, _ = tree.locate(_existing_ancestor(tree, path))
        info = guest.filesystem(fs.device_name)
        kind = info.type if info else "unknown"
        if kind in WRITABLE_FILESYSTEMS:
            continue
        if operation == "set_hostname" and kind == "ntfs":
            message = (f"set_hostname on a Windows guest would change the computer name in its SYSTEM registry "
                       f"hive, on {fs.device_name} (ntfs); fix has no writer for NTFS or registry hives it can "
                       f"trust, so it refuses; nothing was written")
        else:
            message = (f"{operation} would change {path} on {fs.device_name}, which holds {kind}; fix writes only "
                       f"ext2/3/4 and FAT (vfat) filesystems offline, so it refuses; nothing was written")
        raise RepairError(message, code=ErrorCode.UNSUPPORTED_OPERATION,
                          details={"operation": operation, "filesystem": kind, "device": fs.device_name,
                                   "path": path})


def _existing_ancestor(tree: GuestView, path: str) -> str:
    """``path``'s nearest existing directory (itself if it exists), resolved as the guest sees it."""
    current = PurePosixPath(path)
    while True:
        resolved = tree.resolve(str(current), follow=True)
        if resolved is not None and tree.stat(resolved) is not None:
            return resolved
        if current == current.parent:
            return "/"
        current = current.parent


def _writer(guest: Guest, raw_image: str, device: str) -> ExtWriter | FatWriter:
    info = guest.filesystem(device)
    if info is None or info.type not in WRITABLE_FILESYSTEMS:
        kind = info.type if info else "unknown"
        raise RepairError(f"{device} holds {kind}; only ext2/3/4 and FAT filesystems can be modified")
    if info.offset_bytes is None:
        raise RepairError(f"{device} is not one contiguous run in the image; it cannot be modified")
    return FatWriter(raw_image, info.offset_bytes) if info.type == "vfat" else ExtWriter(raw_image, info.offset_bytes)


def _apply_one(guest: Guest, raw_image: str, edit: Edit, fsck: dict[str, Any]) -> str:
    if edit.kind == "fsck":
        writer = _writer(guest, raw_image, edit.device)
        before, _ = writer.fsck(repair=False)
        code, output = writer.fsck(repair=True)
        after, _ = writer.fsck(repair=False)
        fsck[edit.device] = {"errors_before": before != 0, "repair_exit_code": code,
                             "errors_after": after != 0, "output": output.splitlines()[-3:]}
        return edit.device
    device, inner = _locate(guest, edit.path, follow=False)  # a write replaces a link it was allowed to
    writer = _writer(guest, raw_image, device)
    exists = guest.filesystem_tree(device).stat(inner) is not None
    if edit.kind == "write":
        writer.write_file(inner, edit.data, mode=edit.mode, uid=edit.uid, gid=edit.gid, replace=exists)
    elif edit.kind == "remove":
        writer.remove(inner)
    elif edit.kind == "symlink":
        writer.symlink(inner, edit.target, replace=exists)
    elif edit.kind == "mkdir":
        writer.mkdir(inner, mode=edit.mode, uid=edit.uid, gid=edit.gid)
    else:
        raise RepairError(f"unknown edit {edit.kind}")
    return device


def apply_edits(raw_image: str, edits: list[Edit]) -> tuple[set[str], dict[str, Any]]:
    """Carry out ``edits`` on the raw disk image ``raw_image``, re-reading it before each edit.

    Returns the devices modified and, for fsck edits, the e2fsck results per device.
    """
    touched: set[str] = set()
    fsck: dict[str, Any] = {}
    for edit in edits:
        with open_guest(raw_image, "raw") as guest:
            guest.root_tree()
            try:
                touched.add(_apply_one(guest, raw_image, edit, fsck))
            except ExtWriteError as exc:
                raise RepairError(str(exc)) from exc
    return touched, fsck
