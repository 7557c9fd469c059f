"""The file-drop bridge with real processes and real files: the seed's Quick Start, bad files, slow
writes, duplicates, bursts, two bridges on one directory, a bridge killed mid-batch, latency."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.intake.bridge import CLAIMS, HOST
from app.protocol.states import JobState, JobStatus
from tests.conftest import CELERY, ENV, ROOT, SEED_JOB, WorkerProcess, make_job, routed, wait_for

RESULTS = Path(ENV["GUESTKIT_RESULTS_DIR"])
# tests marked "broker" run once more on Redis and on RabbitMQ (./guestkit.sh test), where the in-worker
# bridge runs in the worker's event loop instead of Celery's timer thread


# --- helpers --------------------------------------------------------------------------------
def drop(jobs: Path, doc: dict[str, Any] | bytes, name: str | None = None) -> Path:
    """Write a job file the recommended way: under a hidden name, then rename it in."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    name = name or f"{doc['job_id'] if isinstance(doc, dict) else uuid.uuid4().hex}.json"
    tmp = jobs / f".{name}.tmp"
    tmp.write_bytes(raw)
    os.rename(tmp, jobs / name)
    return jobs / name


def result_of(job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((RESULTS / f"{job_id}-result.json").read_bytes())
    except FileNotFoundError:
        return None


def store_status(job_id: str) -> JobStatus | None:
    from app.celery import app

    return app.backend.store.get(job_id)


def names(folder: Path, suffix: str = ".json") -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(suffix)} if folder.is_dir() else set()


def sleep_job(runs: Path, seconds: float = 0.0, **extra: Any) -> dict[str, Any]:
    return make_job("test.sleep", {"seconds": seconds, "runs_file": str(runs), **extra})


def runs_per_job(runs: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in runs.read_text().splitlines()) if runs.exists() else Counter()


class BridgeProcess(WorkerProcess):
    """``celery -A app bridge`` as its own process; ready once it logs that it is watching."""

    def start(self, ready_timeout: float = 30.0) -> BridgeProcess:
        handle = open(self.log, "ab")
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(lambda: b"bridge: watching" in self.log.read_bytes()[offset:] or self.proc.poll() is not None,
                 ready_timeout, f"bridge {self.name} to be ready")
        assert self.proc.poll() is None, f"bridge {self.name} exited:\n{self.text()[-3000:]}"
        return self


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    return folder


@pytest.fixture
def bridge_worker(start_worker: Callable[..., WorkerProcess], jobs_dir: Path) -> Callable[..., WorkerProcess]:
    """Start a worker that runs the bridge on ``jobs_dir``."""
    def start(**kwargs: Any) -> WorkerProcess:
        env = {"GUESTKIT_BRIDGE": "1", "GUESTKIT_JOBS_DIR": str(jobs_dir), **kwargs.pop("env", {})}
        return start_worker(env=env, **kwargs)
    return start


