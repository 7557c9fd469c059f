"""The v1 envelope rules (contract section 1): each has a passing and a failing case."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.plugin.errors import ErrorCode, ValidationFailed
from app.protocol.models import MAX_DOCUMENT_BYTES, JobDocument
from app.protocol.validation import validate
from tests.conftest import SEED_JOB


def seed() -> dict[str, Any]:
    return json.loads(SEED_JOB.read_text())


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The seed job with ``path`` (dotted) set to ``value``; ``...`` deletes it."""
    doc = seed()
    *parents, last = path.split(".")
    node = doc
    for name in parents:
        node = node.setdefault(name, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    if path == "operation" and isinstance(value, str):  # keep payload.type naming the operation
        doc["payload"]["type"] = f"{value}.v1"
    return doc


def problems_of(doc: Any, **kwargs: Any) -> tuple[ErrorCode, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        validate(doc, **kwargs)
    return caught.value.code, caught.value.problems


def test_seed_quick_start_job_validates_as_is() -> None:
    job = validate(SEED_JOB)
    assert job.job_id == "test-echo-001"
    assert job.execution.idempotency_key == "echo-test-1"
    assert job.payload.version == 1


# (path, valid value, invalid value, field path expected in the message)
RULES = [
    ("version", "1.7", "1", "version"),
    ("job_id", "a" * 128, "short", "job_id"),
    ("job_id", "job_01:x-y.z", "a" * 129, "job_id"),
    ("job_id", "_leading-ok", ".hidden-job", "job_id"),
    ("job_id", "abcdefgh", "../../etc/passwd", "job_id"),
    ("job_id", "abcdefgh", "job id with space", "job_id"),
    ("job_id", "abcdefgh", "job\x00id-nul", "job_id"),
    ("job_id", "abcdefgh", "job\nnewline", "job_id"),
    ("created_at", "2026-01-30T15:00:00+02:00", "2026-01-30T15:00:00", "created_at"),
    ("created_at", "2026-01-30T15:00:00.123Z", "yesterday", "created_at"),
    ("kind", "VMOperation", "VmOperation", "kind"),
    ("operation", "guestkit.inspect.deep", "echo", "operation"),
    ("operation", "a-b.c_d", "System.Echo", "operation"),
    ("metadata", {"name": "n", "labels": {"a": "b"}}, {"labels": {"a": 1}}, "metadata.labels.a"),
    ("metadata", {"annotations": {"x": "y"}}, {"annotations": "x"}, "metadata.annotations"),
    ("execution.idempotency_key", "k" * 256, "", "execution.idempotency_key"),
    ("execution.idempotency_key", "k", "k" * 257, "execution.idempotency_key"),
    ("execution.max_attempts", 100, 101, "execution.max_attempts"),
    ("execution.max_attempts", 1, 0, "execution.max_attempts"),
    ("execution.attempt", 1, 0, "execution.attempt"),
    ("execution.timeout_seconds", 86400, 86401, "execution.timeout_seconds"),
    ("execution.timeout_seconds", 1, 0, "execution.timeout_seconds"),
    ("execution.priority", 10, 11, "execution.priority"),
    ("execution.priority", 1, 0, "execution.priority"),
    ("execution.priority", 5, "5", "execution.priority"),
    ("execution.priority", 5, 5.5, "execution.priority"),
    ("execution.cancellable", False, "false", "execution.cancellable"),
    ("execution.cancellable", True, 1, "execution.cancellable"),
    ("execution.deadline", "2026-01-31T00:00:00Z", "2026-01-31T00:00:00", "execution.deadline"),
    ("constraints", {"minimum_worker_version": "1.2.3-rc.1"}, {"minimum_worker_version": "1.2"},
     "constraints.minimum_worker_version"),
    ("constraints", {"maximum_disk_size_gb": 1}, {"maximum_disk_size_gb": 0}, "constraints.maximum_disk_size_gb"),
    ("constraints", {"required_capabilities": ["inspect"]}, {"required_capabilities": "inspect"},
     "constraints.required_capabilities"),
    ("constraints", {"require_privileged": True}, {"require_privileged": "yes"}, "constraints.require_privileged"),
    ("constraints", {"allowed_worker_pools": ["a"]}, {"allowed_worker_pools": [""]},
     "constraints.allowed_worker_pools.0"),
    ("routing", {"worker_pool": "gpu", "affinity": {}}, {"worker_pool": 3}, "routing.worker_pool"),
    ("payload.type", "system.echo.v12", "system.echo.v0", "payload.type"),
    ("payload.type", "system.echo.v1", "system.echo", "payload.type"),
    ("payload.type", "system.echo.v1", "guestkit.inspect.v1", "payload.type"),
    ("payload.data", {}, ["not", "an", "object"], "payload.data"),
    ("payload", {"type": "system.echo.v1", "data": {}}, {"type": "system.echo.v1"}, "payload.data"),
    ("observability", {"trace_id": "t"}, {"trace_id": 7}, "observability.trace_id"),
    ("audit", {"authorization": {"method": "oidc", "subject": "me"}}, {"authorization": "me"},
     "audit.authorization"),
]


@pytest.mark.parametrize(("path", "good", "bad", "where"), RULES, ids=[f"{r[0]}={r[2]!r}"[:60] for r in RULES])
def test_rule_accepts_good_and_names_the_field_of_bad(path: str, good: Any, bad: Any, where: str) -> None:
    validate(with_change(path, good))
    code, problems = problems_of(with_change(path, bad))
    assert code is ErrorCode.VALIDATION_ERROR
    assert any(p.startswith(f"{where}:") for p in problems), problems


@pytest.mark.parametrize("missing", ["version", "job_id", "created_at", "kind", "operation", "payload"])
def test_required_fields(missing: str) -> None:
    _, problems = problems_of(with_change(missing, ...))
    assert problems == [f"{missing}: required field is missing"]


@pytest.mark.parametrize("optional", ["metadata", "execution", "constraints", "routing", "observability", "audit",
                                      "$schema"])
def test_optional_sections_may_be_absent(optional: str) -> None:
    validate(with_change(optional, ...))


def test_other_major_version_is_unsupported_version() -> None:
    code, problems = problems_of(with_change("version", "2.0"))
    assert code is ErrorCode.UNSUPPORTED_VERSION
    assert problems[0].startswith("version:") and "2" in problems[0]


def test_attempt_may_not_exceed_max_attempts() -> None:
    validate(with_change("execution", {"attempt": 3, "max_attempts": 3}))
    _, problems = problems_of(with_change("execution", {"attempt": 4, "max_attempts": 3}))
    assert "execution.attempt: must not exceed execution.max_attempts (3), got 4" in problems, problems


def test_deadline_must_be_later_than_created_at() -> None:
    validate(with_change("execution.deadline", "2026-01-30T15:00:01Z"))
    _, problems = problems_of(with_change("execution.deadline", "2026-01-30T15:00:00Z"))
    assert problems[0].startswith("execution.deadline:") and "later than created_at" in problems[0]


def test_timeout_ceiling_is_the_workers_setting() -> None:
    validate(with_change("execution.timeout_seconds", 600), timeout_ceiling=600)
    _, problems = problems_of(with_change("execution.timeout_seconds", 601), timeout_ceiling=600)
    assert problems == ["execution.timeout_seconds: must be at most the worker's ceiling of 600 seconds, got 601"]


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    doc = seed()
    doc["job_id"] = "x"
    doc["created_at"] = "2026-01-30T15:00:00"
    doc["execution"]["priority"] = 11
    doc["metadata"] = {"labels": {"team": 1}}
    _, problems = problems_of(doc)
    assert [p.split(":")[0] for p in problems] == ["job_id", "created_at", "metadata.labels.team", "execution.priority"]
    assert "execution.priority: Input should be less than or equal to 10, got 11" in problems


def test_error_message_lists_problems_for_people() -> None:
    doc = with_change("execution.priority", 11)
    with pytest.raises(ValidationFailed) as caught:
        validate(doc)
    assert str(caught.value) == "VALIDATION_ERROR: execution.priority: Input should be less than or equal to 10, got 11"
    assert caught.value.details == {"problems": caught.value.problems}


def test_unknown_fields_survive_round_trip_at_every_level() -> None:
    doc = seed()
    doc["x-top"] = {"nested": [1, {"a": None}]}
    doc["$schema"] = "https://example.com/job.json"
    doc["execution"]["x-exec"] = True
    doc["payload"]["x-payload"] = "p"
    doc["payload"]["data"]["deep"] = {"x": [1.5]}
    doc["metadata"] = {"name": "n", "x-meta": 1}
    doc["constraints"] = {"custom.example.com/gpu": "a100", "required_features": ["f"]}
    doc["routing"] = {"x-route": "r"}
    doc["observability"] = {"trace_id": "t", "x-obs": "o"}
    doc["audit"] = {"submitted_by": "me", "authorization": {"method": "m", "x-auth": 2}}
    job = validate(doc)
    assert job.to_dict() == doc
    assert validate(json.dumps(job.to_dict())).to_dict() == doc


def test_dict_json_text_bytes_and_path_are_all_accepted(tmp_path: Path) -> None:
    doc = seed()
    path = tmp_path / "job.json"
    path.write_text(json.dumps(doc))
    results = [validate(doc), validate(json.dumps(doc)), validate(json.dumps(doc).encode()), validate(path),
               validate(str(path))]
    assert all(isinstance(r, JobDocument) and r.to_dict() == doc for r in results)


@pytest.mark.parametrize(("text", "expected"), [
    ("[1, 2]", "(document): must be a JSON object, got an array"),
    ('"a string"', "(document): must be a JSON object, got a string"),
    ('{"version": "1.0",', "(document): invalid JSON at line 1"),
    ("{" * 10_000, "(document): nested deeper than 64 levels"),
    ('{"a":' + "[" * 100 + "]" * 100 + "}", "(document): nested deeper than 64 levels"),
])
def test_malformed_documents_get_clear_messages(text: str, expected: str) -> None:
    _, problems = problems_of(text.encode())
    assert problems[0].startswith(expected), problems


def test_invalid_utf8_is_named_with_its_offset() -> None:
    _, problems = problems_of(b'{"job_id": "\xff\xfe"}')
    assert problems == ["(document): not valid UTF-8 at byte 12"]


def test_oversized_document_is_refused_before_parsing() -> None:
    doc = seed()
    doc["payload"]["data"]["blob"] = "x" * MAX_DOCUMENT_BYTES
    _, problems = problems_of(json.dumps(doc).encode())
    assert "larger than the limit" in problems[0]
    _, problems = problems_of(doc)
    assert "larger than" in problems[0]


def test_deeply_nested_dict_is_refused() -> None:
    doc = seed()
    node: dict[str, Any] = doc["payload"]["data"]
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    _, problems = problems_of(doc)
    assert problems == ["(document): nested deeper than 64 levels"]


def test_file_problems_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    assert problems_of(empty)[1] == [f"(file): {empty} is empty"]
    folder = tmp_path / "dir.json"
    folder.mkdir()
    assert problems_of(folder)[1] == [f"(file): {folder} is a directory"]
    link = tmp_path / "link.json"
    link.symlink_to(SEED_JOB)
    assert "symbolic link" in problems_of(link)[1][0]
    assert "is missing" in problems_of(tmp_path / "absent.json")[1][0]


def test_unknown_operation_and_payload_version_with_registered_handlers() -> None:
    from handlers.echo import EchoPayloadV1

    models = {"system.echo": {1: EchoPayloadV1}}
    validate(seed(), payload_models=models)
    code, problems = problems_of(with_change("operation", "system.nope"), payload_models=models)
    assert code is ErrorCode.UNSUPPORTED_OPERATION
    assert problems == ["operation: 'system.nope' is not supported (known operations: system.echo)"]
    code, problems = problems_of(with_change("payload.type", "system.echo.v2"), payload_models=models)
    assert code is ErrorCode.UNSUPPORTED_VERSION
    assert problems == ["payload.type: 'system.echo.v2' is not supported (supported: system.echo.v1)"]


def test_payload_data_is_checked_by_the_handlers_model() -> None:
    from handlers.payloads import InspectPayloadV1

    models = {"guestkit.inspect": {1: InspectPayloadV1}}
    doc = with_change("operation", "guestkit.inspect")
    doc["payload"]["data"] = {"image": {"path": "/x", "format": "iso"}}
    _, problems = problems_of(doc, payload_models=models)
    assert len(problems) == 1 and problems[0].startswith("payload.data.image.format:"), problems


def test_validation_failed_survives_pickling() -> None:
    import pickle

    with pytest.raises(ValidationFailed) as caught:
        validate(with_change("execution.priority", 0))
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.problems == caught.value.problems and again.code is caught.value.code


def test_seed_is_not_mutated_by_validation() -> None:
    doc = seed()
    before = copy.deepcopy(doc)
    validate(doc)
    assert doc == before


@pytest.mark.parametrize("example", sorted((SEED_JOB.parent).glob("*.json")), ids=lambda p: p.name)
def test_every_example_job_validates_with_the_registered_handlers(example: Path) -> None:
    from app.plugin.registry import HandlerRegistry

    job = validate(example, payload_models=HandlerRegistry.discover().payload_models)
    assert job.to_dict() == json.loads(example.read_text())
