"""Image format facts from ``qemu-img info --output=json``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .errors import not_found, unsupported

SUPPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vdi")


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
    details: dict[str, Any] = field(default_factory=dict)


def _external_files(path: str, info: dict[str, Any]) -> list[str]:
    """Files other than the image itself that qemu would open (vmdk extents, qcow2 data files)."""
    own = os.path.realpath(path)
    found: list[str] = []
    specific = (info.get("format-specific") or {}).get("data") or {}
    for extent in specific.get("extents") or []:
        name = extent.get("filename")
        if name and os.path.realpath(name) != own:
            found.append(name)
    data_file = specific.get("data-file")
    if data_file:
        found.append(data_file)
    return found


def _compressed(path: str, fmt: str, info: dict[str, Any]) -> bool:
    specific = (info.get("format-specific") or {}).get("data") or {}
    if fmt == "vmdk":
        if specific.get("create-type") == "streamOptimized":
            return True
        return any(e.get("compressed") for e in specific.get("extents") or [])
    if fmt == "qcow2":
        return _qcow2_has_compressed_clusters(path)
    return False


def _qcow2_has_compressed_clusters(path: str) -> bool:
    """True if ``qemu-img check`` reports compressed clusters (cheap: metadata only)."""
    try:
        proc = subprocess.run(["qemu-img", "check", "--output=json", "-f", "qcow2", path],
                              capture_output=True, timeout=60, check=False)
        data = json.loads(proc.stdout or b"{}")
    except (subprocess.TimeoutExpired, ValueError):
        return False
    return int(data.get("compressed-clusters", 0)) > 0


def image_info(path: str, fmt: str | None = None, timeout: float = 60.0) -> ImageInfo:
    """Format, sizes, backing file and snapshots of an image; UNSUPPORTED_IMAGE if qemu cannot read it."""
    if not os.path.exists(path):
        raise not_found(path)
    if not os.path.isfile(path):
        raise unsupported(f"{path} is not a regular file", path=path)
    if shutil.which("qemu-img") is None:
        raise unsupported("qemu-img is not installed", path=path)
    command = ["qemu-img", "info", "--output=json", "-U"]
    if fmt:
        command += ["-f", fmt]
    command.append(path)
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise unsupported("qemu-img info timed out", path=path) from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()[:500]
        raise unsupported(f"qemu-img cannot read the image: {message}", path=path, format=fmt)
    try:
        info = json.loads(proc.stdout)
    except ValueError as exc:
        raise unsupported("qemu-img info output is not JSON", path=path) from exc
    found = info.get("format", "")
    if found not in SUPPORTED_FORMATS:
        raise unsupported(f"image format {found!r} is not supported", path=path, format=found,
                          supported=list(SUPPORTED_FORMATS))
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return ImageInfo(
        path=path,
        format=found,
        virtual_size=int(info.get("virtual-size", 0)),
        actual_size=int(info.get("actual-size", 0)),
        compressed=_compressed(path, found, info),
        has_backing_file=backing is not None,
        snapshots=list(info.get("snapshots") or []),
        backing_file=backing,
        external_files=_external_files(path, info),
        details={k: v for k, v in info.items() if k in ("cluster-size", "dirty-flag", "format-specific")},
    )
