"""Pydantic models of the v1 job envelope (contract section 1) and of progress events (section 6).

Every model keeps unknown fields (``extra="allow"``) so that a document survives a
load → dump round trip unchanged at every level; dump with ``JobDocument.to_dict()``.
Types are strict: ``"5"`` is not a priority and ``1`` is not a boolean.
"""

from __future__ import annotations

import pickle
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: The worker's default ceiling on ``execution.timeout_seconds`` (overridable in configuration).
DEFAULT_TIMEOUT_CEILING = 86400
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 64

JOB_ID_PATTERN = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{7,127}$"
OPERATION_PATTERN = r"^[a-z0-9_-]+\.[a-z0-9_-]+(\.[a-z0-9_-]+)?$"
PAYLOAD_TYPE = re.compile(r"^(?P<operation>.+)\.v(?P<version>[1-9][0-9]*)$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

Timestamp = Annotated[AwareDatetime, Field(strict=False)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Open(BaseModel):
    """Base of every protocol model: strict types, unknown fields kept."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class Metadata(Open):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Execution(Open):
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    attempt: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=1, ge=1, le=100)
    timeout_seconds: int = Field(default=3600, ge=1)
    deadline: Timestamp | None = None
    priority: int = Field(default=5, ge=1, le=10)
    cancellable: bool = True

    @field_validator("timeout_seconds")
    @classmethod
    def _below_ceiling(cls, value: int, info: ValidationInfo) -> int:
        ceiling = (info.context or {}).get("timeout_ceiling", DEFAULT_TIMEOUT_CEILING)
        if value > ceiling:
            raise ValueError(f"must be at most the worker's ceiling of {ceiling} seconds, got {value}")
        return value


class Constraints(Open):
    required_capabilities: list[str] = Field(default_factory=list)
    required_features: list[str] = Field(default_factory=list)
    minimum_worker_version: str | None = None
    maximum_disk_size_gb: int | None = Field(default=None, ge=1)
    require_privileged: bool = False
    allowed_worker_pools: list[NonEmpty] | None = None

    @field_validator("minimum_worker_version")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None and not SEMVER.fullmatch(value):
            raise ValueError(f"must be a semantic version such as 1.2.0, got {value!r}")
        return value


class Routing(Open):
    worker_id: str | None = None
    worker_pool: NonEmpty | None = None
    affinity: dict[str, Any] = Field(default_factory=dict)
    anti_affinity: dict[str, Any] = Field(default_factory=dict)


class Payload(Open):
    type: str = Field(json_schema_extra={"pattern": r"^.+\.v[1-9][0-9]*$"})
    data: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _versioned(cls, value: str) -> str:
        if not PAYLOAD_TYPE.fullmatch(value):
            raise ValueError(f"must be <operation>.v<N> with N >= 1, got {value!r}")
        return value

    @property
    def version(self) -> int:
        match = PAYLOAD_TYPE.fullmatch(self.type)
        assert match is not None
        return int(match["version"])


class Observability(Open):
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    correlation_id: str | None = None


class Authorization(Open):
    method: str | None = None
    subject: str | None = None


class Audit(Open):
    submitted_by: str | None = None
    submitted_from: str | None = None
    authorization: Authorization | None = None


class JobDocument(Open):
    """A v1 job: the envelope around an operation-specific payload."""

    schema_: str | None = Field(default=None, alias="$schema")
    version: str = Field(json_schema_extra={"pattern": r"^1\.(0|[1-9][0-9]*)$"})
    job_id: str = Field(json_schema_extra={"pattern": JOB_ID_PATTERN})
    created_at: Timestamp
    kind: Literal["VMOperation"]
    operation: str = Field(json_schema_extra={"pattern": OPERATION_PATTERN})
    metadata: Metadata | None = None
    execution: Execution = Field(default_factory=Execution)
    constraints: Constraints | None = None
    routing: Routing | None = None
    payload: Payload
    observability: Observability | None = None
    audit: Audit | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"1\.(0|[1-9][0-9]*)", value):
            raise ValueError(f'must be "1.<minor>" such as "1.0", got {value!r}')
        return value

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not re.fullmatch(JOB_ID_PATTERN, value):
            raise ValueError(
                "must be 8-128 characters of A-Z a-z 0-9 . _ : - and not start with '.' "
                f"(it becomes a file name), got {value[:60]!r}"
            )
        return value

    @field_validator("operation")
    @classmethod
    def _operation(cls, value: str) -> str:
        if not re.fullmatch(OPERATION_PATTERN, value):
            raise ValueError(
                f"must be <namespace>.<name>[.<variant>] with segments of a-z 0-9 _ -, got {value[:60]!r}"
            )
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> JobDocument:
        problems = []
        if self.execution.attempt > self.execution.max_attempts:
            problems.append(
                f"execution.attempt: must not exceed execution.max_attempts ({self.execution.max_attempts}), "
                f"got {self.execution.attempt}"
            )
        match = PAYLOAD_TYPE.fullmatch(self.payload.type)
        if match and match["operation"] != self.operation:
            problems.append(
                f"payload.type: {self.payload.type!r} names operation {match['operation']!r}, "
                f"but the job's operation is {self.operation!r}"
            )
        if self.execution.deadline is not None and self.execution.deadline <= self.created_at:
            problems.append(
                f"execution.deadline: {self.execution.deadline.isoformat()} must be later than "
                f"created_at {self.created_at.isoformat()}"
            )
        if problems:  # one line per problem, each starting with its field path
            raise ValueError("\n".join(problems))
        return self

    #: the JSON object this model was validated from, kept so that dumping gives it back
    #: byte for byte (timestamps keep their spelling, unknown fields their place)
    _source: dict[str, Any] | None = PrivateAttr(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The document as JSON data, with exactly the fields it was given (unknown ones too)."""
        if self._source is not None:
            return _json_copy(self._source)
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def from_json_object(cls, data: dict[str, Any], *, timeout_ceiling: int = DEFAULT_TIMEOUT_CEILING) -> JobDocument:
        job = cls.model_validate(data, context={"timeout_ceiling": timeout_ceiling})
        job._source = _json_copy(data)
        return job

    @property
    def idempotency_key(self) -> str | None:
        return self.execution.idempotency_key

    @property
    def observability_dict(self) -> dict[str, Any]:
        return self.observability.model_dump(mode="json", exclude_none=True) if self.observability else {}


def _json_copy(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the document: pickle's round trip gives what ``copy.deepcopy`` gives (NaN,
    big integers and all) in C, at a fraction of its cost."""
    return pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


STANDARD_PHASES = (
    "validation", "disk_attach", "disk_inspection", "os_detection", "package_scan",
    "service_scan", "security_scan", "result_generation", "cleanup",
)


class ProgressEvent(BaseModel):
    """One progress report of a job (contract section 6)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    timestamp: datetime
    sequence: int = Field(ge=0)
    phase: str
    progress_percent: int = Field(ge=0, le=100)
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    observability: dict[str, Any] = Field(default_factory=dict)
