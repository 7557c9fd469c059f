"""What a disk image may make qemu open: the one place that decides, before qemu touches the file.

An image names other files: a backing file (qcow2, vmdk), an external data file (qcow2), the
extents of a vmdk descriptor. Each name may be a plain path, a ``json:{…}`` pseudo-filename or a
protocol (``nbd:``, ``file:``, ``blkdebug:``…) that qemu would follow. Here every member is opened
once by this process (``O_NOFOLLOW``), checked by where the opened descriptor really is, and qemu
is then given a ``json:`` filename that names only those descriptors (``/proc/PID/fd/N``), with
``backing`` and ``data-file`` stated explicitly: qemu opens nothing the image names itself, and a
file swapped after the check changes nothing.

Probing opens no backing file either: each member is read by ``qemu-img info -U`` with its
backing set to ``null`` and its data file to qemu's ``null-co`` driver, and the names it reports
are judged here. Every refusal is ``IMAGE_NOT_ALLOWED`` naming the member and why: a protocol or
pseudo-filename, a member outside the allowed directories (after resolving symlinks), a backing
chain deeper than ``max_chain_depth`` (``GUESTKIT_MAX_CHAIN_DEPTH``, 0 = no backing file at all),
or a file whose format is not the one the job named.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.plugin.errors import ErrorCode, JobError
from app.plugin.paths import within

from .errors import not_found, unsupported

SUPPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vdi")
#: formats whose qemu driver takes a ``backing`` option (the others cannot have one)
_BACKING_FORMATS = ("qcow2", "vmdk")
#: "json:", "nbd:", "file:", "blkdebug:", "http:" … — anything qemu reads as a protocol prefix
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+._-]*:")
_VMDK_EXTENT = re.compile(r'^(?P<head>\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+)"(?P<name>[^"]*)"(?P<tail>.*)$')
_MAX_DESCRIPTOR = 64 * 1024
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2


@dataclass(frozen=True)
class ImagePolicy:
    """What an image may make qemu open: files inside ``allowed_dirs`` only (the image, its vmdk
    extents and qcow2 data file), and at most ``max_chain_depth`` backing files below it."""

    allowed_dirs: tuple[Path, ...]
    max_chain_depth: int = 0


@dataclass
class ImageInfo:
    path: str
    format: str
    virtual_size: int
    actual_size: int
    compressed: bool = False
    has_backing_file: bool = False
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    backing_file: str | None = None
    external_files: list[str] = field(default_factory=list)
    #: every file the image reads, the image first: (real path, role)
    chain: list[dict[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Member:
    real: str
    fd: int
    format: str
    role: str
    backing: _Member | None = None
    data_file: int | None = None


_FD_PATH = re.compile(r"/proc/self/fd/(\d+)")


def fd_path(fd: int) -> str:
    """A name for an open descriptor: the same file, always. A child process (qemu) given this
    name must inherit the descriptor: ``inherited_fds`` of its command."""
    return f"/proc/self/fd/{fd}"


def inherited_fds(command: list[str]) -> tuple[int, ...]:
    """The descriptors a command names by ``fd_path``, for ``subprocess``'s ``pass_fds``."""
    return tuple(sorted({int(n) for arg in command for n in _FD_PATH.findall(arg)}))


def refused(message: str, **details: Any) -> JobError:
    """The gate's refusal: ``IMAGE_NOT_ALLOWED``, with the member and the reason in ``details``."""
    return JobError(ErrorCode.IMAGE_NOT_ALLOWED, message, details=details, recoverable=False)


def open_checked(path: str, policy: ImagePolicy, *, role: str, owner: str | None = None) -> tuple[int, str]:
    """Open ``path`` read-only without following a final symlink; (fd, real path) once the opened
    file is known to be a regular file inside the allowed directories. ``owner``: the image that
    names this file (None for the image the job names)."""
    what = f"{owner} names a {role} {path}, which" if owner else f"{role} {path}"
    details: dict[str, Any] = {"path": path, "role": role, **({"image": owner} if owner else {})}
    try:
        fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        if owner:
            raise JobError(ErrorCode.IMAGE_NOT_FOUND, f"{what} does not exist", details=details,
                           recoverable=False) from None
        raise not_found(path) from None
    except OSError as exc:
        raise refused(f"{what} cannot be opened: {exc.strerror}", **details) from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not within(Path(real), list(policy.allowed_dirs)):
            roots = [os.path.realpath(d) for d in policy.allowed_dirs]
            raise refused(f"{what} is {real}, outside the allowed directories "
                          f"{', '.join(map(str, roots)) or '(none)'}", resolved=real, **details)
        if not os.path.isfile(f"/proc/self/fd/{fd}"):
            raise unsupported(f"{what} is not a regular file", **details)
    except BaseException:
        os.close(fd)
        raise
    return fd, real


