"""qemu-img convert / compare as cancellable child processes with progress."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from app.plugin.errors import ErrorCode, JobError

from .trust import inherited_fds

_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
#: formats with a compressed variant and the qemu-img options that produce it
COMPRESSION_OPTIONS: dict[str, list[str]] = {"qcow2": ["-c"], "vmdk": ["-o", "subformat=streamOptimized"]}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_cancellable(command: list[str], *, progress: Callable[[float], None] | None = None,
                    cancelled: Callable[[], bool] | None = None, poll: float = 0.2) -> tuple[int, str, str]:
    """Run ``command`` in its own process group; kill it if ``cancelled()`` turns true.

    Returns (exit code, stdout, stderr), each text capped. Percentages printed as ``(12.34/100%)``
    go to ``progress``. Raises ``JobError(CANCELLED)`` after killing the child.
    """
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=inherited_fds(command))
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    captured = {out_fd: bytearray(), err_fd: bytearray()}
    open_fds = {out_fd, err_fd}
    last = -1.0
    try:
        while open_fds:
            if cancelled is not None and cancelled():
                _kill(proc)
                raise JobError(ErrorCode.CANCELLED, "cancelled while running " + os.path.basename(command[0]),
                               recoverable=False)
            ready, _, _ = select.select(list(open_fds), [], [], poll)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                    continue
                if fd == out_fd:
                    for match in _PERCENT.finditer(chunk):
                        value = float(match.group(1))
                        if progress is not None and value > last:
                            last = value
                            progress(value)
                    chunk = _PERCENT.sub(b"", chunk)
                captured[fd] += chunk[: max(0, 20000 - len(captured[fd]))]
        code = proc.wait()
    except BaseException:
        if proc.poll() is None:
            _kill(proc)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, captured[out_fd].decode(errors="replace"), captured[err_fd].decode(errors="replace")


def _format_args(flag: str, name: str | Path, fmt: str) -> list[str]:
    """``-f FMT`` for a plain path; nothing for a pinned ``json:`` name, whose driver says it."""
    return [] if os.fspath(name).startswith("json:") else [flag, fmt]


def convert_image(source: str | Path, source_format: str, target: str | Path, target_format: str, *,
                  compress: bool = False, sparse: bool = True,
                  progress: Callable[[float], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> None:
    """``qemu-img convert`` source → target. Raises JobError(EXECUTION_ERROR) on failure."""
    command = ["qemu-img", "convert", "-p", *_format_args("-f", source, source_format), "-O", target_format]
    if compress and target_format in COMPRESSION_OPTIONS:
        command += COMPRESSION_OPTIONS[target_format]
    if not sparse:
        command += ["-S", "0"]
    command += [os.fspath(source), os.fspath(target)]
    code, _out, err = run_cancellable(command, progress=progress, cancelled=cancelled)
    if code != 0:
        raise JobError(ErrorCode.EXECUTION_ERROR, f"qemu-img convert failed: {err.strip()[:500]}",
                       details={"command": command, "exit_code": code}, recoverable=False)


def measure_image(source: str | Path, source_format: str, target_format: str, *, sparse: bool = True) -> int:
    """Bytes a conversion of ``source`` to ``target_format`` may take on disk (``qemu-img measure``'s
    required size): a raw target written without holes takes its whole virtual size; any other
    target (a sparse raw file, or a format qemu-img cannot measure: vmdk, vhdx, vdi) is measured as
    qcow2, which allocates what the source holds, as they do."""
    measured = "raw" if target_format == "raw" and not sparse else "qcow2"
    command = ["qemu-img", "measure", "--output=json", *_format_args("-f", source, source_format), "-O", measured,
               os.fspath(source)]
    code, out, err = run_cancellable(command)
    try:
        if code != 0:
            raise ValueError(err.strip()[:500])
        return int(json.loads(out)["required"])
    except (ValueError, KeyError, TypeError) as exc:
        raise JobError(ErrorCode.EXECUTION_ERROR, f"qemu-img measure failed: {exc}",
                       details={"command": command, "exit_code": code}, recoverable=False) from None


def compare_images(first: str | Path, first_format: str, second: str | Path, second_format: str, *,
                   cancelled: Callable[[], bool] | None = None) -> tuple[bool, str]:
    """``qemu-img compare``: (identical, message). Raises JobError(EXECUTION_ERROR) on errors."""
    command = ["qemu-img", "compare", *_format_args("-f", first, first_format),
               *_format_args("-F", second, second_format), os.fspath(first), os.fspath(second)]
    code, out, err = run_cancellable(command, cancelled=cancelled)
    if code not in (0, 1):
        raise JobError(ErrorCode.EXECUTION_ERROR, f"qemu-img compare failed: {err.strip()[:500]}",
                       details={"command": command, "exit_code": code}, recoverable=False)
    return code == 0, (out.strip() or err.strip())[:500]
