"""NTFS file systems the tests build unprivileged, without mounting: ``mkntfs`` on a file, the
directories made through libntfs-3g (the library ntfs-3g's own tools use; ``ntfscp`` copies files
but cannot make a directory), then every file copied in by ``ntfscp``."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
from pathlib import Path

_S_IFDIR = 0o040000


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libntfs-3g.so.89", use_errno=True)
    lib.ntfs_mount.restype = ctypes.c_void_p
    lib.ntfs_mount.argtypes = [ctypes.c_char_p, ctypes.c_ulong]
    lib.ntfs_umount.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.ntfs_pathname_to_inode.restype = ctypes.c_void_p
    lib.ntfs_pathname_to_inode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    lib.ntfs_create.restype = ctypes.c_void_p
    lib.ntfs_create.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint8, ctypes.c_uint32]
    lib.ntfs_inode_close.argtypes = [ctypes.c_void_p]
    return lib


def make_directories(volume_file: Path, directories: list[str]) -> None:
    """Make ``directories`` (``/``-separated, parents listed before children) in the NTFS in ``volume_file``."""
    lib = _library()
    volume = lib.ntfs_mount(os.fsencode(volume_file), 0)
    if not volume:
        raise OSError(ctypes.get_errno(), f"libntfs-3g cannot open {volume_file}")
    try:
        for path in directories:
            parent, _, name = path.strip("/").rpartition("/")
            folder = lib.ntfs_pathname_to_inode(volume, None, ("/" + parent).encode())
            if not folder:
                raise OSError(ctypes.get_errno(), f"no NTFS directory /{parent}")
            try:
                made = lib.ntfs_create(folder, 0, name.encode("utf-16-le"), len(name.encode("utf-16-le")) // 2,
                                       _S_IFDIR)
                if not made:
                    raise OSError(ctypes.get_errno(), f"cannot make the NTFS directory {path}")
                lib.ntfs_inode_close(made)
            finally:
                lib.ntfs_inode_close(folder)
    finally:
        lib.ntfs_umount(volume, 0)


def build_ntfs(volume_file: Path, size: int, label: str, tree: Path | None, *, start_sector: int = 2048) -> str:
    """An NTFS of ``size`` bytes in ``volume_file`` holding a copy of the host directory ``tree``
    (directories and regular files); returns its serial number as the engine reports it (16 hex digits)."""
    with open(volume_file, "wb") as handle:
        handle.truncate(size)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", "-L", label, "-s", "512", "-p", str(start_sector), "-H", "255",
                    "-S", "63", str(volume_file)], check=True, capture_output=True)
    if tree is not None:
        directories, files = [], []
        for base, dirs, names in os.walk(tree):
            relative = os.path.relpath(base, tree)
            for name in sorted(dirs):
                directories.append(os.path.normpath(os.path.join(relative, name)))
            files += [os.path.normpath(os.path.join(relative, name)) for name in sorted(names)]
        make_directories(volume_file, directories)
        for name in files:
            subprocess.run(["ntfscp", "-f", "-q", str(volume_file), str(tree / name), name], check=True,
                           capture_output=True)
    serial = struct.unpack("<Q", volume_file.read_bytes()[72:80])[0]
    return f"{serial:016X}"
