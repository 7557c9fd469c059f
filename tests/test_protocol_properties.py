"""Property-based tests: valid documents round-trip; random mutations validate or fail with a
field path, never with an unexpected exception."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.plugin.errors import ValidationFailed
from app.protocol.validation import validate

IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
JOB_ID = st.from_regex(r"\A[A-Za-z0-9_:-][A-Za-z0-9._:-]{7,40}\Z")
JSON_LEAF = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=10)
EXTRA = st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: "x-" + k), JSON, max_size=2)
TIMESTAMP = st.sampled_from(["2026-01-30T15:00:00Z", "2026-01-30T15:00:00+02:00", "2025-12-31T23:59:59.5Z"])


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    operation = f"{draw(IDENT)}.{draw(IDENT)}"
    doc: dict[str, Any] = {
        "version": f"1.{draw(st.integers(0, 9))}",
        "job_id": draw(JOB_ID),
        "created_at": draw(TIMESTAMP),
        "kind": "VMOperation",
        "operation": operation,
        "payload": {"type": f"{operation}.v{draw(st.integers(1, 20))}",
                    "data": draw(st.dictionaries(st.text(max_size=8), JSON, max_size=4)), **draw(EXTRA)},
        **draw(EXTRA),
    }
    if draw(st.booleans()):
        max_attempts = draw(st.integers(1, 100))
        doc["execution"] = {
            "idempotency_key": draw(st.text(min_size=1, max_size=40)),
            "attempt": draw(st.integers(1, max_attempts)), "max_attempts": max_attempts,
            "timeout_seconds": draw(st.integers(1, 86400)), "priority": draw(st.integers(1, 10)),
            "cancellable": draw(st.booleans()), **draw(EXTRA),
        }
    if draw(st.booleans()):
        doc["metadata"] = {"name": draw(st.text(max_size=10)),
                           "labels": draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
                           **draw(EXTRA)}
    if draw(st.booleans()):
        doc["constraints"] = {"required_capabilities": draw(st.lists(IDENT, max_size=3)),
                              "minimum_worker_version": f"{draw(st.integers(0, 9))}.{draw(st.integers(0, 9))}.0",
                              **draw(EXTRA)}
    if draw(st.booleans()):
        doc["observability"] = {"trace_id": draw(st.text(max_size=10)), **draw(EXTRA)}
    return doc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_valid_documents_round_trip_unchanged(doc: dict[str, Any]) -> None:
    job = validate(doc)
    assert job.to_dict() == json.loads(json.dumps(doc))
    assert validate(json.dumps(job.to_dict())).to_dict() == job.to_dict()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


SEGMENT = r'(?:[A-Za-z0-9_$/-]+|"(?:[^"\\]|\\.)*")'
PROBLEM = re.compile(rf"^(\(document\)|\(file\)|{SEGMENT}(\.{SEGMENT})*): .+", re.S)


@pytest.mark.slow
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents(), st.data())
def test_mutations_validate_or_name_their_field(doc: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    action = data.draw(st.sampled_from(["replace", "delete"]))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON)
    try:
        validate(doc)
    except ValidationFailed as failure:
        assert failure.problems
        for problem in failure.problems:
            assert PROBLEM.match(problem), problem


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_validator(raw: bytes) -> None:
    try:
        validate(raw)
    except ValidationFailed as failure:
        assert all(PROBLEM.match(p) for p in failure.problems), failure.problems


UNICODE_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | UNICODE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.integers() | st.floats() | st.booleans() | st.none(), inner, max_size=4),
    max_leaves=20)


@given(ANY_JSON)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_quick_size_bound_is_never_below_the_documents_json_length(value: Any) -> None:
    """Documents handed over as dicts are measured from a bound; json.dumps writes them out only when
    the bound is over the limit, so a bound below the real length would let an oversized one in."""
    from app.protocol.validation import _json_bound

    assert (_json_bound(value, 0) or 0) >= len(json.dumps(value))
