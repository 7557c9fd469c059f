"""Job store on a local directory, safe across processes on one host.

Layout under the root:
    jobs/<job_id>.json        status (written by rename, never half a file)
    locks/<n>                 one of LOCK_STRIPES files flock'ed around every read-modify-write of
                              the statuses (and key claims) that hash to it
    jobs/<job_id>.run         flock'ed by the process running the job (its run lease): the kernel
                              releases it when that process dies, kill -9 included
    progress/<job_id>.jsonl   progress events, one appended line each
    keys/<sha256(key)>.json   idempotency claim: {"key", "job_id"}, changed under keys/<…>.lock
    cancel/<job_id>           exists once a cancel was requested
    documents/<job_id>.json   the job document as submitted
    workers/<worker_id>.json  advertisement with an "expires" time
    unmatched/<job_id>        jobs waiting for a worker that can run them
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.atomic import write_atomic
from app.states import JobState, JobStatus
from app.store.base import JobStore, KeyClaim, RunView

#: lock files shared by all jobs (a job's lock is the stripe its id hashes to)
LOCK_STRIPES = 64


class FileJobStore(JobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.jobs = self.root / "jobs"
        self.events = self.root / "progress"
        self.keys = self.root / "keys"
        self.cancels = self.root / "cancel"
        self.adverts = self.root / "workers"
        self.waiting = self.root / "unmatched"
        self.documents = self.root / "documents"
        self._runs: dict[str, int] = {}
        self._lock_fds: dict[int, int] = {}
        self._lock_pid = os.getpid()
        self._thread_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        for folder in (self.jobs, self.events, self.keys, self.cancels, self.adverts, self.waiting,
                       self.documents):
            folder.mkdir(parents=True, exist_ok=True)

    def __reduce__(self):
        return (FileJobStore, (str(self.root),))

    def __repr__(self) -> str:
        return f"FileJobStore({str(self.root)!r})"

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Exclusive across processes (flock) and threads for everything hashing like ``name``."""
        stripe = zlib.crc32(name.encode()) % LOCK_STRIPES
        fd = self._lock_fds.get(stripe)
        if fd is None or self._lock_pid != os.getpid():  # a forked child opens its own
            if self._lock_pid != os.getpid():
                self._lock_fds, self._lock_pid = {}, os.getpid()
            fd = self._lock_fds[stripe] = os.open(self.root / "locks" / str(stripe), os.O_RDWR | os.O_CREAT, 0o644)
        with self._thread_locks[stripe]:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _status_path(self, job_id: str) -> Path:
        return self.jobs / f"{job_id}.json"

    def create(self, status: JobStatus, document: dict[str, Any] | None = None) -> bool:
        with self._locked(status.job_id):
            path = self._status_path(status.job_id)
            if path.exists():
                return False
            if document is not None:  # first: a status on disk always has its document
                self.put_document(status.job_id, document)
            write_atomic(path, status.model_dump_json().encode())
            return True

    def get(self, job_id: str) -> JobStatus | None:
        try:
            raw = self._status_path(job_id).read_bytes()
        except FileNotFoundError:
            return None
        return JobStatus.model_validate_json(raw)

    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus], *,
               expected: JobStatus | None = None) -> JobStatus:
        # the status is read under the lock anyway (a local read costs less than a stale write)
        with self._locked(job_id):
            current = self.get(job_id)
            if current is None:
                raise KeyError(f"job {job_id} is not in the store")
            changed = change(current)
            write_atomic(self._status_path(job_id), changed.model_dump_json().encode())
            return changed

    def claim_key(self, key: str, job_id: str) -> KeyClaim:
        name = hashlib.sha256(key.encode()).hexdigest()
        path = self.keys / f"{name}.json"
        with self._locked(f"key:{name}"):
            holder = json.loads(path.read_bytes())["job_id"] if path.exists() else None
            holder_status = self.get(holder) if holder else None
            free = holder is None or holder_status is None or holder_status.state in (
                JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED)
            if free and holder != job_id:
                write_atomic(path, json.dumps({"key": key, "job_id": job_id}).encode())
                return KeyClaim(job_id, None)
            return KeyClaim(holder, holder_status.state if holder_status else None)

    def append_progress(self, job_id: str, *events: dict[str, Any]) -> None:
        if not events:
            return
        lines = b"".join(json.dumps(event, separators=(",", ":")).encode() + b"\n" for event in events)
        fd = os.open(self.events / f"{job_id}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines)  # one write of whole lines with O_APPEND: never interleaved
        finally:
            os.close(fd)

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        try:
            lines = (self.events / f"{job_id}.jsonl").read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def open_run(self, job_id: str, owner: str, ttl: float) -> RunView:
        leased = self.acquire_run(job_id, owner, ttl)
        try:
            count = (self.events / f"{job_id}.jsonl").read_bytes().count(b"\n")
        except FileNotFoundError:
            count = 0
        return RunView(status=self.get(job_id), leased=leased, cancel_requested=self.cancel_requested(job_id),
                       progress_count=count)

    def request_cancel(self, job_id: str) -> None:
        (self.cancels / job_id).touch()

    def cancel_requested(self, job_id: str) -> bool:
        return (self.cancels / job_id).exists()

    def job_ids(self) -> Iterator[str]:
        for entry in os.scandir(self.jobs):
            if entry.name.endswith(".json"):
                yield entry.name[: -len(".json")]

    def put_document(self, job_id: str, document: dict[str, Any]) -> None:
        write_atomic(self.documents / f"{job_id}.json", json.dumps(document).encode())

    def document(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.documents / f"{job_id}.json").read_bytes())
        except FileNotFoundError:
            return None

    def acquire_run(self, job_id: str, owner: str, ttl: float) -> bool:
        if job_id in self._runs:
            return True
        fd = os.open(self.jobs / f"{job_id}.run", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._runs[job_id] = fd
        return True

    def refresh_run(self, job_id: str, owner: str, ttl: float) -> None:
        pass  # a lock held by a live process needs no refresh

    def release_run(self, job_id: str, owner: str) -> None:
        fd = self._runs.pop(job_id, None)
        if fd is not None:
            os.close(fd)

    def put_worker(self, advert: dict[str, Any], ttl: float) -> None:
        record = {"expires": time.time() + ttl, "advert": advert}
        write_atomic(self.adverts / f"{advert['worker_id']}.json", json.dumps(record).encode())

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        found = []
        for entry in os.scandir(self.adverts):
            if not entry.name.endswith(".json"):
                continue
            try:
                record = json.loads(Path(entry.path).read_bytes())
            except (OSError, ValueError):
                continue
            if record["expires"] > now:
                found.append(record["advert"])
        return sorted(found, key=lambda advert: advert["worker_id"])

    def mark_unmatched(self, job_id: str, document: dict[str, Any] | None) -> None:
        if document is not None:
            write_atomic(self.waiting / f"{job_id}.json", json.dumps(document).encode())
        else:
            (self.waiting / f"{job_id}.json").unlink(missing_ok=True)

    def unmatched(self) -> dict[str, dict[str, Any]]:
        found = {}
        for entry in os.scandir(self.waiting):
            if entry.name.endswith(".json"):
                try:
                    found[entry.name[: -len(".json")]] = json.loads(Path(entry.path).read_bytes())
                except (OSError, ValueError):
                    continue
        return found
