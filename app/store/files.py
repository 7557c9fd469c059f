"""Job store on a local directory, safe across processes on one host (Linux).

Creating a file costs far more kernel time than appending to one (on ext4 measured here, 0.05 to
0.8 ms against 5 to 15 µs), so a job gets ONE new file in its life, its journal; the only other is
its idempotency key's, when it brings a new key.

Layout under the root:
    jobs/<job_id>.jsonl       the job's journal, append-only (records below): created by ``create``
                              (or by the first progress event / document of a job not created yet)
    locks/<n>                 one of LOCK_STRIPES files flock'ed around every read-modify-write of
                              the statuses (and key claims) that hash to it
    runs.lock                 run leases: the process running a job holds an open-file-description
                              (OFD) write lock on one byte of it, at the job's lease offset (below);
                              the kernel releases it when that process dies, kill -9 included
    keys/<sha256(key)>.json   idempotency claim: {"key", "job_id"}, created or rewritten in place
                              under the key's stripe lock (``claim_key`` reads it there; ``open_run``
                              reads it without, and takes a torn file for "not read")
    cancel/<job_id>           exists once a cancel was requested
    workers/<worker_id>.json  advertisement with an "expires" time
    unmatched/<job_id>.json   jobs waiting for a worker that can run them, with their document

Journal records, one JSON object a line, each written as ``\\n{...}\\n`` with ONE ``os.write`` on an
``O_APPEND`` descriptor (so never interleaved with another writer's):
    {"d": <document>}         the job document (``create``, ``put_document``): the last one counts
    {"s": <status>}           a status (``create``, ``update``, ``end_run``): the last one is the
                              job's status; statuses are appended under the job's stripe lock only,
                              after reading the current one there (read-modify-append)
    {"p": <event>}            a progress event (``append_progress``, ``end_run``), in order
``create`` writes the document and the first status in one write, so a status never lacks its
document; ``end_run`` writes the run's last events and its final status in one write. A record
without its own trailing newline, or one that does not parse, is skipped, now and later: it is what
a writer that died in the middle of its write (or a full disk) leaves. The leading newline of the
next record ends it, so that record stays a line of its own, and a line that runs straight into
the next record (``...}\\n{"s":...``: its own newline never written) is known to be torn.

Run leases (OFD locks: Linux 3.15 or later): a job's lease offset is a 62-bit hash of its id. OFD
locks belong to an open file description, so each store object opens ``runs.lock`` itself (and
again in a forked child, which closes the descriptor it inherited: a lease ends with the process
that took it, not with its last forked child). Two job ids with the same hash (odds about n²/2⁶³
for n leases held at once: nil) would only make one wait for the other's run to end, as if it
were a duplicate delivery, never let two processes run one job; in one store object both are held
(the byte is unlocked once neither is).

No migration from the earlier layout (a file per status, document and progress stream, a lease
file per job): the project has not been released with it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.plugin.atomic import write_atomic
from app.protocol.states import JobState, JobStatus
from app.store.base import JobStore, KeyClaim, RunView, StoreFileRefused

#: lock files shared by all jobs (a job's lock is the stripe its id hashes to)
LOCK_STRIPES = 64

#: journal record tags: what a line starts with
_DOCUMENT, _STATUS, _EVENT = b'{"d":', b'{"s":', b'{"p":'
#: bytes read from a journal's end at first to find its last status (then 8 times more)
_TAIL = 16384
#: ``struct flock`` of Linux on 64-bit machines (x86_64, aarch64, …): short l_type, short l_whence,
#: (padding), off_t l_start, off_t l_len, pid_t l_pid (0 for OFD locks), padding to 32 bytes
_FLOCK = "hhqqi4x"
_FREE_STATES = (JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED)


def _record(tag: bytes, payload: bytes) -> bytes:
    return b"\n" + tag + payload + b"}\n"


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _lines(data: bytes, *, from_start: bool = True) -> list[bytes]:
    """The whole records of ``data``, read from the journal's start or (``from_start`` False) from
    anywhere, its first line then possibly cut. A whole record is a line ended by its own newline:
    not the last line (a record still being written, or torn), nor one that runs straight into the
    next record (the newline ending it is that record's leading one: a torn record)."""
    parts = data.split(b"\n")
    first = 0 if from_start else 1
    return [parts[i] for i in range(first, len(parts) - 1) if parts[i] and not parts[i + 1].startswith(b"{")]


def _payload(line: bytes, tag: bytes) -> bytes | None:
    return line[5:-1] if line.startswith(tag) and line.endswith(b"}") else None


def _status(line: bytes) -> JobStatus | None:
    payload = _payload(line, _STATUS)
    if payload is None:
        return None
    try:
        return JobStatus.model_validate_json(payload)
    except ValueError:  # torn by a writer that died (pydantic's ValidationError is a ValueError)
        return None


def _values(lines: list[bytes], tag: bytes) -> list[Any]:
    found = []
    for line in lines:
        payload = _payload(line, tag)
        if payload is not None:
            try:
                found.append(json.loads(payload))
            except ValueError:
                continue
    return found


def _last_status(lines: list[bytes]) -> JobStatus | None:
    for line in reversed(lines):
        status = _status(line)
        if status is not None:
            return status
    return None


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    while len(data) < size:  # a regular file is read at once; just in case
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            break
        data += more
    return data


def _read_last_status(fd: int) -> JobStatus | None:
    """The last complete status of the journal open as ``fd``, read from its end backwards."""
    end = os.fstat(fd).st_size
    size = _TAIL
    while end > 0:
        start = max(0, end - size)
        status = _last_status(_lines(os.pread(fd, end - start, start), from_start=start == 0))
        if status is not None or start == 0:
            return status
        size *= 8  # many progress events since the last status: look further back
    return None


def _append(fd: int, data: bytes) -> None:
    """One write of whole records: with ``O_APPEND`` never interleaved with another writer's."""
    if os.write(fd, data) != len(data):  # a full disk: the torn record is skipped by readers
        raise OSError(errno.ENOSPC, "journal record written in part")


def _open(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open`` for every file of the store: never through a symbolic link (one planted at a
    store file's name raises ``StoreFileRefused``, naming it)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreFileRefused(os.fspath(path)) from None
        raise


def _read_file(path: str) -> bytes:
    fd = _open(path, os.O_RDONLY)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def _lease_offset(job_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest(), "big") >> 2


def _after_fork(ref: weakref.ReferenceType[FileJobStore]) -> None:
    store = ref()
    if store is not None:
        store._forget_parent()


class FileJobStore(JobStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.jobs = self.root / "jobs"
        self.keys = self.root / "keys"
        self.cancels = self.root / "cancel"
        # plain strings for the paths of every call (a pathlib join costs more than the syscall)
        self._jobs_dir, self._keys_dir, self._cancel_dir = f"{self.jobs}/", f"{self.keys}/", f"{self.cancels}/"
        self.adverts = self.root / "workers"
        self.waiting = self.root / "unmatched"
        self._runs_path = self.root / "runs.lock"
        #: job_id → lease offset of the run leases this store object holds
        self._runs: dict[str, int] = {}
        self._runs_fd: int | None = None
        self._lock_fds: dict[int, int] = {}
        self._lock_pid = os.getpid()
        self._thread_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._runs_guard = threading.Lock()
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        for folder in (self.jobs, self.keys, self.cancels, self.adverts, self.waiting):
            folder.mkdir(parents=True, exist_ok=True)
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def __reduce__(self):
        return (FileJobStore, (str(self.root),))

    def __repr__(self) -> str:
        return f"FileJobStore({str(self.root)!r})"

    def close(self) -> None:
        """Close the lock files: the run leases of this store object end with them (and not when
        it is garbage-collected: a lease lives until released, or until its process dies). They
        are opened again on next use."""
        fds = [*self._lock_fds.values(), *([self._runs_fd] if self._runs_fd is not None else [])]
        self._lock_fds, self._runs_fd, self._runs = {}, None, {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _forget_parent(self) -> None:
        """In a forked child: the parent's locks and leases are the parent's. Its descriptors are
        closed (the parent keeps its own, so its locks stay held) and opened anew on first use."""
        self.close()
        self._lock_pid = os.getpid()
        self._thread_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._runs_guard = threading.Lock()

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Exclusive across processes (flock) and threads for everything hashing like ``name``."""
        if self._lock_pid != os.getpid():  # forked without the fork hook: a child opens its own
            self._forget_parent()
        stripe = zlib.crc32(name.encode()) % LOCK_STRIPES
        with self._thread_locks[stripe]:
            fd = self._lock_fds.get(stripe)
            if fd is None:
                fd = self._lock_fds[stripe] = _open(self.root / "locks" / str(stripe),
                                                      os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _journal(self, job_id: str) -> str:
        return f"{self._jobs_dir}{job_id}.jsonl"

    def _read(self, job_id: str) -> list[bytes]:
        """The complete lines of the job's journal (none when it has none)."""
        try:
            fd = _open(self._journal(job_id), os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            return _lines(_read_all(fd))
        finally:
            os.close(fd)

    def _append_records(self, job_id: str, data: bytes) -> None:
        fd = _open(self._journal(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _append(fd, data)
        finally:
            os.close(fd)

    # --- statuses ---------------------------------------------------------------------------
    def create(self, status: JobStatus, document: dict[str, Any] | None = None) -> bool:
        records = _record(_DOCUMENT, _dumps(document)) if document is not None else b""
        records += _record(_STATUS, status.model_dump_json().encode())
        path = self._journal(status.job_id)
        with self._locked(status.job_id):
            try:
                fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
                exists = False
            except FileExistsError:
                fd = _open(path, os.O_RDWR | os.O_APPEND)
                exists = True
            try:
                # a journal without a status (progress or a document came first) is not a job yet
                if exists and _read_last_status(fd) is not None:
                    return False
                _append(fd, records)
                return True
            finally:
                os.close(fd)

    def get(self, job_id: str) -> JobStatus | None:
        try:
            fd = _open(self._journal(job_id), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _read_last_status(fd)
        finally:
            os.close(fd)

    def _change(self, job_id: str, change: Callable[[JobStatus], JobStatus], events: bytes) -> JobStatus:
        """Under the job's lock: read its status, apply ``change`` and append ``events`` and the
        result in one write (the events alone when ``change`` refuses or there is no status)."""
        with self._locked(job_id):
            try:
                fd = _open(self._journal(job_id), os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                if events:
                    self._append_records(job_id, events)
                raise KeyError(f"job {job_id} is not in the store") from None
            try:
                current = _read_last_status(fd)
                try:
                    if current is None:
                        raise KeyError(f"job {job_id} is not in the store")
                    changed = change(current)
                except BaseException:
                    if events:
                        _append(fd, events)
                    raise
                _append(fd, events + _record(_STATUS, changed.model_dump_json().encode()))
                return changed
            finally:
                os.close(fd)

    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus], *,
               expected: JobStatus | None = None) -> JobStatus:
        # the status is read under the lock anyway (a local read costs less than a stale write)
        return self._change(job_id, change, b"")

    def end_run(self, job_id: str, owner: str, change: Callable[[JobStatus], JobStatus], *,
                expected: JobStatus | None = None, progress: Sequence[dict[str, Any]] = ()) -> JobStatus:
        """The run's last events and its new status in one write, then the lease's release."""
        try:
            return self._change(job_id, change, b"".join(_record(_EVENT, _dumps(event)) for event in progress))
        finally:
            self.release_run(job_id, owner)

    # --- idempotency keys ----------------------------------------------------------------------
    def _key_path(self, key: str) -> tuple[str, str]:
        name = hashlib.sha256(key.encode()).hexdigest()
        return name, f"{self._keys_dir}{name}.json"

    @staticmethod
    def _key_holder(path: str, key: str) -> str | None:
        """The job named by a key file; None when there is none, or it is torn (a writer that died,
        or, read without the key's lock, one still writing)."""
        try:
            with os.fdopen(_open(path, os.O_RDONLY), "rb") as file:
                record = json.loads(file.read())
            return record["job_id"] if record["key"] == key else None
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def claim_key(self, key: str, job_id: str) -> KeyClaim:
        name, path = self._key_path(key)
        with self._locked(f"key:{name}"):  # every change of the file is made under this lock
            holder = self._key_holder(path, key)
            holder_status = self.get(holder) if holder else None
            if holder is None or holder_status is None or holder_status.state in _FREE_STATES:
                if holder != job_id:
                    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        _append(fd, json.dumps({"key": key, "job_id": job_id}).encode())
                    finally:
                        os.close(fd)
                    return KeyClaim(job_id, None)
            return KeyClaim(holder, holder_status.state if holder_status else None)

    # --- progress, documents, cancels ----------------------------------------------------------
    def append_progress(self, job_id: str, *events: dict[str, Any]) -> None:
        if events:
            self._append_records(job_id, b"".join(_record(_EVENT, _dumps(event)) for event in events))

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        return _values(self._read(job_id), _EVENT)

    def put_document(self, job_id: str, document: dict[str, Any]) -> None:
        self._append_records(job_id, _record(_DOCUMENT, _dumps(document)))

    def document(self, job_id: str) -> dict[str, Any] | None:
        documents = _values(self._read(job_id), _DOCUMENT)
        return documents[-1] if documents else None

    def request_cancel(self, job_id: str) -> None:
        os.close(_open(self.cancels / job_id, os.O_WRONLY | os.O_CREAT))

    def cancel_requested(self, job_id: str) -> bool:
        return os.path.exists(f"{self._cancel_dir}{job_id}")

    def job_ids(self) -> Iterator[str]:
        for entry in os.scandir(self.jobs):
            if entry.name.endswith(".jsonl") and not entry.is_symlink():  # a planted link is no job
                yield entry.name[: -len(".jsonl")]

    # --- runs ------------------------------------------------------------------------------------
    def open_run(self, job_id: str, owner: str, ttl: float, key: str | None = None,
                 start: tuple[JobStatus, JobStatus] | None = None) -> RunView:
        """The lease, then one read of the journal (status and progress count), the cancel flag and
        the key's holder (read without the key's lock: a file being rewritten reads as None).
        ``start`` is left to ``update`` (a local locked append costs little)."""
        leased = self.acquire_run(job_id, owner, ttl)
        lines = self._read(job_id)
        return RunView(status=_last_status(lines), leased=leased, cancel_requested=self.cancel_requested(job_id),
                       progress_count=len(_values(lines, _EVENT)),
                       key_holder=self._key_holder(self._key_path(key)[1], key) if key is not None else None)

    def _lease(self, offset: int, kind: int) -> bool:
        """Lock (F_WRLCK) or unlock (F_UNLCK) the byte at ``offset`` of runs.lock for this store
        object; False when another open file description holds it."""
        if self._runs_fd is None:
            self._runs_fd = _open(self._runs_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.fcntl(self._runs_fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def acquire_run(self, job_id: str, owner: str, ttl: float) -> bool:
        if self._lock_pid != os.getpid():  # forked without the fork hook
            self._forget_parent()
        with self._runs_guard:
            if job_id in self._runs:
                return True  # re-entrant for this store object
            offset = _lease_offset(job_id)
            if offset not in self._runs.values() and not self._lease(offset, fcntl.F_WRLCK):
                return False
            self._runs[job_id] = offset
            return True

    def refresh_run(self, job_id: str, owner: str, ttl: float) -> None:
        pass  # a lock held by a live process needs no refresh

    def release_run(self, job_id: str, owner: str) -> None:
        if self._lock_pid != os.getpid():
            return  # the parent's lease, not ours
        with self._runs_guard:
            offset = self._runs.pop(job_id, None)
            if offset is not None and offset not in self._runs.values():
                self._lease(offset, fcntl.F_UNLCK)

    # --- workers ---------------------------------------------------------------------------------
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
                record = json.loads(_read_file(entry.path))
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
                    found[entry.name[: -len(".json")]] = json.loads(_read_file(entry.path))
                except (OSError, ValueError):
                    continue
        return found
