"""The job state machine of contract section 3, and the status record it drives."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED})

#: Exactly the contract's table. running → queued is not here: it is the retry path only.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.ASSIGNED, JobState.CANCELLED, JobState.FAILED}),
    JobState.ASSIGNED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}),
}


class InvalidTransition(Exception):
    def __init__(self, job_id: str, current: JobState, wanted: JobState) -> None:
        if current.terminal:
            why = f"{current} is terminal and never changes"
        else:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
            why = f"{current} may only go to {allowed}"
        super().__init__(f"job {job_id}: cannot go from {current} to {wanted}: {why}")
        self.current = current
        self.wanted = wanted


def utc_now() -> datetime:
    return datetime.now(UTC)


class Transition(BaseModel):
    state: JobState
    at: datetime
    attempt: int
    worker_id: str | None = None
    reason: str | None = None


class JobStatus(BaseModel):
    """What the store keeps of a job: its state, its history and its latest progress."""

    job_id: str
    operation: str
    state: JobState = JobState.PENDING
    attempt: int = 1
    max_attempts: int = 1
    idempotency_key: str | None = None
    cancellable: bool = True
    worker_id: str | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    history: list[Transition] = Field(default_factory=list)
    progress: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def advance(
        self, state: JobState, *, worker_id: str | None = None, reason: str | None = None,
        at: datetime | None = None,
    ) -> JobStatus:
        """Move to ``state`` if the table allows it; raise ``InvalidTransition`` otherwise."""
        if state not in TRANSITIONS.get(self.state, frozenset()):
            raise InvalidTransition(self.job_id, self.state, state)
        return self._moved(state, self.attempt, worker_id, reason, at)

    def retry(self, *, reason: str, at: datetime | None = None) -> JobStatus:
        """The retry path: running → queued with the next attempt number."""
        if self.state is not JobState.RUNNING:
            raise InvalidTransition(self.job_id, self.state, JobState.QUEUED)
        if self.attempt >= self.max_attempts:
            raise InvalidTransition(self.job_id, self.state, JobState.QUEUED)
        return self._moved(JobState.QUEUED, self.attempt + 1, None, f"retry: {reason}", at)

    def _moved(
        self, state: JobState, attempt: int, worker_id: str | None, reason: str | None, at: datetime | None
    ) -> JobStatus:
        when = at or utc_now()
        step = Transition(state=state, at=when, attempt=attempt, worker_id=worker_id, reason=reason)
        changes: dict[str, Any] = {
            "state": state, "attempt": attempt, "updated_at": when, "history": [*self.history, step],
        }
        if worker_id is not None:
            changes["worker_id"] = worker_id
        if state is JobState.RUNNING:
            changes["started_at"] = when
        return self.model_copy(update=changes)
