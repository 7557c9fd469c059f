"""Confining the paths a job names to the worker's allowed directories."""

from __future__ import annotations

import os
from pathlib import Path

from app.plugin.errors import ErrorCode, JobError


def within(real: Path, allowed_dirs: list[Path]) -> bool:
    """True if the real path ``real`` is one of ``allowed_dirs`` or lies below one."""
    roots = [Path(os.path.realpath(d)) for d in allowed_dirs]
    return any(real == root or root in real.parents for root in roots)


def resolve_allowed(path: str | os.PathLike[str], allowed_dirs: list[Path], *, must_exist: bool = True) -> Path:
    """Return the real path of ``path`` if it lies inside one of ``allowed_dirs``.

    Symlinks are followed before the check, so a link pointing out is refused. A path with a
    NUL byte or a newline is refused outright. ``IMAGE_NOT_FOUND`` when ``must_exist`` and the
    path does not exist.
    """
    text = os.fspath(path)
    if not text or "\x00" in text or "\n" in text or "\r" in text:
        raise JobError(ErrorCode.PATH_NOT_ALLOWED, f"path {text!r} contains a forbidden character",
                       details={"path": text})
    real = Path(os.path.realpath(text))
    if not within(real, allowed_dirs):
        roots = [Path(os.path.realpath(d)) for d in allowed_dirs]
        raise JobError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"path {text} resolves to {real}, outside the allowed directories "
            f"{', '.join(str(r) for r in roots) or '(none configured)'}",
            details={"path": text, "resolved": str(real), "allowed_dirs": [str(r) for r in roots]},
        )
    if must_exist and not real.exists():
        raise JobError(ErrorCode.IMAGE_NOT_FOUND, f"{text} does not exist", details={"path": text})
    return real