def _check_name(name: str, owner: str, role: str) -> str:
    """The path an image's reference ``name`` stands for, resolved beside ``owner`` as qemu would;
    refused when it is a pseudo-filename or a protocol."""
    if not name or "\x00" in name or _PROTOCOL.match(name):
        raise refused(f"{owner} names a {role} {name!r} that is a protocol or json: pseudo-filename; "
                      "only plain files are ever opened", image=owner, role=role, name=name)
    return os.path.join(os.path.dirname(owner), name)


def detect_format(fd: int) -> str:
    """The format qemu would probe, from the magic bytes (raw when none matches)."""
    head = os.pread(fd, 512, 0)
    if head.startswith(_QCOW2_MAGIC):
        return "qcow2"
    if head.startswith((b"KDMV", b"COWD")) or (b"\x00" not in head and b"createType=" in head):
        return "vmdk"  # a sparse extent, or a text descriptor
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    return "raw"


def _qcow2_has_data_file(fd: int) -> bool:
    head = os.pread(fd, 80, 0)
    if len(head) < 80 or not head.startswith(_QCOW2_MAGIC) or int.from_bytes(head[4:8], "big") < 3:
        return False
    return bool(int.from_bytes(head[72:80], "big") & _QCOW2_INCOMPAT_DATA_FILE)


def _qcow2_has_compressed_clusters(qemu_name: str) -> bool:
    """True if ``qemu-img check`` reports compressed clusters (metadata only; the name is pinned,
    so no file the image names is opened)."""
    try:
        command = ["qemu-img", "check", "-U", "--output=json", qemu_name]
        proc = subprocess.run(command, capture_output=True, timeout=60, check=False,
                              pass_fds=inherited_fds(command))
        data = json.loads(proc.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError):
        return False
    return int(data.get("compressed-clusters", 0)) > 0


