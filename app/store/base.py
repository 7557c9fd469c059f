"""The job store interface. ``FileJobStore`` is the embedded default; a Redis store fills the
same interface for several hosts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.states import JobState, JobStatus


@dataclass(frozen=True)
class KeyClaim:
    """Outcome of claiming an idempotency key: who holds it now, and in which state."""

    holder: str
    holder_state: JobState | None

    def won_by(self, job_id: str) -> bool:
        return self.holder == job_id


class JobStore(ABC):
    """Every method is atomic across processes (and, for shared stores, across hosts)."""

    #: exceptions that mean "the store cannot be reached right now" (try again later), as
    #: opposed to a bug or a refused change
    unavailable: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def create(self, status: JobStatus) -> bool:
        """Record a new job; False (and nothing written) when the job_id already exists."""

    @abstractmethod
    def get(self, job_id: str) -> JobStatus | None: ...

    @abstractmethod
    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus]) -> JobStatus:
        """Apply ``change`` to the stored status under the job's lock and save the result.

        ``change`` raises (``InvalidTransition``) to refuse; nothing is written then.
        """

    @abstractmethod
    def claim_key(self, key: str, job_id: str) -> KeyClaim:
        """Give ``key`` to ``job_id`` if it is free or its holder failed, timed out or was
        cancelled; return the holder after the claim either way."""

    @abstractmethod
    def append_progress(self, job_id: str, event: dict[str, Any]) -> None: ...

    @abstractmethod
    def progress(self, job_id: str) -> list[dict[str, Any]]:
        """Every progress event of the job, in order."""

    @abstractmethod
    def request_cancel(self, job_id: str) -> None: ...

    @abstractmethod
    def cancel_requested(self, job_id: str) -> bool: ...

    @abstractmethod
    def job_ids(self) -> Iterator[str]: ...

    @abstractmethod
    def put_document(self, job_id: str, document: dict[str, Any]) -> None:
        """Keep the job's document, so that a job whose message a broker lost can be sent again."""

    @abstractmethod
    def document(self, job_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def acquire_run(self, job_id: str, owner: str, ttl: float) -> bool:
        """Take the job's run lease: only its holder may move the job on from assigned or
        running. False while another live process holds it. The lease ends when released, when
        its process dies, or (on shared stores) ``ttl`` seconds after the last refresh."""

    @abstractmethod
    def refresh_run(self, job_id: str, owner: str, ttl: float) -> None: ...

    @abstractmethod
    def release_run(self, job_id: str, owner: str) -> None: ...

    @abstractmethod
    def put_worker(self, advert: dict[str, Any], ttl: float) -> None:
        """Publish a worker's advertisement (contract section 7); it lapses after ``ttl`` s."""

    @abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """Advertisements of the workers whose last heartbeat has not lapsed."""

    @abstractmethod
    def mark_unmatched(self, job_id: str, document: dict[str, Any] | None) -> None:
        """Remember a job no live worker could run when it was submitted (with its document,
        to match it again later); ``None`` forgets it."""

    @abstractmethod
    def unmatched(self) -> dict[str, dict[str, Any]]:
        """job_id → document of every remembered job."""

    def list(self, state: JobState | None = None) -> list[JobStatus]:
        found = (self.get(job_id) for job_id in self.job_ids())
        return [s for s in found if s is not None and (state is None or s.state is state)]

    def latest_progress(self, job_id: str) -> dict[str, Any] | None:
        events = self.progress(job_id)
        return events[-1] if events else None


def open_store(url: str) -> JobStore:
    """The store named by ``url``: ``file:///path`` (or a plain path) or ``redis://host:port/db``."""
    if url.startswith(("redis://", "rediss://")):
        from app.store.redis import RedisJobStore

        return RedisJobStore(url)
    from app.store.files import FileJobStore

    return FileJobStore(url.removeprefix("file://"))
