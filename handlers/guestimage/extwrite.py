"""Offline edits of an ext2/3/4 filesystem inside a raw image, with debugfs and e2fsck (unprivileged).

debugfs exits 0 even when a command fails, so its stderr is checked; ``write`` copies the host
file's owner, so each write is followed by ``sif`` for uid, gid and mode.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path, PurePosixPath


class ExtWriteError(Exception):
    """A debugfs or e2fsck step failed."""


def _quote(path: str) -> str:
    if any(ch in path for ch in '"\n\r\0') or any(ord(ch) < 32 for ch in path):
        raise ExtWriteError(f"path {path!r} contains characters debugfs cannot take")
    return f'"{path}"'


class ExtWriter:
    """Edits the ext filesystem at byte ``offset`` of the raw image ``image``."""

    def __init__(self, image: str | Path, offset: int, timeout: float = 300.0) -> None:
        self.image = os.fspath(image)
        self.offset = offset
        self.timeout = timeout

    @property
    def _device(self) -> str:
        return f"{self.image}?offset={self.offset}"

    def run(self, commands: list[str]) -> str:
        """Run debugfs -w with ``commands``; raise ExtWriteError if any of them reported an error."""
        script = "".join(command + "\n" for command in commands)
        proc = subprocess.run(["debugfs", "-w", "-f", "-", self._device], input=script.encode(),
                              capture_output=True, timeout=self.timeout, check=False)
        errors = [line for line in proc.stderr.decode(errors="replace").splitlines()
                  if line.strip() and not line.startswith("debugfs ")]
        if proc.returncode != 0 or errors:
            raise ExtWriteError("debugfs: " + ("; ".join(errors) or f"exit code {proc.returncode}"))
        return proc.stdout.decode(errors="replace")

    def write_file(self, path: str, data: bytes, *, mode: int, uid: int, gid: int, replace: bool) -> None:
        target = PurePosixPath(path)
        with tempfile.NamedTemporaryFile(prefix="guestkit-write-", delete=False) as handle:
            handle.write(data)
            host = handle.name
        try:
            commands = [f"cd {_quote(str(target.parent))}"]
            if replace:
                commands.append(f"rm {_quote(target.name)}")
            commands += [
                f"write {_quote(host)} {_quote(target.name)}",
                f"sif {_quote(path)} mode 0{0o100000 | (mode & 0o7777):o}",
                f"sif {_quote(path)} uid {uid}",
                f"sif {_quote(path)} gid {gid}",
            ]
            self.run(commands)
        finally:
            os.unlink(host)

    def remove(self, path: str) -> None:
        self.run([f"rm {_quote(path)}"])

    def symlink(self, path: str, target: str, *, replace: bool = False) -> None:
        commands = [f"rm {_quote(path)}"] if replace else []
        self.run(commands + [f"symlink {_quote(path)} {_quote(target)}"])

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.run([f"mkdir {_quote(path)}", f"sif {_quote(path)} mode 0{0o040000 | (mode & 0o7777):o}",
                  f"sif {_quote(path)} uid {uid}", f"sif {_quote(path)} gid {gid}"])

    def fsck(self, *, repair: bool) -> tuple[int, str]:
        """e2fsck -f with -y (repair) or -n (check only): (exit code, output tail)."""
        proc = subprocess.run(["e2fsck", "-f", "-y" if repair else "-n", self._device], capture_output=True,
                              timeout=self.timeout, check=False)
        output = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        if proc.returncode >= 8:
            raise ExtWriteError(f"e2fsck could not run (exit {proc.returncode}): {output[-500:]}")
        return proc.returncode, output[-2000:]


class FatWriter:
    """Edits the FAT filesystem at byte ``offset`` of the raw image with mtools (no owners or modes on FAT)."""

    def __init__(self, image: str | Path, offset: int, timeout: float = 300.0) -> None:
        self.target = f"{os.fspath(image)}@@{offset}"
        self.timeout = timeout

    def _run(self, command: list[str]) -> None:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0")
        proc = subprocess.run(command, capture_output=True, timeout=self.timeout, check=False, env=env)
        if proc.returncode != 0:
            raise ExtWriteError(f"{command[0]}: {proc.stderr.decode(errors='replace').strip()[:500]}")

    def write_file(self, path: str, data: bytes, *, mode: int, uid: int, gid: int, replace: bool) -> None:
        del mode, uid, gid, replace
        with tempfile.NamedTemporaryFile(prefix="guestkit-write-", delete=False) as handle:
            handle.write(data)
            host = handle.name
        try:
            self._run(["mcopy", "-o", "-i", self.target, host, f"::{path}"])
        finally:
            os.unlink(host)

    def remove(self, path: str) -> None:
        self._run(["mdel", "-i", self.target, f"::{path}"])

    def symlink(self, path: str, target: str, *, replace: bool = False) -> None:
        raise ExtWriteError(f"FAT has no symlinks ({path} -> {target})")

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        del mode, uid, gid
        self._run(["mmd", "-i", self.target, f"::{path}"])

    def fsck(self, *, repair: bool) -> tuple[int, str]:
        del repair
        return 0, "FAT filesystems are not checked (fsck.fat cannot address a filesystem inside a disk image)"
