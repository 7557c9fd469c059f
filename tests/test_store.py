"""The job store contract, on every implementation: file (embedded default) and Redis."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.protocol.states import InvalidTransition, JobState, JobStatus, utc_now
from app.store.base import Admission, JobStore
from app.store.factory import open_store
from tests.brokers import REDIS_URL, require_service


@pytest.fixture(params=["file", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file://{tmp_path / 'store'}"
    else:
        require_service(REDIS_URL)
        yield f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(store_url: str) -> JobStore:
    return open_store(store_url)


def fresh(job_id: str | None = None, **fields) -> JobStatus:
    return JobStatus(job_id=job_id or f"job-{uuid.uuid4().hex[:10]}", operation="system.echo", **fields)


def test_create_is_once_per_job_id(store: JobStore) -> None:
    status = fresh()
    assert store.create(status) is True
    assert store.create(status.advance(JobState.QUEUED)) is False
    assert store.get(status.job_id).state is JobState.PENDING
    assert store.get("job-never-created") is None


def test_update_applies_the_state_machine_and_refuses_atomically(store: JobStore) -> None:
    status = fresh()
    store.create(status)
    store.update(status.job_id, lambda s: s.advance(JobState.QUEUED))
    with pytest.raises(InvalidTransition):
        store.update(status.job_id, lambda s: s.advance(JobState.COMPLETED))
    assert store.get(status.job_id).state is JobState.QUEUED
    with pytest.raises(KeyError):
        store.update("job-missing-x", lambda s: s)


def test_create_keeps_the_document_with_the_status(store: JobStore) -> None:
    status = fresh()
    document = {"job_id": status.job_id, "payload": {"data": {"n": 1}}}
    assert store.create(status, document) is True
    assert store.document(status.job_id) == document
    assert store.create(status, {"other": True}) is False  # nothing written for an existing job
    assert store.document(status.job_id) == document


def test_admitting_a_job_records_it_and_claims_its_key_at_once(store: JobStore) -> None:
    first = fresh(idempotency_key="k-admit").advance(JobState.QUEUED)
    second = fresh(idempotency_key="k-admit").advance(JobState.QUEUED)
    admitted = store.admit(first, {"job_id": first.job_id})
    assert admitted.created and admitted.claim is not None and admitted.claim.won_by(first.job_id)
    assert store.get(first.job_id) == first and store.document(first.job_id) == {"job_id": first.job_id}
    duplicate = store.admit(second, {"job_id": second.job_id})  # first is still queued: it keeps the key
    assert duplicate.created and (duplicate.claim.holder, duplicate.claim.holder_state) == (first.job_id,
                                                                                            JobState.QUEUED)
    assert store.admit(first, {"job_id": "again"}) == Admission(created=False, claim=None)
    assert store.admit(fresh().advance(JobState.QUEUED), {}).claim is None  # no key, nothing claimed


def test_update_from_an_expected_status_never_overwrites_a_newer_one(store: JobStore) -> None:
    status = fresh()
    store.create(status)
    queued = store.update(status.job_id, lambda s: s.advance(JobState.QUEUED), expected=status)
    assert store.get(status.job_id) == queued
    # someone else moves the job on: a writer holding the older status must not undo that
    store.update(status.job_id, lambda s: s.advance(JobState.CANCELLED))
    with pytest.raises(InvalidTransition):  # applied to what is stored (cancelled), not to `queued`
        store.update(status.job_id, lambda s: s.advance(JobState.ASSIGNED), expected=queued)
    assert store.get(status.job_id).state is JobState.CANCELLED
    with pytest.raises(KeyError):
        store.update("job-missing-y", lambda s: s, expected=status)


def test_a_run_opens_and_ends_with_its_lease_progress_and_state(store: JobStore, store_url: str) -> None:
    status = fresh().advance(JobState.QUEUED)
    store.create(status)
    store.append_progress(status.job_id, {"sequence": 0})
    store.request_cancel(status.job_id)
    view = store.open_run(status.job_id, "owner-a", ttl=30)
    assert (view.status, view.leased, view.cancel_requested, view.progress_count) == (status, True, True, 1)
    other = open_store(store_url)
    assert other.open_run(status.job_id, "owner-b", ttl=30).leased is False  # one holder at a time
    running = store.update(status.job_id, lambda s: s.advance(JobState.ASSIGNED).advance(JobState.RUNNING),
                           expected=view.status)
    ended = store.end_run(status.job_id, "owner-a", lambda s: s.advance(JobState.COMPLETED), expected=running,
                          progress=[{"sequence": 1}, {"sequence": 2}])
    assert ended.state is JobState.COMPLETED and store.get(status.job_id) == ended
    assert [e["sequence"] for e in store.progress(status.job_id)] == [0, 1, 2]
    assert other.acquire_run(status.job_id, "owner-b", ttl=30) is True  # the lease ended with the run
    assert store.open_run("job-never-created", "owner-a", ttl=30).status is None


def test_a_run_starts_at_once_only_when_nothing_stands_in_the_way(store: JobStore, store_url: str) -> None:
    """open_run(start=(expected, started)) writes ``started`` only if the lease is taken, the stored
    status is ``expected``, no cancel was asked for and the job holds its key; else nothing changes."""

    def case(*, key: str | None = "k", cancel: bool = False, stale: bool = False, other_owner: bool = False,
             holder: str | None = None) -> tuple[bool, JobStatus, JobStatus]:
        queued = fresh(idempotency_key=key).advance(JobState.QUEUED)
        store.admit(queued, {"job_id": queued.job_id})
        if holder is not None:  # the key belongs to another (running) job
            other = fresh(idempotency_key=key).advance(JobState.QUEUED)
            store.create(other)
            store.update(queued.job_id, lambda s: s.advance(JobState.CANCELLED))  # frees the key ...
            store.claim_key(key, other.job_id)  # ... which the other job takes
            queued = store.get(queued.job_id)
        if cancel:
            store.request_cancel(queued.job_id)
        expected = queued
        if stale:  # someone moved it on after it was queued (e.g. a retry); the message is older
            store.update(queued.job_id, lambda s: s.model_copy(update={"updated_at": utc_now()}))
        if other_owner:
            assert open_store(store_url).acquire_run(queued.job_id, "someone-else", ttl=30)
        started = expected.advance(JobState.ASSIGNED, worker_id="w").advance(JobState.RUNNING, worker_id="w") \
            if expected.state is JobState.QUEUED else expected
        view = store.open_run(queued.job_id, "me", ttl=30, key=key, start=(expected, started))
        return view.started, store.get(queued.job_id), started

    done, stored, started = case()
    implements = store_url.startswith("redis")  # the file store leaves it to update(): local writes are cheap
    assert done == implements and (stored == started if done else stored.state is JobState.QUEUED)
    done, stored, started = case(key=None)
    assert done == implements
    for refused in (dict(cancel=True), dict(stale=True), dict(other_owner=True), dict(holder="other")):
        done, stored, started = case(**refused)
        assert not done and stored.state is not JobState.RUNNING, refused


def test_a_run_sees_whether_its_job_holds_its_key(store: JobStore) -> None:
    """Where a store reads the key's holder with the run, it never names the job wrongly."""
    mine, other = fresh().advance(JobState.QUEUED), fresh().advance(JobState.QUEUED)
    store.create(mine)
    store.create(other)
    store.claim_key("k-mine", mine.job_id)
    store.claim_key("k-other", other.job_id)
    assert store.open_run(mine.job_id, "a", ttl=30, key="k-mine").key_holder in (None, mine.job_id)
    store.release_run(mine.job_id, "a")
    assert store.open_run(mine.job_id, "a", ttl=30, key="k-other").key_holder in (None, other.job_id)
    store.release_run(mine.job_id, "a")
    assert store.open_run(mine.job_id, "a", ttl=30, key="k-free").key_holder is None


