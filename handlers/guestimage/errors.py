"""Helpers that build the engine's contract errors."""

from __future__ import annotations

from typing import Any

from app.plugin.errors import ErrorCode, JobError


def unsupported(message: str, **details: Any) -> JobError:
    """An ``UNSUPPORTED_IMAGE`` error naming what was found."""
    return JobError(ErrorCode.UNSUPPORTED_IMAGE, message, details=details, recoverable=False)


def not_found(path: str) -> JobError:
    return JobError(ErrorCode.IMAGE_NOT_FOUND, f"{path} does not exist", details={"path": path},
                    recoverable=False)


def encrypted(message: str, volumes: list[dict[str, Any]], **details: Any) -> JobError:
    """An ``ENCRYPTED_VOLUME`` error: what is needed is inside ``volumes`` (their ``filesystems`` entries)."""
    return JobError(ErrorCode.ENCRYPTED_VOLUME, message, details={"encrypted_volumes": volumes, **details},
                    recoverable=False)
