"""Error codes of the v1 contract and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNSUPPORTED_OPERATION = "UNSUPPORTED_OPERATION"
    CAPABILITY_MISMATCH = "CAPABILITY_MISMATCH"
    DUPLICATE_IN_PROGRESS = "DUPLICATE_IN_PROGRESS"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    EXECUTION_ERROR = "EXECUTION_ERROR"
    WORKER_LOST = "WORKER_LOST"
    PATH_NOT_ALLOWED = "PATH_NOT_ALLOWED"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    IMAGE_CHECKSUM_MISMATCH = "IMAGE_CHECKSUM_MISMATCH"
    UNSUPPORTED_IMAGE = "UNSUPPORTED_IMAGE"
    #: the image names a file it may not make the worker open (outside the allowed directories, a
    #: protocol or json: pseudo-filename, a backing chain deeper than allowed), or is not the format named
    IMAGE_NOT_ALLOWED = "IMAGE_NOT_ALLOWED"
    #: an output the job names exists already and the job did not set its overwrite option
    OUTPUT_EXISTS = "OUTPUT_EXISTS"
    #: a fix would write through a symlink inside the guest (the operation did not say it replaces it)
    GUEST_LINK_REFUSED = "GUEST_LINK_REFUSED"
    #: the job needs more of a resource than a limit allows (``app.plugin.limits``)
    RESOURCE_LIMIT = "RESOURCE_LIMIT"
    #: what the job needs lies inside an encrypted volume (LUKS, BitLocker) and no key is given
    ENCRYPTED_VOLUME = "ENCRYPTED_VOLUME"


#: Codes after which running the same job again may succeed.
RECOVERABLE_CODES = frozenset(
    {ErrorCode.DUPLICATE_IN_PROGRESS, ErrorCode.WORKER_LOST, ErrorCode.TIMEOUT}
)


class JobError(Exception):
    """A failure with a contract error code, raised by the platform or by a handler.

    ``details`` must be JSON-serialisable; it ends up in the result document.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        recoverable: bool | None = None,
        phase: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details or {}
        self.recoverable = code in RECOVERABLE_CODES if recoverable is None else recoverable
        self.phase = phase

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):  # exceptions cross process boundaries (prefork, result backend)
        return (
            _rebuild_job_error,
            (self.code.value, self.message, self.details, self.recoverable, self.phase),
        )


def _rebuild_job_error(code, message, details, recoverable, phase):
    return JobError(ErrorCode(code), message, details=details, recoverable=recoverable, phase=phase)


class ValidationFailed(JobError):
    """A job document breaks the contract. ``problems`` lists ``field.path: message`` lines."""

    def __init__(self, problems: list[str], code: ErrorCode = ErrorCode.VALIDATION_ERROR) -> None:
        self.problems = problems
        summary = "; ".join(problems[:20])
        if len(problems) > 20:
            summary += f"; … and {len(problems) - 20} more"
        super().__init__(code, summary, details={"problems": problems}, recoverable=False)

    def __reduce__(self):
        return (ValidationFailed, (self.problems, self.code))


class JobFailed(Exception):
    """Raised by a job's Celery task when the job ended failed, timeout or cancelled.

    Carries the whole result document, so ``AsyncResult(job_id).get()`` raises it with
    ``.result`` holding what ``results/<job_id>-result.json`` holds.
    """

    def __init__(self, result: dict[str, Any]) -> None:
        error = result.get("error") or {}
        super().__init__(f"job {result.get('job_id')} {result.get('status')}: "
                         f"{error.get('code')}: {error.get('message')}")
        self.result = result

    def __reduce__(self):
        return (JobFailed, (self.result,))