def test_progress_events_are_kept_in_order(store: JobStore) -> None:
    for i in range(5):
        store.append_progress("job-p-000001", {"sequence": i})
    store.append_progress("job-p-000001", {"sequence": 5}, {"sequence": 6})
    store.append_progress("job-p-000001")
    assert [e["sequence"] for e in store.progress("job-p-000001")] == [0, 1, 2, 3, 4, 5, 6]
    assert store.latest_progress("job-p-000001") == {"sequence": 6}
    assert store.progress("job-p-nothing") == []


def test_cancel_requests_are_remembered(store: JobStore) -> None:
    assert not store.cancel_requested("job-c-000001")
    store.request_cancel("job-c-000001")
    assert store.cancel_requested("job-c-000001")
    assert open_store(getattr(store, "url", None) or f"file://{store.root}").cancel_requested("job-c-000001")


def test_list_filters_by_state(store: JobStore) -> None:
    a, b = fresh(), fresh()
    store.create(a)
    store.create(b)
    store.update(b.job_id, lambda s: s.advance(JobState.QUEUED))
    assert {s.job_id for s in store.list()} == {a.job_id, b.job_id}
    assert [s.job_id for s in store.list(JobState.QUEUED)] == [b.job_id]


def test_key_claim_follows_the_holders_state(store: JobStore) -> None:
    key = f"key-{uuid.uuid4().hex}"
    first, second = fresh(), fresh()
    store.create(first)
    store.create(second)
    assert store.claim_key(key, first.job_id).won_by(first.job_id)
    assert store.claim_key(key, first.job_id).won_by(first.job_id)  # claiming again is harmless
    claim = store.claim_key(key, second.job_id)
    assert (claim.holder, claim.holder_state) == (first.job_id, JobState.PENDING)
    for state in (JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING, JobState.COMPLETED):
        store.update(first.job_id, lambda s, state=state: s.advance(state))
        assert store.claim_key(key, second.job_id).holder == first.job_id
    third = fresh()
    store.create(third.advance(JobState.FAILED))
    other_key = f"key-{uuid.uuid4().hex}"
    assert store.claim_key(other_key, third.job_id).won_by(third.job_id)
    assert store.claim_key(other_key, second.job_id).won_by(second.job_id)  # failed holder: free again


