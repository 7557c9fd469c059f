"""Writing a file so that readers see the old content or the new one, never half of it, and never
through a symlink planted where the temporary file goes."""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
from pathlib import Path

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)
#: flags of every file this platform creates: a new file, never an existing one or a symlink
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = False,
                 dir_fd: int | None = None) -> None:
    """Write ``data`` to a new temporary file beside ``path`` and rename it over ``path``.

    The directory is opened once (or is ``dir_fd``, an open directory, when ``path`` is a name in
    it) and both steps are made relative to it, so a directory swapped meanwhile changes nothing;
    the temporary name is random and created with ``O_EXCL|O_NOFOLLOW``; a symlink at ``path``
    itself is replaced, never followed. ``durable`` also fsyncs the file before the rename (slower;
    for results).
    """
    if dir_fd is not None:
        _write_atomic_at(dir_fd, os.fspath(path), data, durable)
        return
    path = Path(path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_atomic_at(directory, path.name, data, durable)
    finally:
        os.close(directory)


def _write_atomic_at(directory: int, name: str, data: bytes, durable: bool) -> None:
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, CREATE_FLAGS, 0o644, dir_fd=directory)
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=directory)
        raise
    os.close(fd)
    os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                     src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    """``renameat2(RENAME_NOREPLACE)``: move ``src`` to ``dst`` (each relative to an open directory
    when its ``*_dir_fd`` is given), failing with ``FileExistsError`` instead of replacing ``dst``."""
    src_fd = _AT_FDCWD if src_dir_fd is None else src_dir_fd
    dst_fd = _AT_FDCWD if dst_dir_fd is None else dst_dir_fd
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), os.fspath(dst))
        if code not in (errno.EINVAL, errno.ENOSYS):  # not supported by this filesystem: fall back
            raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst))
    try:
        os.stat(dst, dir_fd=dst_dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
