"""What only the file store promises: its journal (one file a job, torn lines skipped) and its
run leases (OFD byte-range locks on one shared file). The contract is in test_store.py."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import app.store.files as files
from app.protocol.states import JobState, JobStatus
from app.store.files import FileJobStore


@pytest.fixture
def store(tmp_path: Path) -> FileJobStore:
    return FileJobStore(tmp_path / "store")


def fresh() -> JobStatus:
    return JobStatus(job_id=f"job-{uuid.uuid4().hex[:10]}", operation="system.echo")


def journal(store: FileJobStore, job_id: str) -> Path:
    return store.root / "jobs" / f"{job_id}.jsonl"


def test_a_job_is_one_journal_of_records_in_order(store: FileJobStore) -> None:
    status = fresh()
    document = {"job_id": status.job_id, "payload": {"text": "two\nlines"}}
    store.create(status, document)
    store.claim_key("k", status.job_id)
    queued = store.update(status.job_id, lambda s: s.advance(JobState.QUEUED))
    view = store.open_run(status.job_id, "a", ttl=30, key="k")
    assert (view.status, view.leased, view.progress_count, view.key_holder) == (queued, True, 0, status.job_id)
    running = store.update(status.job_id, lambda s: s.advance(JobState.ASSIGNED).advance(JobState.RUNNING))
    store.append_progress(status.job_id, {"sequence": 0})
    ended = store.end_run(status.job_id, "a", lambda s: s.advance(JobState.COMPLETED), progress=[{"sequence": 1}])
    # the whole life of the job: its journal and its key's file, nothing else
    assert sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*")
                  if p.is_file() and p.parent.name != "locks") == sorted(
        [f"jobs/{status.job_id}.jsonl", f"keys/{files.hashlib.sha256(b'k').hexdigest()}.json", "runs.lock"])
    lines = [line for line in journal(store, status.job_id).read_bytes().split(b"\n") if line]
    assert [line[:5] for line in lines] == [b'{"d":', b'{"s":', b'{"s":', b'{"s":', b'{"p":', b'{"p":', b'{"s":']
    assert [JobStatus.model_validate_json(line[5:-1]).state for line in lines if line.startswith(b'{"s":')] == [
        JobState.PENDING, JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED]
    assert store.get(status.job_id) == ended and running.state is JobState.RUNNING
    assert store.document(status.job_id) == document
    assert store.progress(status.job_id) == [{"sequence": 0}, {"sequence": 1}]
    assert list(store.job_ids()) == [status.job_id]


def test_a_torn_last_record_is_skipped_and_never_breaks_the_job(store: FileJobStore) -> None:
    status = fresh()
    store.create(status, {"job_id": status.job_id})
    queued = store.update(status.job_id, lambda s: s.advance(JobState.QUEUED))
    store.append_progress(status.job_id, {"sequence": 0})
    whole = b'\n{"s":' + queued.advance(JobState.ASSIGNED).model_dump_json().encode() + b"}\n"
    for torn in (whole[:40], whole[:-1], whole[:-2], b'\n{"p":{"sequence":1}', b'\n{"p":{"sequence":1'):
        with open(journal(store, status.job_id), "ab") as out:  # what a writer killed mid-write leaves
            out.write(torn)
        assert store.get(status.job_id) == queued
        assert store.progress(status.job_id) == [{"sequence": 0}]
        view = store.open_run(status.job_id, "a", ttl=30)
        assert (view.status, view.progress_count) == (queued, 1)
        store.release_run(status.job_id, "a")
    # the next records start on a line of their own: the torn ones stay skipped, the job goes on
    store.append_progress(status.job_id, {"sequence": 1})
    assigned = store.update(status.job_id, lambda s: s.advance(JobState.ASSIGNED))
    assert store.get(status.job_id) == assigned
    assert store.progress(status.job_id) == [{"sequence": 0}, {"sequence": 1}]
    assert store.list(JobState.ASSIGNED) == [assigned]
    assert store.document(status.job_id) == {"job_id": status.job_id}


def test_a_status_in_the_middle_of_many_events_is_found(store: FileJobStore) -> None:
    status = fresh()
    store.create(status)
    queued = store.update(status.job_id, lambda s: s.advance(JobState.QUEUED))
    for i in range(0, 3000, 100):  # ~100 kB of events after the last status
        store.append_progress(status.job_id, *({"sequence": n, "message": "x" * 20} for n in range(i, i + 100)))
    assert store.get(status.job_id) == queued
    assert len(store.progress(status.job_id)) == 3000
    assert store.open_run(status.job_id, "a", ttl=30).progress_count == 3000


def test_progress_or_a_document_before_create_do_not_make_a_job(store: FileJobStore) -> None:
    status = fresh()
    store.append_progress(status.job_id, {"sequence": 0})
    store.put_document(status.job_id, {"early": True})
    assert store.get(status.job_id) is None and store.list() == []
    assert store.create(status) is True
    assert store.create(status) is False
    assert store.get(status.job_id) == status
    assert store.progress(status.job_id) == [{"sequence": 0}]
    assert store.document(status.job_id) == {"early": True}


def test_put_document_keeps_the_last_document(store: FileJobStore) -> None:
    status = fresh()
    store.create(status)
    assert store.document(status.job_id) is None
    store.put_document(status.job_id, {"n": 1})
    store.put_document(status.job_id, {"n": 2})
    assert store.document(status.job_id) == {"n": 2}
    assert store.get(status.job_id) == status
    assert store.document("job-never-created") is None


def test_a_torn_key_file_reads_as_free(store: FileJobStore) -> None:
    first, second = fresh(), fresh()
    store.create(first)
    store.create(second)
    assert store.claim_key("k", first.job_id).won_by(first.job_id)
    path = store.root / "keys" / f"{files.hashlib.sha256(b'k').hexdigest()}.json"
    path.write_bytes(path.read_bytes()[:10])  # a claim that died while writing: it never returned
    assert store.open_run(second.job_id, "a", ttl=30, key="k").key_holder is None
    assert store.claim_key("k", second.job_id).won_by(second.job_id)
    assert store.claim_key("k", first.job_id).holder == second.job_id


def _append_many(root: str, job_id: str, worker: int, barrier) -> None:
    store = FileJobStore(root)
    barrier.wait()
    for n in range(200):
        store.append_progress(job_id, {"worker": worker, "n": n, "pad": "y" * (n * 7 % 300)})
        if n % 50 == 0:
            store.update(job_id, lambda s: s.model_copy(update={"attempt": s.attempt + 1}))


def test_concurrent_appends_are_never_interleaved(store: FileJobStore) -> None:
    status = fresh()
    store.create(status)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(6)
    procs = [context.Process(target=_append_many, args=(str(store.root), status.job_id, w, barrier))
             for w in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    events = store.progress(status.job_id)
    assert len(events) == 6 * 200
    for w in range(6):
        assert [e["n"] for e in events if e["worker"] == w] == list(range(200))
    assert store.get(status.job_id).attempt == status.attempt + 6 * 4
    lines = [line for line in journal(store, status.job_id).read_bytes().split(b"\n") if line]
    assert len(lines) == 1 + 6 * 200 + 6 * 4  # every line a whole record


# --- run leases ---------------------------------------------------------------------------------

def test_struct_flock_is_the_kernels(tmp_path: Path) -> None:
    """The packed ``struct flock`` round-trips through F_OFD_GETLK: the kernel reads and writes
    its fields where we put them (a wrong layout would lock another byte, or fail with EINVAL)."""
    path = tmp_path / "runs.lock"
    a = os.open(path, os.O_RDWR | os.O_CREAT)
    b = os.open(path, os.O_RDWR)
    try:
        offset = (1 << 62) - 3
        fcntl.fcntl(a, fcntl.F_OFD_SETLK, struct.pack(files._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        with pytest.raises(OSError):  # another open file description of the same file: a conflict
            fcntl.fcntl(b, fcntl.F_OFD_SETLK, struct.pack(files._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        fcntl.fcntl(b, fcntl.F_OFD_SETLK, struct.pack(files._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset + 1, 1, 0))
        seen = fcntl.fcntl(b, fcntl.F_OFD_GETLK, struct.pack(files._FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        l_type, l_whence, l_start, l_len, l_pid = struct.unpack(files._FLOCK, seen)
        assert (l_type, l_whence, l_start, l_len, l_pid) == (fcntl.F_WRLCK, os.SEEK_SET, offset, 1, -1)
        assert struct.calcsize(files._FLOCK) == 32
    finally:
        os.close(a)
        os.close(b)


def test_leases_conflict_between_store_objects_of_one_process(store: FileJobStore) -> None:
    other = FileJobStore(store.root)
    assert store.acquire_run("job-l-1", "a", ttl=30) is True
    assert store.acquire_run("job-l-1", "a", ttl=30) is True  # re-entrant
    assert other.acquire_run("job-l-1", "b", ttl=30) is False
    assert other.acquire_run("job-l-2", "b", ttl=30) is True
    assert store.acquire_run("job-l-2", "a", ttl=30) is False
    store.release_run("job-l-1", "a")
    store.release_run("job-l-1", "a")  # twice is harmless
    assert other.acquire_run("job-l-1", "b", ttl=30) is True
    other.release_run("job-l-1", "b")
    status = fresh()
    store.create(status.advance(JobState.QUEUED))
    assert store.open_run(status.job_id, "a", ttl=30).leased is True
    assert other.open_run(status.job_id, "b", ttl=30).leased is False
    store.end_run(status.job_id, "a", lambda s: s.advance(JobState.CANCELLED))
    assert other.acquire_run(status.job_id, "b", ttl=30) is True


def test_jobs_whose_lease_offsets_collide_are_both_held(store: FileJobStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_lease_offset", lambda job_id: 12345)
    other = FileJobStore(store.root)
    assert store.acquire_run("job-x", "a", ttl=30) and store.acquire_run("job-y", "a", ttl=30)
    store.release_run("job-x", "a")
    assert other.acquire_run("job-z", "b", ttl=30) is False  # job-y still holds the byte
    store.release_run("job-y", "a")
    assert other.acquire_run("job-z", "b", ttl=30) is True


def _hold_then_fork(root: str, job_id: str, ready, out, pipe: int) -> None:
    store = FileJobStore(root)
    out.put(store.acquire_run(job_id, "holder", ttl=3))
    child = os.fork()  # a forked child (say a pool process) inherits the lock file's descriptor...
    if child == 0:  # ...and keeps it open, never touching the store (it answers through a pipe:
        os.write(pipe, b"up")  # a multiprocessing queue does not survive a fork)
        time.sleep(60)
        os._exit(0)
    out.put(child)
    ready.set()
    time.sleep(60)  # killed by the test while holding the lease


def test_a_lease_ends_with_its_process_not_with_its_forked_children(store: FileJobStore) -> None:
    job_id = f"job-{uuid.uuid4().hex[:10]}"
    context = multiprocessing.get_context("fork")
    ready, out = context.Event(), context.Queue()
    read_end, write_end = os.pipe()
    holder = context.Process(target=_hold_then_fork, args=(str(store.root), job_id, ready, out, write_end))
    holder.start()
    os.close(write_end)
    grandchild = None
    try:
        assert ready.wait(30) and out.get(timeout=5) is True
        grandchild = out.get(timeout=5)
        assert os.read(read_end, 2) == b"up"
        assert store.acquire_run(job_id, "me", ttl=3) is False
        os.kill(holder.pid, signal.SIGKILL)  # (not joined: its sentinel pipe lives in the forked child)
        deadline = time.monotonic() + 10  # while the forked child, with its copy of the fd, lives on
        while not store.acquire_run(job_id, "me", ttl=3):
            assert time.monotonic() < deadline, "the dead holder's lease never ended"
            time.sleep(0.05)
    finally:
        os.close(read_end)
        if grandchild is not None:
            os.kill(grandchild, signal.SIGKILL)
        holder.kill()
        holder.join(10)


def test_a_link_planted_at_a_journal_refuses_the_job_by_name_and_leaves_its_target_alone(
        start_worker: Any, tmp_path: Path) -> None:
    """Through a real worker's file drop and the Python API: a job whose journal name was taken by a
    link is refused with the link named, the dropped file kept in failed/ with that reason."""
    from app.intake import api
    from app.store.base import StoreFileRefused
    from tests.conftest import make_job, wait_for

    canary = tmp_path / "canary"
    canary.write_bytes(b"do not touch\n")
    jobs = tmp_path / "jobs"
    worker = start_worker(env={"GUESTKIT_BRIDGE": "1", "GUESTKIT_JOBS_DIR": str(jobs)})
    store_root = Path(os.environ["GUESTKIT_STORE_URL"].removeprefix("file://"))
    by_api, by_drop = make_job("system.echo", {"message": "api"}), make_job("system.echo", {"message": "drop"})
    for doc in (by_api, by_drop):
        journal_path = store_root / "jobs" / f"{doc['job_id']}.jsonl"
        journal_path.symlink_to(canary)
    with pytest.raises(StoreFileRefused, match=rf"{by_api['job_id']}\.jsonl is a symbolic link"):
        api.submit(by_api)
    (jobs / "drop.json").write_text(json.dumps(by_drop))
    reason_file = jobs / "failed" / "drop.json.reason.txt"
    reason = wait_for(lambda: reason_file.exists() and reason_file.read_text(), 30, "the dropped file in failed/")
    assert "error: STORE_FILE_REFUSED" in reason and f"{by_drop['job_id']}.jsonl is a symbolic link" in reason
    assert (jobs / "failed" / "drop.json").exists()
    assert canary.read_bytes() == b"do not touch\n"
    assert worker.proc.poll() is None, worker.text()[-3000:]
    from app.store.factory import open_store
    assert by_api["job_id"] not in set(open_store(os.environ["GUESTKIT_STORE_URL"]).job_ids())  # listings skip it