def _claim(url: str, key: str, job_id: str, barrier, out) -> None:
    store = open_store(url)
    store.create(JobStatus(job_id=job_id, operation="system.echo"))
    barrier.wait()
    out.put(store.claim_key(key, job_id).holder)


def test_fifty_processes_claiming_one_key_agree_on_one_holder(store_url: str) -> None:
    key = f"key-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(50), context.Queue()
    procs = [context.Process(target=_claim, args=(store_url, key, f"job-{i:08d}", barrier, out)) for i in range(50)]
    for proc in procs:
        proc.start()
    holders = {out.get(timeout=60) for _ in procs}
    for proc in procs:
        proc.join(30)
    assert len(holders) == 1


def _transition_many(url: str, job_id: str, barrier, out) -> None:
    store = open_store(url)
    barrier.wait()
    wins = 0
    for state in (JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING, JobState.COMPLETED):
        try:
            store.update(job_id, lambda s, state=state: s.advance(state))
            wins += 1
        except InvalidTransition:
            pass
    out.put(wins)


def test_concurrent_writers_never_break_the_state_machine(store: JobStore, store_url: str) -> None:
    status = fresh()
    store.create(status)
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(8), context.Queue()
    procs = [context.Process(target=_transition_many, args=(store_url, status.job_id, barrier, out))
             for _ in range(8)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
    final = store.get(status.job_id)
    assert total == 4 and final.state is JobState.COMPLETED
    assert [h.state for h in final.history] == [JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING,
                                                JobState.COMPLETED]


def test_worker_adverts_lapse_after_their_ttl(store: JobStore) -> None:
    tag = uuid.uuid4().hex[:6]
    store.put_worker({"worker_id": f"alive-{tag}", "version": "0.1.0"}, ttl=30)
    store.put_worker({"worker_id": f"lapsing-{tag}", "version": "0.1.0"}, ttl=0.05)
    deadline = time.monotonic() + 5
    while any(a["worker_id"] == f"lapsing-{tag}" for a in store.workers()) and time.monotonic() < deadline:
        time.sleep(0.02)
    ids = [a["worker_id"] for a in store.workers()]
    assert f"alive-{tag}" in ids and f"lapsing-{tag}" not in ids


def test_unmatched_jobs_are_remembered_and_forgotten(store: JobStore) -> None:
    store.mark_unmatched("job-u-000001", {"job_id": "job-u-000001"})
    store.mark_unmatched("job-u-000002", {"job_id": "job-u-000002", "x": [1]})
    store.mark_unmatched("job-u-000001", None)
    assert store.unmatched() == {"job-u-000002": {"job_id": "job-u-000002", "x": [1]}}


def _hold_run(url: str, job_id: str, ready, out) -> None:
    store = open_store(url)
    out.put(store.acquire_run(job_id, f"holder-{os.getpid()}", ttl=3))
    ready.set()
    time.sleep(60)  # killed by the test while holding the lease


@pytest.mark.slow
def test_run_lease_is_exclusive_and_ends_with_its_process(store: JobStore, store_url: str) -> None:
    job_id = f"job-{uuid.uuid4().hex[:10]}"
    context = multiprocessing.get_context("fork")
    ready, out = context.Event(), context.Queue()
    holder = context.Process(target=_hold_run, args=(store_url, job_id, ready, out))
    holder.start()
    assert ready.wait(30) and out.get(timeout=5) is True
    assert store.acquire_run(job_id, "me", ttl=0.5) is False
    holder.kill()
    holder.join(10)
    deadline = time.monotonic() + 10  # the file lock ends with the process; a Redis lease by ttl
    while not store.acquire_run(job_id, "me", ttl=5):
        assert time.monotonic() < deadline, "the dead holder's lease never ended"
        time.sleep(0.05)
    assert store.acquire_run(job_id, "me", ttl=5) is True  # re-entrant for its owner
    store.release_run(job_id, "me")
    assert store.acquire_run(job_id, "other", ttl=5) is True
