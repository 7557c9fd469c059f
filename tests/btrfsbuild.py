"""btrfs filesystems for the tests, with the sha256 of every file they hold.

``mkfs.btrfs --rootdir`` packs a tree unprivileged (bookworm's btrfs-progs 6.2 has no ``--subvol``
nor compression there); subvolumes, a default subvolume, compressed extents (zlib, lzo, zstd) and
preallocated ranges are written through the kernel, on a loop mount, where the machine allows it
(root and the btrfs module: this project's CI machine). ``btrfs restore`` reads the same file as an
independent reader."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.brokers import skip_or_fail

MiB = 1024 * 1024


def _run(*command: str) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def digests(root: Path) -> dict[str, str]:
    """'/path' -> sha256 of each regular file below ``root`` (symlinks as 'link:target', never followed:
    a test's link may name a path too long to resolve)."""
    found: dict[str, str] = {}

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            name = f"{prefix}/{entry.name}"
            if entry.is_symlink():
                found[name] = "link:" + os.readlink(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                walk(entry.path, name)
            elif entry.is_file(follow_symlinks=False):
                found[name] = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()

    walk(str(root), "")
    return found


def mkfs_rootdir(image: Path, tree: Path, size: int = 128 * MiB, label: str = "packed", shrink: bool = False) -> None:
    """A btrfs of ``tree`` packed unprivileged (single top-level subvolume, no compression); ``shrink``:
    the image cut to what the filesystem uses."""
    with open(image, "wb") as handle:
        handle.truncate(size)
    _run("mkfs.btrfs", "-q", "-f", "-L", label, *(["--shrink"] if shrink else []), "--rootdir", str(tree), str(image))


@functools.cache
def loop_mounts_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as scratch:
        image, point = Path(scratch) / "probe.img", Path(scratch) / "mnt"
        point.mkdir()
        with open(image, "wb") as handle:
            handle.truncate(128 * MiB)
        try:
            _run("mkfs.btrfs", "-q", str(image))
            _run("mount", "-o", "loop", str(image), str(point))
        except RuntimeError:
            return False
        _run("umount", str(point))
    return True


def need_loop_mounts() -> None:
    """Skip (fail in CI) where the kernel cannot write the filesystem for the test."""
    if not loop_mounts_work():
        skip_or_fail("these btrfs tests need root and loop mounts of btrfs to write subvolumes and "
                     "compressed extents (CI has both)")


@contextmanager
def mounted(image: Path, size: int = 256 * MiB, label: str = "guest", options: str = "",
            mkfs_args: tuple[str, ...] = ()) -> Iterator[Path]:
    """A new btrfs in ``image``, loop-mounted (``options`` such as ``compress=zstd``) while the block runs."""
    with open(image, "wb") as handle:
        handle.truncate(size)
    _run("mkfs.btrfs", "-q", "-f", "-L", label, *mkfs_args, str(image))
    point = Path(tempfile.mkdtemp(prefix="btrfs-mnt-"))
    _run("mount", "-o", ",".join(filter(None, ["loop", options])), str(image), str(point))
    try:
        yield point
    finally:
        _run("umount", str(point))
        point.rmdir()


def subvolume(point: Path, path: str) -> Path:
    _run("btrfs", "subvolume", "create", str(point / path))
    return point / path


def subvolume_id(point: Path, path: str) -> int:
    out = _run("btrfs", "subvolume", "show", str(point / path))
    return int(next(line.split(":", 1)[1] for line in out.splitlines() if line.strip().startswith("Subvolume ID")))


def set_default(point: Path, path: str) -> None:
    _run("btrfs", "subvolume", "set-default", str(point / path))


def restore(image: Path, tree_id: int, dest: Path) -> dict[str, str]:
    """The digests of subvolume ``tree_id`` as ``btrfs restore`` recovers it (an independent reader)."""
    dest.mkdir(parents=True, exist_ok=True)
    _run("btrfs", "restore", "-S", "-r", str(tree_id), str(image), str(dest))
    return digests(dest)


def file_bytes(kind: str, size: int, seed: int = 0) -> bytes:
    """Content that compresses (``text``) or does not (``random``)."""
    if kind == "random":
        return hashlib.shake_256(f"{seed}".encode()).digest(size)
    line = f"line {seed} of a file that compresses well, as configuration and logs do\n".encode()
    return (line * (size // len(line) + 1))[:size]


def move_into(source: Path, dest: Path) -> None:
    """Move the contents of ``source`` into the directory ``dest`` (a subvolume created in its place)."""
    for child in list(source.iterdir()) if source.exists() else []:
        shutil.move(str(child), str(dest / child.name))


SNAPPER_INFO = """<?xml version="1.0"?>
<snapshot>
  <type>single</type>
  <num>1</num>
  <date>2026-11-30 09:12:44</date>
  <description>first root filesystem</description>
</snapshot>
"""


def btrfs_guest(tree: Path, out: Path, kind: str, fmt: str = "raw") -> dict[str, object]:
    """A disk (MBR, /dev/sda1 btrfs) holding the root ``tree`` laid out as openSUSE (``suse``: root in
    the snapper snapshot ``@/.snapshots/1/snapshot``, the default subvolume; ``@/home``, ``@/var``) or
    Fedora (``fedora``: subvolumes ``root`` and ``home``, zstd-compressed, the top level the default)
    does it, fstab written to match. Returns the filesystem's UUID, the subvolume paths and the fstab."""
    from tests.imagebuild import _sfdisk, _uuid, convert_raw, copy_into

    fs_uuid = _uuid(f"{out.name}/btrfs")
    fs_image = out.with_name(out.name + ".btrfs")
    staged = Path(tempfile.mkdtemp(prefix="btrfs-tree-", dir=out.parent))
    shutil.copytree(tree, staged / "root", symlinks=True)
    root_tree = staged / "root"
    if kind == "suse":
        layout = {"/": "@/.snapshots/1/snapshot", "/home": "@/home", "/var": "@/var", "/.snapshots": "@/.snapshots"}
        options, default = "", "@/.snapshots/1/snapshot"
        fstab = [f"UUID={fs_uuid}  /  btrfs  defaults  0  0"] + [
            f"UUID={fs_uuid}  {point}  btrfs  subvol=/{path}  0  0" for point, path in layout.items() if point != "/"]
    else:
        layout = {"/": "root", "/home": "home"}
        options, default = "compress=zstd:1", ""
        fstab = [f"UUID={fs_uuid}  {point}  btrfs  subvol={path},compress=zstd:1  0  0"
                 for point, path in layout.items()]
    fstab_text = "# /etc/fstab: written by tests/btrfsbuild.py\n" + "\n".join(fstab) + "\n"
    (root_tree / "etc").mkdir(parents=True, exist_ok=True)
    (root_tree / "etc" / "fstab").unlink(missing_ok=True)
    (root_tree / "etc" / "fstab").write_text(fstab_text)
    with mounted(fs_image, label="guestroot", options=options, mkfs_args=("-U", fs_uuid)) as point:
        made: dict[str, Path] = {}
        for path in sorted(set(layout.values()) | ({"@"} if kind == "suse" else set()), key=lambda p: p.count("/")):
            if kind == "suse" and path == "@/.snapshots/1/snapshot":
                (point / "@/.snapshots/1").mkdir(parents=True, exist_ok=True)
            made[path] = subvolume(point, path)
        # the root's contents, then each other mount's contents moved into its subvolume
        root_dir = made[layout["/"]]
        for mountpoint, path in sorted(layout.items(), key=lambda kv: -kv[0].count("/")):
            if mountpoint != "/":
                move_into(root_tree / mountpoint.lstrip("/"), made[path])
                shutil.rmtree(root_tree / mountpoint.lstrip("/"), ignore_errors=True)
        subprocess.run(["cp", "-a", f"{root_tree}/.", str(root_dir)], check=True)
        for mountpoint in layout:
            (root_dir / mountpoint.lstrip("/")).mkdir(exist_ok=True)
        if kind == "suse":  # snapper's description of the snapshot the root is
            (point / "@/.snapshots/1/info.xml").write_text(SNAPPER_INFO)
        if default:
            set_default(point, default)
        ids = {path: subvolume_id(point, path) for path in made}
    shutil.rmtree(staged)
    size = fs_image.stat().st_size
    raw = out if fmt == "raw" else out.with_name(out.name + ".raw")
    with open(raw, "wb") as handle:
        handle.truncate(MiB + size + MiB)
    _sfdisk(raw, f"label: dos\nstart=2048, size={size // 512}, type=83\n")
    copy_into(raw, fs_image, [(0, size, MiB)])
    fs_image.unlink()
    if fmt != "raw":
        convert_raw(raw, out, fmt)
        raw.unlink()
    return {"uuid": fs_uuid, "subvolumes": ids, "layout": layout, "fstab": fstab_text}