class PinnedImage:
    """An image with every file it reads opened here; ``qemu_name`` is what qemu is given."""

    def __init__(self, policy: ImagePolicy) -> None:
        self.policy = policy
        self._fds: list[int] = []
        self._scratch: str | None = None
        self.top: _Member | None = None
        self.info: ImageInfo | None = None
        #: every file opened for the image, in order: {"path": real path, "role": ...}
        self.opened: list[dict[str, str]] = []

    # -- building ---------------------------------------------------------------------------------
    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _open(self, path: str, role: str, owner: str | None = None) -> tuple[int, str]:
        fd, real = open_checked(path, self.policy, role=role, owner=owner)
        self.opened.append({"path": real, "role": role})
        return self._keep(fd), real

    def add_member(self, path: str, fmt: str | None, role: str, depth: int = 0,
                   owner: str | None = None) -> _Member:
        """Open, check and probe one member, then the files it names, depth first."""
        fd, real = self._open(path, role, owner)
        found = detect_format(fd)
        if fmt is not None and fmt != found:
            raise refused(f"{role} {path} is a {found} image, not the {fmt} the job names; it is not opened "
                          "as another format", path=path, named_format=fmt, found_format=found, role=role)
        if found not in SUPPORTED_FORMATS:
            raise unsupported(f"image format {found!r} is not supported", path=path, format=found,
                              supported=list(SUPPORTED_FORMATS))
        member = _Member(real=real, fd=fd, format=found, role=role)
        if found == "vmdk" and not os.pread(fd, 4, 0).startswith((b"KDMV", b"COWD")):
            member.fd = self._pin_vmdk_extents(member)
        info = self._probe(member, data_file_null=found == "qcow2" and _qcow2_has_data_file(fd))
        if depth == 0:
            self.info = self._image_info(path, member, info)
        data_file = ((info.get("format-specific") or {}).get("data") or {}).get("data-file")
        if data_file:
            member.data_file, _ = self._open(_check_name(data_file, real, "data file"), "data file", real)
        backing = info.get("backing-filename")
        if backing:
            target = _check_name(backing, real, "backing file")
            if depth + 1 > self.policy.max_chain_depth:
                limit = self.policy.max_chain_depth
                raise refused(f"{real} has a backing file {backing!r}: chains of more than {limit} backing "
                              f"file(s) are refused (GUESTKIT_MAX_CHAIN_DEPTH={limit})",
                              image=real, backing_file=backing, max_chain_depth=limit)
            member.backing = self.add_member(target, info.get("backing-filename-format"), "backing file",
                                             depth + 1, owner=real)
        return member

    def _pin_vmdk_extents(self, member: _Member) -> int:
        """A private copy of a vmdk descriptor whose extents name descriptors opened here."""
        text = os.pread(member.fd, _MAX_DESCRIPTOR + 1, 0)
        if len(text) > _MAX_DESCRIPTOR or b"\x00" in text:
            raise unsupported(f"{member.real} is not a vmdk descriptor of at most {_MAX_DESCRIPTOR} bytes",
                              path=member.real)
        lines = []
        for line in text.decode(errors="replace").splitlines():
            match = _VMDK_EXTENT.match(line)
            if match:
                target = _check_name(match["name"], member.real, "vmdk extent")
                fd, _real = self._open(target, "vmdk extent", member.real)
                line = f'{match["head"]}"{fd_path(fd)}"{match["tail"]}'
            lines.append(line)
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="guestkit-vmdk-")
        copy = os.path.join(self._scratch, f"{member.fd}.vmdk")
        fd = os.open(copy, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.write(fd, ("\n".join(lines) + "\n").encode())
        return self._keep(fd)

    def _spec(self, member: _Member, *, data_file_null: bool = False, probe: bool = False) -> dict[str, Any]:
        spec: dict[str, Any] = {"driver": member.format,
                                "file": {"driver": "file", "filename": fd_path(member.fd), "locking": "off"}}
        if member.format in _BACKING_FORMATS:
            spec["backing"] = None if probe or member.backing is None else self._spec(member.backing)
        if member.data_file is not None:
            spec["data-file"] = {"driver": "file", "filename": fd_path(member.data_file), "locking": "off"}
        elif data_file_null:
            spec["data-file"] = {"driver": "null-co"}
        return spec

    def _probe(self, member: _Member, *, data_file_null: bool) -> dict[str, Any]:
        if shutil.which("qemu-img") is None:
            raise unsupported("qemu-img is not installed", path=member.real)
        name = "json:" + json.dumps(self._spec(member, data_file_null=data_file_null, probe=True))
        try:
            command = ["qemu-img", "info", "-U", "--output=json", name]
            proc = subprocess.run(command, capture_output=True, timeout=60, check=False,
                                  pass_fds=inherited_fds(command))
        except subprocess.TimeoutExpired as exc:
            raise unsupported("qemu-img info timed out", path=member.real) from exc
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().replace(name, member.real)[:500]
            raise unsupported(f"qemu-img cannot read the image as {member.format}: {message}",
                              path=member.real, format=member.format)
        try:
            info = json.loads(proc.stdout)
        except ValueError as exc:
            raise unsupported("qemu-img info output is not JSON", path=member.real) from exc
        pinned = {fd_path(fd) for fd in self._fds}
        extents = ((info.get("format-specific") or {}).get("data") or {}).get("extents") or []
        strays = [e.get("filename") for e in extents if e.get("filename") not in pinned]
        if strays:
            raise refused(f"{member.real} makes qemu open files that were not checked: {strays}",
                          image=member.real, files=strays)
        return info

    def _image_info(self, path: str, member: _Member, info: dict[str, Any]) -> ImageInfo:
        specific = (info.get("format-specific") or {}).get("data") or {}
        compressed = member.format == "vmdk" and (
            specific.get("create-type") == "streamOptimized"
            or any(e.get("compressed") for e in specific.get("extents") or []))
        extents = [e.get("filename") for e in specific.get("extents") or []
                   if e.get("filename") != fd_path(member.fd)]
        external = [*extents, *([specific["data-file"]] if specific.get("data-file") else [])]
        return ImageInfo(
            path=os.fspath(path), format=member.format,
            virtual_size=int(info.get("virtual-size", 0)), actual_size=int(info.get("actual-size", 0)),
            compressed=compressed, has_backing_file=bool(info.get("backing-filename")),
            snapshots=list(info.get("snapshots") or []), backing_file=info.get("backing-filename"),
            external_files=external,
            details={k: v for k, v in info.items() if k in ("cluster-size", "dirty-flag")},
        )

    # -- using --------------------------------------------------------------------------------------
    @property
    def qemu_name(self) -> str:
        """The ``json:`` filename that makes qemu read exactly the checked descriptors."""
        assert self.top is not None
        return "json:" + json.dumps(self._spec(self.top))

    @property
    def raw_path(self) -> str:
        """The top image as a path to the opened descriptor (for reading a raw image directly)."""
        assert self.top is not None
        return fd_path(self.top.fd)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


@contextmanager
def pinned_image(path: str | os.PathLike[str], fmt: str | None, policy: ImagePolicy) -> Iterator[PinnedImage]:
    """Check ``path`` and everything it names under ``policy``; the opened image while in use.

    Raises PATH_NOT_ALLOWED for a refused member, IMAGE_NOT_FOUND, UNSUPPORTED_IMAGE.
    """
    text = os.fspath(path)
    if _PROTOCOL.match(text) and not os.path.isabs(text):
        raise refused(f"image path {text!r} is a protocol or json: pseudo-filename", path=text)
    if not os.path.lexists(text):
        raise not_found(text)
    image = PinnedImage(policy)
    try:
        try:
            image.top = image.add_member(text, fmt, "image")
        except JobError as exc:  # a member deeper in the chain: say which image of the job it belongs to
            if text in exc.message:
                raise
            raise JobError(exc.code, f"{text}: {exc.message}", details={**exc.details, "job_image": text},
                           recoverable=False) from None
        assert image.info is not None
        image.info.chain = list(image.opened)
        if image.info.format == "qcow2":
            image.info.compressed = _qcow2_has_compressed_clusters(image.qemu_name)
        yield image
    finally:
        image.close()