@pytest.fixture
def start_bridge(tmp_path: Path, jobs_dir: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(name: str | None = None, extra_args: list[str] | None = None) -> BridgeProcess:
        name = name or f"bridge{len(started)}"
        args = [CELERY, "-A", "app", "bridge", "--jobs-dir", str(jobs_dir), *(extra_args or [])]
        proc = BridgeProcess(name, tmp_path / f"{name}.log", {**os.environ}, args)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


def all_ended(jobs: Path, count: int, folder: str = "done") -> Callable[[], bool]:
    return lambda: len(names(jobs / folder)) >= count


def assert_nothing_left(jobs: Path) -> None:
    assert names(jobs) == set(), "files left in the jobs directory"
    assert [p.name for p in (jobs / CLAIMS).iterdir()] == [], "claims left in .processing"


# --- the seed's Quick Start -------------------------------------------------------------------
def test_seed_quick_start(tmp_path: Path) -> None:
    """README's first command in an empty directory, the seed's job written into ./jobs: the seed's
    result appears in ./results and the job file in ./jobs/done/."""
    here = tmp_path / "quickstart"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTKIT_")}  # every default
    log = here / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([CELERY, "-A", "app", "worker", "-l", "info"], cwd=here, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, 30, "worker ready")
        assert proc.poll() is None, log.read_text()
        (here / "jobs").mkdir(exist_ok=True)
        shutil.copy(SEED_JOB, here / "jobs" / "test-echo-001.json")  # written in place, as `cat >` does
        result_file = here / "results" / "test-echo-001-result.json"
        wait_for(lambda: (here / "jobs" / "done" / "test-echo-001.json").exists(), 20, "job file in jobs/done")
        result = json.loads(result_file.read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert result["job_id"] == "test-echo-001"
    assert result["status"] == "completed"
    datetime.fromisoformat(result["completed_at"])
    assert result["worker_id"]
    summary = result["execution_summary"]
    assert set(summary) >= {"started_at", "duration_seconds", "attempt", "idempotency_key"}
    assert summary["attempt"] == 1 and summary["idempotency_key"] == "echo-test-1"
    assert result["outputs"]["artifacts"] == []
    assert result["data"] == json.loads(SEED_JOB.read_text())["payload"]["data"]
    assert not (here / "jobs" / "test-echo-001.json").exists()


# --- bad files ------------------------------------------------------------------------------
@pytest.mark.broker
def test_bad_files_go_to_failed_with_reasons(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path,
                                             tmp_path: Path) -> None:
    bridge_worker()
    contract = make_job(priority=11)
    contract["created_at"] = "2026-01-30T15:00:00"  # naive: an error too
    unknown = make_job("nope.missing")
    target = tmp_path / "target.json"
    target.write_text(json.dumps(make_job()))
    good = make_job(data={"after": "the bad ones"})
    cases: dict[str, str] = {
        "invalid.json": "invalid JSON at line 1",
        "contract.json": "execution.priority",
        "unknown-op.json": "'nope.missing' is not supported",
        "empty.json": "is empty",
        "binary.json": "not valid UTF-8",
        "dir.json": "is a directory",
        "link.json": "symbolic link",
        "fifo.json": "not a regular file",
        "array.json": "must be a JSON object",
        "huge.json": "larger than the limit",
        "badid.json": "job_id",
    }
    (jobs_dir / "invalid.json").write_text('{"job_id": "x-invalid-json", "version": ')
    drop(jobs_dir, contract, "contract.json")
    drop(jobs_dir, unknown, "unknown-op.json")
    (jobs_dir / "empty.json").write_bytes(b"")
    (jobs_dir / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 10)
    (jobs_dir / "dir.json").mkdir()
    (jobs_dir / "link.json").symlink_to(target)
    os.mkfifo(jobs_dir / "fifo.json")
    drop(jobs_dir, b"[1, 2, 3]", "array.json")
    drop(jobs_dir, b'{"pad": "' + b"x" * (1024 * 1024) + b'"}', "huge.json")
    drop(jobs_dir, {**make_job(), "job_id": "../../etc/passwd"}, "badid.json")
    if os.geteuid() != 0:  # root reads everything: this case needs an ordinary user
        drop(jobs_dir, make_job(), "unreadable.json").chmod(0)
        cases["unreadable.json"] = "cannot read"
    drop(jobs_dir, good, "good.json")

    failed = jobs_dir / "failed"
    wait_for(lambda: all((failed / f"{name}.reason.txt").exists() for name in cases), 30, "every bad file in failed/")
    wait_for(lambda: (jobs_dir / "done" / "good.json").exists(), 20, "the good file after the bad ones in done/")
    for name, expected in cases.items():
        assert os.path.lexists(failed / name), name
        reason = (failed / f"{name}.reason.txt").read_text()
        assert f"file: {name}" in reason and expected in reason, (name, reason)
        assert str(jobs_dir) not in reason, "the reason names the file, not the bridge's claim path"
    assert (failed / "dir.json").is_dir() and (failed / "link.json").is_symlink()
    # a failure result wherever a job_id could be read
    for doc, code, field in ((contract, "VALIDATION_ERROR", "created_at"), (unknown, "UNSUPPORTED_OPERATION", "")):
        result = result_of(doc["job_id"])
        assert result is not None and result["status"] == "failed", doc["job_id"]
        assert result["error"]["code"] == code and field in result["error"]["message"]
        assert result["job_id"] in (failed / f"{'contract' if doc is contract else 'unknown-op'}.json.reason.txt"
                                    ).read_text()
    assert "execution.priority" in " ".join(result_of(contract["job_id"])["error"]["details"]["problems"])
    assert result_of("x-invalid-json") is None  # not readable: invalid JSON
    assert not (RESULTS / "passwd-result.json").exists()
    assert result_of(good["job_id"])["status"] == "completed"
    assert_nothing_left(jobs_dir)


@pytest.mark.broker
def test_failed_job_file_goes_to_failed(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path) -> None:
    bridge_worker()
    boom = make_job("test.boom", {"seconds": 0})
    drop(jobs_dir, boom, "anything-at-all.json")  # the job_id need not match the file name
    reason_file = jobs_dir / "failed" / "anything-at-all.json.reason.txt"
    wait_for(reason_file.exists, 20, "failed job's file in failed/")
    reason = reason_file.read_text()
    assert "EXECUTION_ERROR" in reason and "divided by zero" in reason and boom["job_id"] in reason
    assert result_of(boom["job_id"])["status"] == "failed"


# --- arrivals -------------------------------------------------------------------------------
@pytest.mark.broker
def test_slow_write_waits_until_complete(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path,
                                         tmp_path: Path) -> None:
    # a half-written file is waited for while it changed within the last GUESTKIT_BRIDGE_SETTLE
    # seconds: 30 here, so that a slow first look by the bridge (a loaded machine) cannot find the
    # half quiet for the default 1 s and judge it bad before the test writes the rest
    bridge_worker(env={"GUESTKIT_BRIDGE_SETTLE": "30"})
    runs = tmp_path / "runs"
    doc = sleep_job(runs)
    raw = json.dumps(doc, indent=2).encode()
    with open(jobs_dir / "slow.json", "wb") as writer:  # written in place, in two parts
        writer.write(raw[: len(raw) // 2])
        writer.flush()
        wait_for(lambda: not (jobs_dir / "slow.json").exists(), 20, "the bridge to claim the half-written file")
        writer.write(raw[len(raw) // 2:])
    wait_for(lambda: (jobs_dir / "done" / "slow.json").exists(), 20, "slow file in done/")
    assert runs_per_job(runs) == {doc["job_id"]: 1}
    assert not (jobs_dir / "failed" / "slow.json").exists()


@pytest.mark.broker
def test_files_present_before_start_and_duplicates(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path,
                                                   tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = sleep_job(runs)
    waiting = [sleep_job(runs) for _ in range(20)]
    for doc in waiting:
        drop(jobs_dir, doc)
    drop(jobs_dir, first, "a-first.json")
    drop(jobs_dir, first, "b-copy.json")  # the same job_id again, under another name
    bridge_worker()
    wait_for(all_ended(jobs_dir, 21), 30, "files dropped while the bridge was down")
    wait_for(lambda: (jobs_dir / "failed" / "b-copy.json.reason.txt").exists(), 10, "duplicate in failed/")
    assert names(jobs_dir / "done") == {f"{d['job_id']}.json" for d in waiting} | {"a-first.json"}
    reason = (jobs_dir / "failed" / "b-copy.json.reason.txt").read_text()
    assert "a-first.json" in reason and first["job_id"] in reason
    assert result_of(first["job_id"])["status"] == "completed"  # the duplicate did not overwrite it
    # the same file name dropped again later (another job): kept, numbered
    again = sleep_job(runs)
    drop(jobs_dir, again, "a-first.json")
    wait_for(lambda: (jobs_dir / "done" / "a-first.1.json").exists(), 20, "second a-first.json in done/")
    assert json.loads((jobs_dir / "done" / "a-first.1.json").read_text())["job_id"] == again["job_id"]
    counts = runs_per_job(runs)
    assert set(counts.values()) == {1} and len(counts) == 22
    assert_nothing_left(jobs_dir)


@pytest.mark.slow
def test_burst_of_2000_files(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path) -> None:
    bridge_worker(concurrency=2)
    docs = [make_job(data={"n": n}) for n in range(2000)]
    for doc in docs:
        drop(jobs_dir, doc)
    wait_for(lambda: len(names(jobs_dir / "done")) + len(names(jobs_dir / "failed")) >= len(docs), 120,
             "2000 files to end")
    assert names(jobs_dir / "failed") == set()
    assert names(jobs_dir / "done") == {f"{d['job_id']}.json" for d in docs}
    statuses = {result_of(d["job_id"])["status"] for d in docs}
    assert statuses == {"completed"}
    assert_nothing_left(jobs_dir)


# --- several bridges, crashes ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.broker
def test_two_bridges_on_one_directory(start_worker: Callable[..., WorkerProcess],
                                      start_bridge: Callable[..., BridgeProcess], jobs_dir: Path,
                                      tmp_path: Path) -> None:
    start_worker(concurrency=2)
    one, two = start_bridge("one"), start_bridge("two")
    runs = tmp_path / "runs"
    docs = [sleep_job(runs) for _ in range(300)]
    for doc in docs:
        drop(jobs_dir, doc)
    wait_for(all_ended(jobs_dir, len(docs)), 60, "300 files to end")
    counts = runs_per_job(runs)
    assert counts == {d["job_id"]: 1 for d in docs}, "each file submitted and run once"
    for doc in docs:
        assert [t.state for t in store_status(doc["job_id"]).history].count(JobState.RUNNING) == 1
    submitted = [p.text().count("submitted as job") for p in (one, two)]
    assert sum(submitted) == len(docs)
    assert_nothing_left(jobs_dir)


@pytest.mark.slow
@pytest.mark.broker
def test_bridge_killed_mid_batch_then_restarted(start_worker: Callable[..., WorkerProcess],
                                                start_bridge: Callable[..., BridgeProcess], jobs_dir: Path,
                                                tmp_path: Path) -> None:
    """SIGKILL the bridge three times while a batch is under way; each restart takes over."""
    start_worker(concurrency=2)
    runs = tmp_path / "runs"
    docs = [sleep_job(runs, 0.01) for _ in range(400)]
    bridge = start_bridge("b0")
    for cycle in range(1, 4):
        for doc in docs[(cycle - 1) * 100: cycle * 100]:
            drop(jobs_dir, doc)
        wait_for(lambda c=cycle: len(names(jobs_dir / "done")) >= 100 * (c - 1) + 20, 30, "the batch under way")
        bridge.kill()  # SIGKILL, mid-batch
        orphans = len(list((jobs_dir / CLAIMS).iterdir()))
        assert len(names(jobs_dir)) + orphans > 0, "the kill came too late to test anything"
        bridge = start_bridge(f"b{cycle}")
        wait_for(lambda b=bridge, n=orphans: b.text().count("adopting") == n, 10,
                 "the restarted bridge to take over the dead one's claims")
    for doc in docs[300:]:
        drop(jobs_dir, doc)
    wait_for(all_ended(jobs_dir, len(docs)), 60, "every file to end after the restarts")
    assert runs_per_job(runs) == {d["job_id"]: 1 for d in docs}, "nothing lost, nothing run twice"
    assert_nothing_left(jobs_dir)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.broker
def test_claims_of_a_dead_bridge_are_recovered_exactly_once(start_worker: Callable[..., WorkerProcess],
                                                            start_bridge: Callable[..., BridgeProcess],
                                                            jobs_dir: Path, tmp_path: Path) -> None:
    """Every point a bridge can die at between claim and publish, set up exactly: the restarted bridge
    publishes what never reached the broker and nothing twice."""
    from app.celery import app
    from app.intake import api

    store = app.backend.store
    runs = tmp_path / "runs"
    claims = jobs_dir / CLAIMS
    claims.mkdir()
    dead = _dead_pid()

    def orphan(doc: dict[str, Any]) -> None:
        (claims / f"{dead}@{HOST}@{uuid.uuid4().hex[:16]}@{doc['job_id']}.json").write_text(json.dumps(doc))

    never_created, pending, queued_lost, published = (sleep_job(runs) for _ in range(4))
    orphan(never_created)  # died right after the claim
    store.create(JobStatus(job_id=pending["job_id"], operation="test.sleep"))  # died after creating the job
    orphan(pending)
    store.create(JobStatus(job_id=queued_lost["job_id"], operation="test.sleep").advance(JobState.QUEUED))
    orphan(queued_lost)  # died after marking it queued, before the broker had it
    api.submit(published)  # died after publishing: the message waits in the broker
    orphan(published)
    bridge = start_bridge("restarted")
    start_worker(concurrency=2)
    wait_for(all_ended(jobs_dir, 4), 30, "the four orphaned claims to end")
    docs = (never_created, pending, queued_lost, published)
    assert runs_per_job(runs) == {d["job_id"]: 1 for d in docs}
    republished = {line.split("job ")[1].split()[0] for line in bridge.text().splitlines()
                   if "publishing it (again)" in line}
    # whatever was not surely in the broker is published again; the duplicate never runs twice
    assert republished == {pending["job_id"], queued_lost["job_id"], published["job_id"]}
    assert_nothing_left(jobs_dir)


def test_a_bridge_killed_between_the_reason_and_the_move_leaves_the_file_under_its_own_name(
        jobs_dir: Path) -> None:
    """A bridge writes a failed file's reason, then moves the file beside it. Killed between the two
    (found by reasoning from chaos, issue 27), the bridge that adopts the claim moves the file to
    failed/ under its own name with its reason; the file went to ``<name>.1.json`` instead, where
    nothing that looks for ``failed/<name>`` finds it, leaving the reason without its file."""
    import app.celery  # noqa: F401 - the guestkit app is the one the bridge submits through
    from app.intake.bridge import Bridge, BridgeConfig

    claims, failed = jobs_dir / CLAIMS, jobs_dir / "failed"
    claims.mkdir()
    failed.mkdir()
    name = "half-moved.json"
    (claims / f"{_dead_pid()}@{HOST}@{uuid.uuid4().hex[:16]}@{name}").write_text('{"version": "1.0"')
    (failed / f"{name}.reason.txt").write_text(f"file: {name}\nerror: INVALID_JSON\n")  # what it wrote first
    with Bridge(BridgeConfig(jobs_dir=jobs_dir, settle=0.0, budget=5.0)) as bridge:
        bridge.tick()
    assert sorted(p.name for p in failed.iterdir()) == [name, f"{name}.reason.txt"]
    assert (failed / name).read_text() == '{"version": "1.0"'
    assert (failed / f"{name}.reason.txt").read_text().startswith(f"file: {name}\nerror: ")
    assert not list(claims.iterdir())


@contextlib.contextmanager
def _claimer(kind: str) -> Iterator[int]:
    """A process standing for the bridge that made a claim: ``live`` runs, ``zombie`` was killed and
    not reaped (``os.kill(pid, 0)`` still finds it)."""
    import psutil

    proc = subprocess.Popen(["sleep", "60"])
    try:
        if kind == "zombie":
            os.kill(proc.pid, signal.SIGKILL)
            wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 10, "the zombie")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("claimer", ["live", "zombie"])
def test_claims_are_adopted_only_from_a_bridge_that_is_gone(jobs_dir: Path, claimer: str) -> None:
    """A killed bridge its parent has not reaped yet (a zombie, as in a container whose init does not
    reap) is gone: its claims are adopted (they stayed claimed for ever: the pid answered a signal).
    A live one keeps its claims."""
    import app.celery  # noqa: F401 - the guestkit app is the one the bridge submits through
    from app.intake.bridge import Bridge, BridgeConfig

    claims = jobs_dir / CLAIMS
    claims.mkdir()
    with _claimer(claimer) as pid:
        claim = claims / f"{pid}@{HOST}@{uuid.uuid4().hex[:16]}@claimed.json"
        claim.write_text("not json")
        with Bridge(BridgeConfig(jobs_dir=jobs_dir, settle=0.0, budget=5.0)) as bridge:
            bridge.tick()
        if claimer == "live":
            assert claim.exists() and not list((jobs_dir / "failed").iterdir())
        else:
            assert not claim.exists() and (jobs_dir / "failed" / "claimed.json").exists()


def test_a_process_that_started_after_a_claim_did_not_make_it(tmp_path: Path) -> None:
    """The pid of a dead bridge given to a later process: that process is not the claimer (a claim is
    made by a rename, which sets its change time)."""
    from app.intake.bridge import _claimed_by_it

    (tmp_path / "claim").write_text("")
    (entry,) = os.scandir(tmp_path)
    claimed = entry.stat(follow_symlinks=False).st_ctime
    assert _claimed_by_it(entry, claimed - 3600)  # the bridge that made it started before it
    assert _claimed_by_it(entry, claimed + 0.2)  # within the clocks' rounding: taken as the claimer
    assert not _claimed_by_it(entry, claimed + 5)  # started later: the pid was reused


# --- latency --------------------------------------------------------------------------------
def _drop_to_running(jobs: Path, count: int) -> list[float]:
    """Seconds from the rename into the jobs directory to the job's ``running`` transition."""
    latencies = []
    for _ in range(count):
        doc = make_job()
        tmp = jobs / f".{doc['job_id']}.tmp"
        tmp.write_text(json.dumps(doc))
        dropped = time.time()
        os.rename(tmp, jobs / f"{doc['job_id']}.json")
        wait_for(lambda d=doc: result_of(d["job_id"]), 20, "the job to end")
        running = next(t.at for t in store_status(doc["job_id"]).history if t.state is JobState.RUNNING)
        latencies.append(running.timestamp() - dropped)
    return latencies


def _report(label: str, latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"\n{label}: drop→running p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, n={len(ordered)}")
    return p50, p95


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.parametrize("interval", ["0.05", "0.01"])
def test_latency_in_worker_bridge(bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path, interval: str) -> None:
    bridge_worker(env={"GUESTKIT_BRIDGE_INTERVAL": interval})
    _drop_to_running(jobs_dir, 3)  # warm the pool's processes
    p50, _ = _report(f"in-worker bridge (timer {interval} s)", _drop_to_running(jobs_dir, 30))
    assert p50 < 0.1


def test_latency_standalone_bridge(start_worker: Callable[..., WorkerProcess],
                                   start_bridge: Callable[..., BridgeProcess], jobs_dir: Path) -> None:
    start_worker()
    start_bridge()
    _drop_to_running(jobs_dir, 3)
    p50, _ = _report("standalone bridge (inotify)", _drop_to_running(jobs_dir, 30))
    assert p50 < 0.1


# --- small pieces -----------------------------------------------------------------------------
def test_rename_noreplace_and_claim_names(tmp_path: Path) -> None:
    from app.intake.bridge import claim_name, parse_claim_name, rename_noreplace

    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b"
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
    assert parse_claim_name(claim_name("tok", "odd@name.json")) == (os.getpid(), HOST, "tok", "odd@name.json")
    assert parse_claim_name("not-a-claim.json") is None


# --- files that vanish while their job runs ----------------------------------------------------
@pytest.mark.broker
@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_claimed_file_that_vanishes_while_its_job_runs_is_reported_once(
        bridge_worker: Callable[..., WorkerProcess], jobs_dir: Path, tmp_path: Path, how: str) -> None:
    worker = bridge_worker()
    started = tmp_path / "started"
    doc = sleep_job(tmp_path / "runs", 1.0, started_file=str(started))
    drop(jobs_dir, doc, "vanishing.json")
    wait_for(started.exists, 30, "the job to start")
    (claimed,) = [p for p in (jobs_dir / CLAIMS).iterdir() if p.name.endswith("@vanishing.json")]
    claimed.unlink()
    if how == "replaced":
        claimed.write_text('{"not": "the submitted file"}')
    after = make_job(data={"after": "the vanished one"})
    drop(jobs_dir, after)  # the bridge goes on
    reason_file = jobs_dir / "failed" / "vanishing.json.reason.txt"
    wait_for(reason_file.exists, 30, "the vanished file's reason")
    wait_for(lambda: (jobs_dir / "done" / f"{after['job_id']}.json").exists(), 30, "the next file in done/")
    reason = reason_file.read_text()
    assert "error: INPUT_VANISHED" in reason and f"job {doc['job_id']} ended completed" in reason
    assert ("was replaced by another file" if how == "replaced" else "was removed") in reason
    assert result_of(doc["job_id"])["status"] == "completed"  # the job itself ran from what was submitted
    replacement = jobs_dir / "failed" / "vanishing.json"
    assert replacement.exists() == (how == "replaced")
    if how == "replaced":
        assert json.loads(replacement.read_text()) == {"not": "the submitted file"}
    assert not (jobs_dir / "done" / "vanishing.json").exists()
    assert worker.text().count("vanishing.json was") == 1 and "Traceback" not in worker.text()
    assert [p.name for p in (jobs_dir / CLAIMS).iterdir()] == []


@pytest.mark.broker
def test_files_are_taken_in_the_order_they_came_not_by_name(bridge_worker: Callable[..., WorkerProcess],
                                                            jobs_dir: Path, tmp_path: Path) -> None:
    """A backlog by modification time then name; then new files in the order they arrive."""
    runs = tmp_path / "runs"
    backlog = {"zz-oldest.json": 1_700_000_100, "aa-newer.json": 1_700_000_200, "mm-newest.json": 1_700_000_300}
    docs = {}
    for name, mtime in backlog.items():
        docs[name] = sleep_job(runs)
        path = drop(jobs_dir, docs[name], name)
        os.utime(path, (mtime, mtime))
    bridge_worker(concurrency=1)
    for name in ("zz-late-1.json", "aa-late-2.json"):
        docs[name] = sleep_job(runs)
        drop(jobs_dir, docs[name], name)
    wait_for(all_ended(jobs_dir, len(docs)), 60, "every file in done/")
    order = [line.split()[0] for line in runs.read_text().splitlines()]
    assert order == [docs[name]["job_id"] for name in ("zz-oldest.json", "aa-newer.json", "mm-newest.json",
                                                        "zz-late-1.json", "aa-late-2.json")]


# --- the bridge's own bookkeeping, in this process ----------------------------------------------
def _in_process_bridge(jobs: Path, **config: Any) -> Any:
    from app.celery import app
    from app.intake.bridge import Bridge, BridgeConfig

    return Bridge(BridgeConfig(jobs_dir=jobs, settle=0.0, **config), app)


def _unserved(doc: dict[str, Any]) -> dict[str, Any]:
    """Routed to a pool no worker serves: these tests follow intake only."""
    return routed(doc, f"nobody-{uuid.uuid4().hex[:8]}")


def test_a_job_id_recorded_by_an_earlier_bridge_version_stays_taken(jobs_dir: Path) -> None:
    """``.ids/`` records written as JSON files (before they were links) still make a second file with
    the same job_id a duplicate, named after the file that took it first."""
    doc = _unserved(make_job())
    (jobs_dir / ".ids").mkdir()
    (jobs_dir / ".ids" / doc["job_id"]).write_text(json.dumps({"token": "0123abcd", "file": "earlier.json"}))
    drop(jobs_dir, doc, "later.json")
    with _in_process_bridge(jobs_dir) as bridge:
        wait_for(lambda: bridge.tick() is not None and (jobs_dir / "failed" / "later.json").exists(), 10,
                 "the duplicate in failed/")
    reason = (jobs_dir / "failed" / "later.json.reason.txt").read_text()
    assert "error: DUPLICATE_JOB_ID" in reason and "'earlier.json'" in reason
    assert store_status(doc["job_id"]) is None, "the duplicate was not submitted"


def test_a_job_id_is_recorded_once_and_read_back(jobs_dir: Path) -> None:
    """The record of who took a job_id, then a second file with that job_id: a duplicate."""
    doc = _unserved(make_job())
    drop(jobs_dir, doc, "first.json")
    with _in_process_bridge(jobs_dir) as bridge:
        wait_for(lambda: bridge.tick() is not None and doc["job_id"] in bridge._by_job, 10, "the first file's job")
        drop(jobs_dir, doc, "second.json")
        wait_for(lambda: bridge.tick() is not None and (jobs_dir / "failed" / "second.json").exists(), 10,
                 "the second file in failed/")
    assert "'first.json'" in (jobs_dir / "failed" / "second.json.reason.txt").read_text()
    assert store_status(doc["job_id"]) is not None and list(jobs_dir.glob(".ids/.*")) == []


def test_looks_for_results_keep_to_the_tick_budget(jobs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of jobs in flight whose results are not there: one tick looks for as many as its
    budget allows (here: one), not for every one of them."""
    from app.intake.bridge import Claim

    with _in_process_bridge(jobs_dir, budget=1e-9) as bridge:
        looked: list[str] = []
        monkeypatch.setattr(bridge.backend, "read_result", lambda job_id: looked.append(job_id))
        for n in range(5000):
            claim = Claim(0.0, f"t{n}", f"f{n}.json", f"e{n}", job_id=f"job-{n}")
            bridge._by_job[claim.job_id] = claim
            bridge.inflight.append(claim)
        bridge.tick()
        assert len(looked) == 1
        bridge.tick()
        assert len(looked) == 2
