"""The file-drop bridge: job documents dropped into a directory become jobs.

Layout under the jobs directory::

    *.json                  dropped here (names starting with "." are ignored: write there, then rename)
    .processing/            claimed files, ``<pid>@<host>@<token>@<name>``, until their job ends
    .ids/<job_id>           which dropped file took a job_id first (the same job_id runs once)
    done/<name>             the job completed
    failed/<name>           the job failed, or the file was bad; ``<name>.reason.txt`` says why

The jobs directory and its four folders are opened once, when the bridge starts (a folder that is a
symbolic link is refused), and every name is looked up relative to those open directories: a folder
renamed or replaced by a link afterwards never redirects a move, a reason file or a record. Files are
read without following links and created with ``O_EXCL|O_NOFOLLOW``.

Every file is claimed by an atomic rename into ``.processing/`` before anything else, so two bridges
on one directory never submit one file twice. A claim whose owner died (same host, process gone) is
adopted by the next bridge that looks (within ``recovery_interval``, or longer with a big backlog:
reading ``.processing/`` takes at most 2% of the bridge's time); it submits what was never
submitted, publishes what never reached the broker, and follows the rest: the job store dedupes by
job_id, so nothing runs twice.

A file that is not yet complete (a writer still appending to it) does not parse; such a file is
given ``settle`` seconds of quiet (no change to its mtime) before it is judged bad.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from pydantic import BaseModel, Field

from app.intake.arrivals import Arrivals, DirectoryEvents
from app.intake.submission import SubmitFailed, publish, submit
from app.plugin.atomic import rename_noreplace, write_atomic
from app.plugin.errors import ErrorCode, ValidationFailed
from app.plugin.registry import installed
from app.protocol.models import JOB_ID_PATTERN, MAX_DOCUMENT_BYTES, JobDocument
from app.protocol.results import ErrorInfo, failure_result
from app.protocol.states import InvalidTransition, JobState, JobStatus, utc_now
from app.protocol.validation import read_document, validate_read
from app.store.base import StoreFileRefused

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger("guestkit.bridge")

CLAIMS = ".processing"
IDS = ".ids"
DONE = "done"
FAILED = "failed"
_RESULT_SUFFIX = "-result.json"
#: the reason code of a claimed file that was removed or replaced while its job ran
INPUT_VANISHED = "INPUT_VANISHED"
HOST = socket.gethostname().replace("@", "_")
_JOB_ID = re.compile(JOB_ID_PATTERN)
#: first and longest pause between two looks at one in-flight job's result (grows by half each look)
_FIRST_CHECK_DELAY = 0.005
_MAX_CHECK_DELAY = 0.5
#: the same where inotify reports each result file as it is written: these looks are a safety net
#: only (a results directory on a network file system, events dropped), so a big backlog of jobs in
#: flight costs no look per job per tick
_WATCHED_FIRST_DELAY = 1.0
_WATCHED_MAX_DELAY = 5.0
#: with many jobs in flight, the looks for results slow down to about this many per second in all:
#: a backlog of 100,000 queued jobs is not polled 20,000 times a second
_LOOKS_PER_SECOND = 1000
#: the pass over ``.processing/`` for claims of dead bridges takes at most 1/_RECOVERY_SHARE of the time
_RECOVERY_SHARE = 50
#: seconds before a file whose handling raised something unexpected is tried again
_RETRY_DELAY = 1.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: seconds a claim may seem older than the process that made it (a claim's change time comes from the
#: kernel's coarse clock, a process's start time from /proc in clock ticks: this covers the rounding)
_START_TIME_SLACK = 0.5


class BridgeConfig(BaseModel):
    jobs_dir: Path
    #: seconds a file that does not parse must stay unchanged before it is judged bad
    settle: float = Field(default=1.0, ge=0)
    #: seconds of work per tick at most (the in-worker bridge shares the worker's loop)
    budget: float = Field(default=0.05, gt=0)
    #: seconds between looks for claims left by bridges that died
    recovery_interval: float = Field(default=1.0, gt=0)
    #: seconds between full reads of the jobs directory (inotify reports each new file; this is the
    #: safety net, and what a machine without inotify does whenever the bridge has nothing queued)
    resync: float = Field(default=30.0, gt=0)


@dataclass(order=True)
class Claim:
    """A dropped file this bridge owns, from its claim until its job ends."""

    next_check: float
    token: str = field(compare=False)
    name: str = field(compare=False)
    #: its name inside ``.processing/``
    entry: str = field(compare=False)
    recovered: bool = field(default=False, compare=False)
    job_id: str | None = field(default=None, compare=False)
    delay: float = field(default=_FIRST_CHECK_DELAY, compare=False)
    #: its job is recorded queued but the broker could not be reached to publish it
    unpublished: bool = field(default=False, compare=False)
    #: (device, inode, change time, size) of the claimed file as it was read: the file moved to done/
    #: or failed/ must still be that one (a new file may get the inode number of a removed one)
    identity: tuple[int, int, int, int] | None = field(default=None, compare=False)

    def back_off(self, now: float, longest: float = _MAX_CHECK_DELAY) -> None:
        self.next_check = now + self.delay
        self.delay = min(self.delay * 1.5, longest)


def claim_name(token: str, name: str) -> str:
    return f"{os.getpid()}@{HOST}@{token}@{name}"


def parse_claim_name(entry: str) -> tuple[int, str, str, str] | None:
    parts = entry.split("@", 3)
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2], parts[3]


class Bridge:
    """One bridge on one jobs directory. Call ``tick()`` often (a timer, a loop): each call claims
    new files, submits what is complete, and moves the files of jobs that ended."""

    def __init__(self, config: BridgeConfig, app: Celery | None = None) -> None:
        """``app``: the guestkit Celery app to submit through (default: the current app, which
        importing ``app.celery`` makes it)."""
        from celery import current_app  # here: celery's package is not safe to import from two threads at once

        app = app or current_app
        if app.main != "guestkit":
            raise RuntimeError(f"the Celery app {app.main!r} is not guestkit's: import app.celery first")
        self.config = config
        self.app = app
        self.backend = app.backend
        self.store = self.backend.store
        self.payload_models = installed(app.conf.guestkit_extra_handlers).payload_models
        self.timeout_ceiling: int = self.backend.settings.timeout_ceiling
        self.jobs_dir = config.jobs_dir.absolute()
        self.folders = _open_folders(self.jobs_dir)
        self.arrivals = Arrivals(self.folders[""], str(self.jobs_dir), resync=config.resync)
        results_dir = self.backend.settings.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        #: result files as they are written: the jobs in flight whose result came are looked at first
        self.results = DirectoryEvents(str(results_dir))
        self._by_job: dict[str, Claim] = {}
        self.waiting: dict[str, Claim] = {}  # claimed, not complete yet
        self.inflight: list[Claim] = []  # submitted, a heap by next_check
        self.tracked: set[str] = set()
        self._next_recovery = 0.0

    # --- the loop ---------------------------------------------------------------------------
    def tick(self) -> int:
        """Do one round of work; return how many files moved a step (0: nothing to do)."""
        now = time.monotonic()
        deadline = now + self.config.budget
        worked = 0
        if now >= self._next_recovery:
            worked += self.recover()
            took = time.monotonic() - now
            self._next_recovery = now + max(self.config.recovery_interval, took * _RECOVERY_SHARE)
        worked += self._claim_new(deadline)
        worked += self._retry_waiting(deadline)
        worked += self._check_inflight(deadline)
        return worked

    @property
    def idle(self) -> bool:
        return not self.waiting and not self._by_job

    def close(self) -> None:
        """Let go of the open folders (the bridge cannot tick afterwards)."""
        self.arrivals.close()
        self.results.close()
        folders, self.folders = self.folders, {}
        for fd in folders.values():
            os.close(fd)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def recover(self) -> int:
        """Adopt claims whose bridge died (same host, process gone): left by a crash or a kill."""
        adopted = 0
        me = os.getpid()
        claims = self.folders[CLAIMS]
        started: dict[int, float | None] = {}  # pid → when the process of that pid started (None: none runs)
        for entry in _scandir(claims):
            parsed = parse_claim_name(entry.name)
            if parsed is None:
                continue
            pid, host, token, name = parsed
            if token in self.tracked or host != HOST:
                continue
            mine = claim_name(token, name)
            if pid != me:
                if pid not in started:
                    started[pid] = _started_at(pid)
                if started[pid] is not None and _claimed_by_it(entry, started[pid]):
                    continue  # its bridge runs
                try:
                    os.rename(entry.name, mine, src_dir_fd=claims, dst_dir_fd=claims)  # one adopter wins
                except FileNotFoundError:
                    continue
            logger.warning("bridge: adopting %s (claimed by process %s, now gone)", name, pid)
            self._start(Claim(0.0, token, name, mine, recovered=True))
            adopted += 1
        return adopted

    def _claim_new(self, deadline: float) -> int:
        """Claim new files, oldest first (``Arrivals``), as many as the tick's budget allows."""
        worked = 0
        jobs, claims = self.folders[""], self.folders[CLAIMS]
        while not (worked and time.monotonic() > deadline):
            name = self.arrivals.pop()
            if name is None:
                break
            token = os.urandom(8).hex()
            entry = claim_name(token, name)
            try:
                os.rename(name, entry, src_dir_fd=jobs, dst_dir_fd=claims)  # the claim: atomic, one bridge wins
            except FileNotFoundError:
                continue  # another bridge took it
            self._start(Claim(0.0, token, name, entry))
            worked += 1
        return worked

    def _start(self, claim: Claim) -> None:
        self.tracked.add(claim.token)
        if not self._attempt(claim):
            self.waiting[claim.token] = claim

    def _attempt(self, claim: Claim) -> bool:
        """``_process`` that survives the unexpected: the file stays claimed and is tried again."""
        try:
            return self._process(claim)
        except Exception:  # noqa: BLE001 - one file must not stop the others
            logger.exception("bridge: %s could not be handled; trying again in %s s", claim.name, _RETRY_DELAY)
            claim.next_check = time.monotonic() + _RETRY_DELAY
            return False

    def _retry_waiting(self, deadline: float) -> int:
        worked = 0
        now = time.monotonic()
        for claim in list(self.waiting.values()):
            if claim.next_check > now:
                continue
            if time.monotonic() > deadline and worked:
                break
            if self._attempt(claim):
                del self.waiting[claim.token]
                worked += 1
            elif claim.next_check <= now:  # still being written: look again soon, then less often
                claim.back_off(now)
        return worked

    def _check_inflight(self, deadline: float) -> int:
        """Move the files of jobs that ended: first those whose result file inotify just reported,
        then those due for a look (every look, without inotify; a safety net, with it)."""
        worked = 0
        now = time.monotonic()
        due: list[Claim] = []
        if self.results.watching:
            names = self.results.names()
            if self.results.overflowed:  # events dropped: look at every job in flight
                self.results.overflowed = False
                due = list(self._by_job.values())
            else:
                due = [c for n in names if n.endswith(_RESULT_SUFFIX)
                       and (c := self._by_job.get(n[:-len(_RESULT_SUFFIX)])) is not None]
        longest = max(_WATCHED_MAX_DELAY if self.results.watching else _MAX_CHECK_DELAY,
                      len(self._by_job) / _LOOKS_PER_SECOND)
        for claim in due:
            worked += self._look(claim, now, longest, requeue=False)
        looked = 0
        while self.inflight and self.inflight[0].next_check <= now:
            if looked and time.monotonic() > deadline:
                break
            looked += 1
            claim = heapq.heappop(self.inflight)
            if claim.job_id in self._by_job:  # else it ended meanwhile, reported by inotify
                worked += self._look(claim, now, longest, requeue=True)
        return worked

    def _look(self, claim: Claim, now: float, longest: float, *, requeue: bool) -> int:
        """Finish ``claim`` if its job has a result; else look again later (``requeue``: it left the heap)."""
        assert claim.job_id is not None
        result = self.backend.read_result(claim.job_id)
        if result is None:
            if requeue:
                claim.back_off(now, longest)
                heapq.heappush(self.inflight, claim)
            return 0
        self._by_job.pop(claim.job_id, None)
        self._finish(claim, result)
        return 1

    # --- one file ---------------------------------------------------------------------------
    def _process(self, claim: Claim) -> bool:
        """Validate and submit one claimed file; False when it may still be being written."""
        try:
            data = read_document(self._read_claimed(claim))
        except FileNotFoundError:
            self.tracked.discard(claim.token)  # someone removed it from under us
            return True
        except ValidationFailed as exc:
            if self._may_still_grow(claim):
                return False
            self._reject(claim, exc, None)
            return True
        try:
            job = validate_read(data, timeout_ceiling=self.timeout_ceiling, payload_models=self.payload_models)
        except ValidationFailed as exc:
            self._reject(claim, exc, data)
            return True
        first = self._take_job_id(job.job_id, claim)
        if first is not None:
            self._move(claim, FAILED, _reason(
                claim, "DUPLICATE_JOB_ID",
                [f"job_id: {job.job_id!r} was already submitted by the file {first!r}; "
                 "the same job_id is executed once (its result is that job's result)"]))
            return True
        try:
            return self._hand_over(claim, job)
        except StoreFileRefused as exc:  # planted in the store: this job cannot be recorded, say so
            os.unlink(job.job_id, dir_fd=self.folders[IDS])  # the file may come again once the store is mended
            self._move(claim, FAILED, _reason(claim, "STORE_FILE_REFUSED", [str(exc)]))
            return True

    def _read_claimed(self, claim: Claim) -> bytes:
        """The claimed file's bytes, read without following a link or blocking on a FIFO."""
        where = f"(file): {claim.name}"
        try:
            fd = os.open(claim.entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=self.folders[CLAIMS])
        except FileNotFoundError:
            raise  # removed from under us: _process forgets the claim
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValidationFailed([f"{where} is a symbolic link; job files must be regular files"]) from None
            raise ValidationFailed([f"{where}: cannot be read: {exc.strerror}"]) from None
        try:
            info = os.fstat(fd)
            mode = info.st_mode
            if not stat.S_ISREG(mode):
                what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                raise ValidationFailed([f"{where} is {what}"])
            raw = b""
            while len(raw) <= MAX_DOCUMENT_BYTES and (more := os.read(fd, MAX_DOCUMENT_BYTES + 1 - len(raw))):
                raw += more
        except OSError as exc:
            raise ValidationFailed([f"{where}: cannot be read: {exc.strerror}"]) from None
        finally:
            os.close(fd)
        claim.identity = _identity_of(info)
        if not raw:
            raise ValidationFailed([f"{where} is empty"])
        return raw

    def _may_still_grow(self, claim: Claim) -> bool:
        try:
            info = os.stat(claim.entry, dir_fd=self.folders[CLAIMS], follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and time.time() - info.st_mtime < self.config.settle

    def _hand_over(self, claim: Claim, job: JobDocument) -> bool:
        """Submit the job (or, for an adopted claim, finish what the dead bridge began) and follow it;
        False while the broker cannot be reached: the file stays claimed and is tried again."""
        try:
            # a fresh claim is submitted (a job_id that exists is left as it is); an adopted or
            # unpublished one is finished where it stopped
            status = self.store.get(job.job_id) if claim.recovered or claim.unpublished else None
            if status is None:
                submit(self.app, job, keep_queued_on_broker_error=True, validated=True)
                logger.info("bridge: %s submitted as job %s", claim.name, job.job_id)
            else:
                self._republish_if_unsure(job, status)
        except SubmitFailed as exc:
            if not claim.unpublished:
                logger.warning("bridge: %s stays in place until the broker is back: %s", claim.name, exc)
            claim.unpublished = True
            claim.next_check = time.monotonic() + _RETRY_DELAY
            return False
        claim.unpublished = False
        claim.job_id = job.job_id
        self._by_job[job.job_id] = claim
        first = _WATCHED_FIRST_DELAY if self.results.watching else _FIRST_CHECK_DELAY
        claim.next_check, claim.delay = time.monotonic() + first if self.results.watching else 0.0, first
        heapq.heappush(self.inflight, claim)
        return True

    def _republish_if_unsure(self, job: JobDocument, status: JobStatus) -> None:
        """An adopted claim: make sure its job reached the broker.

        ``pending``: the dead bridge never queued it, so it was never published. ``queued``: it may
        have been or not; publishing it again is safe, because a second message for the same job
        never runs it twice (the worker's run lease makes a duplicate wait, then see the job ended).
        """
        if status.state is JobState.PENDING:
            try:
                self.store.update(job.job_id, lambda s: s.advance(JobState.QUEUED, reason="bridge recovery"))
            except InvalidTransition:
                return
        elif status.state is not JobState.QUEUED:
            return
        logger.warning("bridge: job %s may not have reached the broker; publishing it (again)", job.job_id)
        try:
            publish(self.app, job)
        except Exception as exc:  # noqa: BLE001 - the broker is unreachable: kept, tried again
            raise SubmitFailed(f"could not queue the job: {type(exc).__name__}: {exc}") from exc

    def _take_job_id(self, job_id: str, claim: Claim) -> str | None:
        """Record that this file owns ``job_id``; return the file that owned it first, if another.

        The record is a symbolic link whose text is ``<claim token> <file name>`` (never followed,
        only read with ``readlink``): made in one atomic step that never replaces, where a file would
        need a temporary file, a link and an unlink."""
        ids = self.folders[IDS]
        try:
            os.symlink(f"{claim.token} {claim.name}", job_id, dir_fd=ids)
            return None
        except FileExistsError:
            owner = _read_record(ids, job_id)
            return None if owner.get("token") == claim.token else str(owner.get("file"))

    def _reject(self, claim: Claim, exc: ValidationFailed, data: dict[str, Any] | None) -> None:
        problems = list(exc.problems)
        extra: list[str] = []
        job_id = data.get("job_id") if data is not None else None
        if isinstance(job_id, str) and _JOB_ID.fullmatch(job_id):
            first = self._take_job_id(job_id, claim)
            if first is not None:
                extra.append(f"no failure result written: job_id {job_id!r} belongs to the file {first!r}")
            else:
                extra.append(self._save_failure(job_id, data or {}, exc, problems, claim.name))
        self._move(claim, FAILED, _reason(claim, exc.code.value, problems, extra))

    def _save_failure(self, job_id: str, data: dict[str, Any], exc: ValidationFailed, problems: list[str],
                      name: str) -> str:
        """Record the rejected job failed, with its result; return the line that says what was done."""
        operation = data.get("operation")
        fresh = JobStatus(job_id=job_id, operation=operation if isinstance(operation, str) else "(invalid)")
        try:
            current = self.store.get(job_id)
            if not self.store.create(fresh) and (current is None or current.state is not JobState.PENDING):
                return f"no failure result written: job {job_id} already exists"
        except StoreFileRefused as refused:
            return f"no failure result written: {refused}"
        error = ErrorInfo(code=exc.code.value, message=f"the job file {name} was rejected: " + "; ".join(problems),
                          phase="validation", details={"problems": problems, "file": name})
        self.backend.save_final(failure_result(job_id, error, finished_at=utc_now()))
        return f"failure result: {self.backend.settings.result_path(job_id)}"

    def _identity(self, claim: Claim) -> tuple[int, int, int, int] | None:
        try:
            return _identity_of(os.stat(claim.entry, dir_fd=self.folders[CLAIMS], follow_symlinks=False))
        except FileNotFoundError:
            return None

    def _finish(self, claim: Claim, result: dict[str, Any]) -> None:
        now = self._identity(claim)
        if now is None or now != claim.identity:
            self._input_vanished(claim, result, replaced=now is not None)
            return
        if result.get("status") == "completed":
            self._move(claim, DONE)
            return
        error = result.get("error") or {}
        lines = [f"job {result.get('job_id')} ended {result.get('status')}: {error.get('message')}"]
        if error.get("phase"):
            lines.append(f"phase: {error['phase']}")
        lines += list(error.get("details", {}).get("problems", []))
        lines.append(f"result: {self.backend.settings.result_path(str(result.get('job_id')))}")
        self._move(claim, FAILED, _reason(claim, str(error.get("code", ErrorCode.EXECUTION_ERROR)), lines))

    def _input_vanished(self, claim: Claim, result: dict[str, Any], *, replaced: bool) -> None:
        """The claimed file was removed, or replaced by another, while its job ran: said once, in a
        reason file in failed/ (a replacement goes there too: it is not the file that was submitted)."""
        job_id = str(result.get("job_id"))
        what = ("was replaced by another file (kept here under its name; it was never submitted)" if replaced
                else "was removed")
        lines = [f"the claimed file {CLAIMS}/{claim.entry} {what} while its job ran",
                 f"job {job_id} ended {result.get('status')}", f"result: {self.backend.settings.result_path(job_id)}"]
        reason = _reason(claim, INPUT_VANISHED, lines)
        logger.warning("bridge: %s %s while job %s ran", claim.name, what, job_id)
        if replaced:
            self._move(claim, FAILED, reason)
            return
        into = self.folders[FAILED]
        for dest in _candidate_names(claim.name):
            if not (_lexists(into, dest) or _lexists(into, _reason_name(dest))):
                write_atomic(_reason_name(dest), reason.encode("utf-8", "backslashreplace"), dir_fd=into)
                break
        self.tracked.discard(claim.token)

    def _move(self, claim: Claim, folder: str, reason: str | None = None) -> str:
        """Move the claimed file to ``folder`` (``done`` or ``failed``) under its own name (numbered if
        the name is taken), its reason file beside it; return the name it got."""
        into, claims = self.folders[folder], self.folders[CLAIMS]
        for dest in _candidate_names(claim.name):
            if _lexists(into, dest) or (reason is not None and _lexists(into, _reason_name(dest))
                                        and not _unfinished_move(into, dest, claim)):
                continue
            if reason is not None:
                write_atomic(_reason_name(dest), reason.encode("utf-8", "backslashreplace"), dir_fd=into)
            try:
                rename_noreplace(claim.entry, dest, src_dir_fd=claims, dst_dir_fd=into)
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - ten thousand files of one name
            raise FileExistsError(f"no free name for {claim.name} in {folder}")
        self.tracked.discard(claim.token)
        logger.info("bridge: %s → %s/%s", claim.name, folder, dest)
        return dest


def _identity_of(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_ctime_ns, info.st_size


def _reason(claim: Claim, code: str, problems: list[str], extra: list[str] | None = None) -> str:
    lines = [f"file: {claim.name}", f"error: {code}", *(f"  {p}" for p in problems), *(extra or [])]
    return "\n".join(lines) + "\n"


def _candidate_names(name: str) -> Iterator[str]:
    """``name``, then ``name`` numbered (``a.1.json``, ``a.2.json``…): where a moved file may go."""
    stem, dot, suffix = name.rpartition(".")
    yield name
    for n in range(1, 10_000):
        yield f"{stem}.{n}{dot}{suffix}"


def _reason_name(dest: str) -> str:
    return dest + ".reason.txt"


def _open_folders(jobs_dir: Path) -> dict[str, int]:
    """Open the jobs directory (made if missing) and its folders (made inside it if missing): the
    jobs directory under ``""``, each folder under its name. A folder that is a symbolic link, or
    not a directory, is refused: everything the bridge writes must stay inside the jobs directory."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    folders = {"": os.open(jobs_dir, _DIR_FLAGS)}
    try:
        for name in (CLAIMS, IDS, DONE, FAILED):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=folders[""])
            try:
                folders[name] = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=folders[""])
            except OSError as exc:
                what = "a symbolic link" if os.path.islink(jobs_dir / name) else f"unusable ({exc.strerror})"
                raise RuntimeError(f"the bridge's folder {jobs_dir / name} is {what}: it must be a real "
                                   f"directory inside {jobs_dir}; remove it and start again") from None
    except BaseException:
        for fd in folders.values():
            os.close(fd)
        raise
    return folders


def _unfinished_move(into: int, dest: str, claim: Claim) -> bool:
    """Whether the reason file of ``dest`` (whose file is not there) was written for ``claim`` by a
    bridge that died before moving the file beside it: the claim was adopted and the reason names
    its file. That name is then the claim's to take (the reason is written again)."""
    if not claim.recovered:
        return False
    head = f"file: {claim.name}\n".encode("utf-8", "backslashreplace")
    try:
        fd = os.open(_reason_name(dest), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=into)
    except OSError:
        return False
    try:
        return os.read(fd, len(head)) == head
    finally:
        os.close(fd)


def _lexists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _read_record(folder: int, name: str) -> dict[str, Any]:
    """A ``.ids/`` record: a link's text (``<token> <file>``), or a file's JSON (as bridges before
    wrote them)."""
    try:
        token, _, file = os.readlink(name, dir_fd=folder).partition(" ")
        return {"token": token, "file": file}
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    with os.fdopen(fd, "rb") as handle:
        try:
            value = json.loads(handle.read(65536))
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _scandir(folder: int) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return list(entries)


def _started_at(pid: int) -> float | None:
    """When the process ``pid`` started (seconds since the epoch); None when no process of that pid
    runs, a killed one its parent has not reaped yet (a zombie) included."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return 0.0  # cannot tell: a process runs, and it may be the claimer


def _claimed_by_it(entry: os.DirEntry[str], started: float) -> bool:
    """Whether a process that started at ``started`` can have made the claim ``entry``: one that
    started after the claim was made (its change time: the claim is a rename) got a dead bridge's pid.
    (The start time read from /proc may be up to a second early: such a process counts as the claimer.)"""
    try:
        return started <= entry.stat(follow_symlinks=False).st_ctime + _START_TIME_SLACK
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to adopt


def run(bridge: Bridge, interval: float, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run ``bridge`` until ``should_stop()``: tick; when there was nothing to do, wait for a file to
    arrive (inotify) or ``interval`` seconds, whichever comes first."""
    watch = DirectoryEvents(str(bridge.jobs_dir))
    try:
        while not should_stop():
            if not bridge.tick():
                watch.wait(interval)
    finally:
        watch.close()
