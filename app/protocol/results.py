"""Result documents of contract section 4: one per job, success or failure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.plugin.errors import JobError


class ExecutionSummary(BaseModel):
    started_at: datetime | None = None
    duration_seconds: float = 0.0
    attempt: int = 1
    idempotency_key: str | None = None


class Outputs(BaseModel):
    primary: str | None = None
    artifacts: list[str] = Field(default_factory=list)


class Metrics(BaseModel):
    cpu_seconds: float | None = None
    peak_memory_mb: float | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    phase: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    recoverable: bool = False
    retry_recommended: bool = False

    @classmethod
    def from_job_error(cls, error: JobError, phase: str | None = None) -> ErrorInfo:
        return cls(
            code=error.code.value, message=error.message, phase=error.phase or phase,
            details=error.details, recoverable=error.recoverable, retry_recommended=error.recoverable,
        )


class ResultDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    status: Literal["completed", "failed", "timeout", "cancelled"]
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    worker_id: str | None = None
    execution_summary: ExecutionSummary = Field(default_factory=ExecutionSummary)
    outputs: Outputs = Field(default_factory=Outputs)
    data: dict[str, Any] | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    observability: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    idempotent_replay_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def success_result(
    job_id: str, *, worker_id: str | None, started_at: datetime, finished_at: datetime, attempt: int,
    idempotency_key: str | None, data: dict[str, Any], primary: str | None = None,
    artifacts: list[str] | None = None, metrics: Metrics | None = None,
    observability: dict[str, Any] | None = None,
) -> ResultDocument:
    return ResultDocument(
        job_id=job_id, status="completed", completed_at=finished_at, worker_id=worker_id,
        execution_summary=ExecutionSummary(
            started_at=started_at, duration_seconds=(finished_at - started_at).total_seconds(),
            attempt=attempt, idempotency_key=idempotency_key,
        ),
        outputs=Outputs(primary=primary, artifacts=artifacts or []),
        data=data, metrics=metrics or Metrics(), observability=observability or {},
    )


def failure_result(
    job_id: str, error: ErrorInfo, *, status: Literal["failed", "timeout", "cancelled"] = "failed",
    worker_id: str | None = None, started_at: datetime | None = None, finished_at: datetime,
    attempt: int = 1, idempotency_key: str | None = None, metrics: Metrics | None = None,
    observability: dict[str, Any] | None = None,
) -> ResultDocument:
    duration = (finished_at - started_at).total_seconds() if started_at else 0.0
    return ResultDocument(
        job_id=job_id, status=status, failed_at=finished_at, worker_id=worker_id,
        execution_summary=ExecutionSummary(
            started_at=started_at, duration_seconds=duration, attempt=attempt, idempotency_key=idempotency_key,
        ),
        metrics=metrics or Metrics(), observability=observability or {}, error=error,
    )


def replayed_result(earlier: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The earlier completed result, under the new job_id, naming the job it replays."""
    replay = dict(earlier)
    replay["idempotent_replay_of"] = earlier["job_id"]
    replay["job_id"] = job_id
    return replay
