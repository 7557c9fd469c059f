"""The files a job reads and writes where its document says, checked together in one place.

``JobPaths`` resolves every path a payload names inside the allowed directories and refuses an
output that is one of the job's inputs or another of its outputs (by real path and by device and
inode: a ``..``, a symlink or a hard link is the same file), naming both fields
(``VALIDATION_ERROR``), or that exists already unless the operation's overwrite option says
otherwise (``OUTPUT_EXISTS``). Roles are the payload's field names (``target.path``).

``check_room`` refuses (``RESOURCE_LIMIT``) to begin an output that may not fit on its file system
while leaving ``GUESTKIT_OUTPUT_RESERVE_MB`` free there.

``StagedOutput`` writes one output: into a private directory (mode 0700, random name) made
beside the target, opened by descriptor, then ``renameat`` into the target's directory, which is
also held open by descriptor and checked by where it really is. A symlink planted at a guessable
name, or a directory swapped after the check, changes nothing: no path string is resolved twice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path
from types import TracebackType
from typing import Any

from app.plugin.atomic import CREATE_FLAGS, rename_noreplace, write_all
from app.plugin.errors import ErrorCode, JobError
from app.plugin.paths import resolve_allowed, within

MiB = 1024 * 1024


def check_room(needs: dict[Path, int], reserve_mb: int) -> None:
    """Refuse to begin writing unless each output fits: ``needs`` maps each file to be written
    (or its directory) to the bytes it may take; outputs on one file system are counted together,
    and ``reserve_mb`` MiB must stay free there (``RESOURCE_LIMIT`` otherwise, naming the file
    system's free space, what the job wanted and the reserve)."""
    by_device: dict[int, tuple[list[Path], int, int]] = {}
    for path, wanted in needs.items():
        folder = path
        while not folder.is_dir() and folder != folder.parent:  # the directory it will be made in
            folder = folder.parent
        stats = os.statvfs(folder)
        device = folder.stat().st_dev
        paths, total, free = by_device.get(device, ([], 0, stats.f_bavail * stats.f_frsize))
        by_device[device] = ([*paths, path], total + wanted, free)
    for paths, wanted, free in by_device.values():
        room = free - reserve_mb * MiB
        if wanted > room:
            names = ", ".join(str(p) for p in paths)
            raise JobError(ErrorCode.RESOURCE_LIMIT,
                           f"writing {names} may need {wanted} bytes; its file system has {free} bytes free, and "
                           f"GUESTKIT_OUTPUT_RESERVE_MB keeps {reserve_mb} MiB of them free",
                           details={"limit": "GUESTKIT_OUTPUT_RESERVE_MB", "value": reserve_mb, "unit": "MiB",
                                    "wanted": wanted, "free": free, "paths": [str(p) for p in paths]},
                           recoverable=False)


def _refuse(code: ErrorCode, message: str, **details: Any) -> JobError:
    return JobError(code, message, details=details, recoverable=False)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


class JobPaths:
    """Every path one job names: inputs must exist; outputs must be new, distinct and allowed."""

    def __init__(self, allowed_dirs: list[Path], job_id: str) -> None:
        self.allowed_dirs = allowed_dirs
        self.job_id = job_id
        #: real path or (st_dev, st_ino) -> (role, is an output)
        self._taken: dict[Path | tuple[int, int], tuple[str, bool]] = {}

    def _take(self, real: Path, role: str, *, output: bool) -> None:
        keys: list[Path | tuple[int, int]] = [real]
        identity = _identity(real)
        if identity is not None:
            keys.append(identity)
        for key in keys:
            other = self._taken.get(key)
            if other is not None and (output or other[1]):  # two inputs may be one file; nothing else may
                raise _refuse(ErrorCode.VALIDATION_ERROR, f"{role}: {real} is also the job's {other[0]}; "
                              "a job never writes onto a file it reads or writes elsewhere",
                              path=str(real), role=role, other=other[0])
        for key in keys:
            self._taken[key] = (role, output)

    def input(self, path: str | Path, role: str) -> Path:
        real = resolve_allowed(path, self.allowed_dirs)
        self._take(real, role, output=False)
        return real

    def output(self, path: str | Path, role: str, *, overwrite: bool = False,
               overwrite_option: str = "options.overwrite") -> Path:
        real = resolve_allowed(path, self.allowed_dirs, must_exist=False)
        self._take(real, role, output=True)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _refuse(ErrorCode.VALIDATION_ERROR, f"{role}: {real} exists and is not a regular file",
                          path=str(real))
        if st is not None and not overwrite:
            raise _refuse(ErrorCode.OUTPUT_EXISTS, f"{role}: {real} already exists (set {overwrite_option} "
                          "to replace it)", path=str(real), role=role)
        if not real.parent.is_dir():
            raise _refuse(ErrorCode.VALIDATION_ERROR, f"{role}: directory of {real} does not exist",
                          path=str(real))
        return real

    def stage(self, target: Path, *, overwrite: bool = False) -> StagedOutput:
        return StagedOutput(target, self.allowed_dirs, self.job_id, overwrite=overwrite)


class StagedOutput:
    """One output file, written in a private directory and published by ``renameat``."""

    def __init__(self, target: Path, allowed_dirs: list[Path], job_id: str, *, overwrite: bool = False) -> None:
        self.target = target
        self.name = target.name
        self.overwrite = overwrite
        self.dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.private_fd = -1
        try:
            where = Path(os.readlink(f"/proc/self/fd/{self.dir_fd}"))
            if not within(where, allowed_dirs):
                raise _refuse(ErrorCode.PATH_NOT_ALLOWED, f"directory of {target} is now {where}, outside the "
                              "allowed directories", path=str(target), resolved=str(where))
            self.private = f".guestkit-{job_id}-{secrets.token_hex(6)}"
            os.mkdir(self.private, 0o700, dir_fd=self.dir_fd)
            self.private_fd = os.open(self.private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=self.dir_fd)
            st = os.fstat(self.private_fd)
            if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                raise _refuse(ErrorCode.PATH_NOT_ALLOWED, f"private directory beside {target} was replaced",
                              path=str(target))
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        """The staged file's name, inside the directory held open here. A child process (qemu) given
        it must inherit ``private_fd`` (``guestimage.trust.inherited_fds`` sees to that)."""
        return f"/proc/self/fd/{self.private_fd}/{self.name}"

    def write_bytes(self, data: bytes) -> None:
        fd = os.open(self.name, CREATE_FLAGS, 0o644, dir_fd=self.private_fd)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    def copy_from(self, path: str) -> None:
        """The staged file as a copy of the file at ``path`` (streamed, never read whole)."""
        fd = os.open(self.name, CREATE_FLAGS, 0o644, dir_fd=self.private_fd)
        try:
            with open(path, "rb") as source, open(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Move the staged file to its target: fails if the target appeared meanwhile, unless
        ``overwrite`` (then the directory entry is replaced, never followed)."""
        st = os.stat(self.name, dir_fd=self.private_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(ErrorCode.EXECUTION_ERROR, f"staged output for {self.target} is not a regular file")
        if self.overwrite:
            os.rename(self.name, self.name, src_dir_fd=self.private_fd, dst_dir_fd=self.dir_fd)
            return
        try:
            rename_noreplace(self.name, self.name, src_dir_fd=self.private_fd, dst_dir_fd=self.dir_fd)
        except FileExistsError:
            raise _refuse(ErrorCode.OUTPUT_EXISTS, f"{self.target} appeared while the job ran; not replaced",
                          path=str(self.target)) from None

    def close(self) -> None:
        if self.private_fd >= 0:
            for entry in os.listdir(self.private_fd):
                os.unlink(entry, dir_fd=self.private_fd)
            os.close(self.private_fd)
            self.private_fd = -1
            os.rmdir(self.private, dir_fd=self.dir_fd)
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
