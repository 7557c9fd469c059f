"""The state machine is exactly the contract's table (section 3)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.protocol.states import TERMINAL_STATES, InvalidTransition, JobState, JobStatus

S = JobState
ALLOWED = {
    (S.PENDING, S.QUEUED), (S.PENDING, S.FAILED),
    (S.QUEUED, S.ASSIGNED), (S.QUEUED, S.CANCELLED), (S.QUEUED, S.FAILED),
    (S.ASSIGNED, S.RUNNING), (S.ASSIGNED, S.CANCELLED), (S.ASSIGNED, S.FAILED),
    (S.RUNNING, S.COMPLETED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLED), (S.RUNNING, S.TIMEOUT),
}


def status_in(state: JobState, max_attempts: int = 1) -> JobStatus:
    return JobStatus(job_id="job-00000001", operation="system.echo", state=state, max_attempts=max_attempts)


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(JobState, JobState)))
def test_transition_table_is_exactly_the_contract(current: JobState, wanted: JobState) -> None:
    if (current, wanted) in ALLOWED:
        moved = status_in(current).advance(wanted)
        assert moved.state is wanted
    else:
        with pytest.raises(InvalidTransition):
            status_in(current).advance(wanted)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_refuse_every_write_including_retry(terminal: JobState) -> None:
    status = status_in(terminal, max_attempts=5)
    for wanted in JobState:
        with pytest.raises(InvalidTransition, match="terminal and never changes"):
            status.advance(wanted)
    with pytest.raises(InvalidTransition):
        status.retry(reason="again")


def test_each_transition_is_timestamped_in_the_history() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    status = status_in(S.PENDING)
    for i, state in enumerate([S.QUEUED, S.ASSIGNED, S.RUNNING, S.COMPLETED]):
        status = status.advance(state, worker_id="w1" if state is S.ASSIGNED else None, at=t0 + timedelta(seconds=i))
    assert [(h.state, h.at) for h in status.history] == [
        (S.QUEUED, t0), (S.ASSIGNED, t0 + timedelta(seconds=1)), (S.RUNNING, t0 + timedelta(seconds=2)),
        (S.COMPLETED, t0 + timedelta(seconds=3))]
    assert status.started_at == t0 + timedelta(seconds=2)
    assert status.worker_id == "w1"


def test_retry_path_goes_back_to_queued_with_the_next_attempt() -> None:
    status = status_in(S.RUNNING, max_attempts=2)
    retried = status.retry(reason="worker lost")
    assert (retried.state, retried.attempt) == (S.QUEUED, 2)
    assert retried.history[-1].reason == "retry: worker lost"
    assert retried.history[-1].attempt == 2


def test_retry_is_refused_when_attempts_are_spent_or_not_running() -> None:
    with pytest.raises(InvalidTransition):
        status_in(S.RUNNING, max_attempts=1).retry(reason="x")
    with pytest.raises(InvalidTransition):
        status_in(S.QUEUED, max_attempts=3).retry(reason="x")


def test_running_to_queued_is_not_an_ordinary_transition() -> None:
    with pytest.raises(InvalidTransition, match="running may only go to cancelled, completed, failed, timeout"):
        status_in(S.RUNNING, max_attempts=3).advance(S.QUEUED)


def test_status_round_trips_through_json() -> None:
    status = status_in(S.PENDING).advance(S.QUEUED).advance(S.ASSIGNED, worker_id="w")
    assert JobStatus.model_validate_json(status.model_dump_json()) == status
