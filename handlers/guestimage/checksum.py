"""Streaming sha256 verification of image files."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path

from app.plugin.errors import ErrorCode, JobError

from .errors import not_found

CHUNK = 4 * 1024 * 1024
Progress = Callable[[int, str], None]


def file_sha256(path: str | Path, progress: Progress | None = None) -> str:
    """Hex sha256 of a file, reading it in chunks and reporting percent done."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise not_found(path)
    total = os.path.getsize(path) or 1
    digest = hashlib.sha256()
    done = 0
    last = -1
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            percent = min(100, done * 100 // total)
            if progress is not None and percent >= last + 5:
                last = percent
                progress(percent, f"checksum {done}/{total} bytes")
    if progress is not None and last < 100:
        progress(100, "checksum done")
    return digest.hexdigest()


def verify_checksum(path: str | Path, expected: str, progress: Progress | None = None) -> None:
    """Raise ``IMAGE_CHECKSUM_MISMATCH`` unless the file's sha256 is ``expected`` ("sha256:<hex>")."""
    algorithm, _, want = expected.partition(":")
    if algorithm.lower() != "sha256" or len(want) != 64:
        raise JobError(ErrorCode.VALIDATION_ERROR, f"unsupported checksum {expected!r}; use sha256:<64 hex>",
                       details={"checksum": expected}, recoverable=False)
    actual = file_sha256(path, progress)
    if not hmac.compare_digest(actual, want.lower()):
        raise JobError(ErrorCode.IMAGE_CHECKSUM_MISMATCH, f"sha256 of {os.fspath(path)} does not match",
                       details={"path": os.fspath(path), "expected": f"sha256:{want.lower()}",
                                "actual": f"sha256:{actual}"}, recoverable=False)
