"""The job store interface. ``FileJobStore`` is the embedded default; a Redis store fills the
same interface for several hosts."""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from app.protocol.states import JobState, JobStatus


class StoreFileRefused(OSError):
    """A file of the job store is a symbolic link (someone planted it): the store never follows one,
    and the job it belongs to cannot be recorded until it is removed."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, f"the job store's file {path} is a symbolic link; the store never "
                                      "follows one: remove it", path)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class KeyClaim:
    """Outcome of claiming an idempotency key: who holds it now, and in which state."""

    holder: str
    holder_state: JobState | None

    def won_by(self, job_id: str) -> bool:
        return self.holder == job_id


@dataclass(frozen=True)
class Admission:
    """Outcome of ``JobStore.admit``."""

    created: bool
    #: the claim on the job's idempotency key, when it has one and was created
    claim: KeyClaim | None


@dataclass(frozen=True)
class RunView:
    """What a worker needs to know before it runs a job, read at once (``JobStore.open_run``)."""

    status: JobStatus | None
    #: the run lease was taken (or already held) by the caller
    leased: bool
    cancel_requested: bool
    #: progress events stored so far (the next event's sequence number)
    progress_count: int
    #: the job holding the idempotency key asked for, where the store read it (None: not read)
    key_holder: str | None = None
    #: the start asked for was written (``status`` is the started status)
    started: bool = False


class JobStore(ABC):
    """Every method is atomic across processes (and, for shared stores, across hosts)."""

    #: exceptions that mean "the store cannot be reached right now" (try again later), as
    #: opposed to a bug or a refused change
    unavailable: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def create(self, status: JobStatus, document: dict[str, Any] | None = None) -> bool:
        """Record a new job, and its document when given; False (and nothing written) when the
        job_id already exists."""

    def admit(self, status: JobStatus, document: dict[str, Any]) -> Admission:
        """A submitted job: ``create`` it with its document, then claim its idempotency key (if it
        has one); stores that can do both in one round trip override this."""
        if not self.create(status, document):
            return Admission(created=False, claim=None)
        key = status.idempotency_key
        return Admission(created=True, claim=None if key is None else self.claim_key(key, status.job_id))

    @abstractmethod
    def get(self, job_id: str) -> JobStatus | None: ...

    @abstractmethod
    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus], *,
               expected: JobStatus | None = None) -> JobStatus:
        """Apply ``change`` to the stored status atomically and save the result.

        ``change`` raises (``InvalidTransition``) to refuse; nothing is written then. ``expected``
        is the status the caller last read: a shared store may apply ``change`` to it and save
        only if the stored status is still that one (one round trip instead of a read and a
        transaction); whenever it is not, ``change`` is applied to what is stored.
        """

    @abstractmethod
    def claim_key(self, key: str, job_id: str) -> KeyClaim:
        """Give ``key`` to ``job_id`` if it is free or its holder failed, timed out or was
        cancelled; return the holder after the claim either way."""

    @abstractmethod
    def append_progress(self, job_id: str, *events: dict[str, Any]) -> None:
        """Add events to the job's stream, in order, in one write."""

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

    def open_run(self, job_id: str, owner: str, ttl: float, key: str | None = None,
                 start: tuple[JobStatus, JobStatus] | None = None) -> RunView:
        """Take the run lease for ``owner`` and read what the run needs (and who holds the
        idempotency ``key``, where that is cheap); stores that can do it in one round trip override
        this. The lease is taken first: what is read after it is what its previous holder left.

        ``start`` = (expected, started): a store may also write ``started`` at once, if the lease
        was taken, the stored status is ``expected``, no cancel was requested and the job holds
        ``key`` (when given); ``RunView.started`` says whether it did. This one does not."""
        leased = self.acquire_run(job_id, owner, ttl)
        return RunView(status=self.get(job_id), leased=leased, cancel_requested=self.cancel_requested(job_id),
                       progress_count=len(self.progress(job_id)))

    def end_run(self, job_id: str, owner: str, change: Callable[[JobStatus], JobStatus], *,
                expected: JobStatus | None = None, progress: Sequence[dict[str, Any]] = ()) -> JobStatus:
        """A run's last write: its remaining progress events, ``change`` (as ``update``) and the
        release of its run lease; stores that can do it in one round trip override this."""
        try:
            self.append_progress(job_id, *progress)
            return self.update(job_id, change, expected=expected)
        finally:
            self.release_run(job_id, owner)

    def list(self, state: JobState | None = None) -> list[JobStatus]:
        found = (self.get(job_id) for job_id in self.job_ids())
        return [s for s in found if s is not None and (state is None or s.state is state)]

    def latest_progress(self, job_id: str) -> dict[str, Any] | None:
        events = self.progress(job_id)
        return events[-1] if events else None
