"""Payload models (``payload.data``) of the guestkit operations, version 1.

Unknown fields are kept (forward compatibility), as everywhere in the protocol.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DiskFormat = Literal["raw", "qcow2", "vmdk", "vhdx", "vdi"]
DISK_FORMATS: tuple[str, ...] = ("raw", "qcow2", "vmdk", "vhdx", "vdi")
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITY_ORDER: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
_CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageRef(Open):
    path: str = Field(min_length=1)
    format: DiskFormat | None = None
    checksum: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    read_only: bool = True

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, value: str | None) -> str | None:
        if value is not None and not _CHECKSUM.fullmatch(value):
            raise ValueError('must be "sha256:" followed by 64 lowercase hex digits')
        return value


class OutputSpec(Open):
    format: Literal["json"] = "json"
    destination: str | None = None
    #: replace an existing file at ``destination`` (otherwise the job fails OUTPUT_EXISTS)
    overwrite: bool = False


class InspectOptions(Open):
    deep_scan: bool = True
    include_packages: bool = True
    include_services: bool = True
    include_users: bool = True
    include_network: bool = True
    include_security: bool = True
    include_storage: bool = True
    include_databases: bool = True


class InspectPayloadV1(Open):
    image: ImageRef
    options: InspectOptions = Field(default_factory=InspectOptions)
    output: OutputSpec = Field(default_factory=OutputSpec)


class ProfileOptions(Open):
    severity_threshold: Severity = "info"
    fail_on_critical: bool = False


class ProfileOutput(OutputSpec):
    include_remediation: bool = True


class ProfilePayloadV1(Open):
    image: ImageRef
    profiles: list[Literal["security", "compliance", "hardening", "performance"]] = Field(
        default_factory=lambda: ["security", "compliance", "hardening", "performance"], min_length=1
    )
    options: ProfileOptions = Field(default_factory=ProfileOptions)
    output: ProfileOutput = Field(default_factory=ProfileOutput)


class FixImageRef(ImageRef):
    read_only: bool = False
    create_backup: bool = False
    backup_path: str | None = None


FixOperationType = Literal[
    "fsck", "fstab_repair", "set_hostname", "write_file", "remove_file",
    "disable_service", "lock_account", "selinux_relabel",
]


class FixOperation(Open):
    type: FixOperationType
    options: dict = Field(default_factory=dict)


class ExecutionPolicy(Open):
    stop_on_error: bool = True
    validate_before_commit: bool = True


class FixOutput(Open):
    fixed_image: str | None = None
    log_path: str | None = None
    #: replace existing files at ``fixed_image`` and ``log_path`` (otherwise the job fails OUTPUT_EXISTS)
    overwrite: bool = False
    report_format: Literal["json"] = "json"


class FixPayloadV1(Open):
    image: FixImageRef
    operations: list[FixOperation] = Field(min_length=1)
    execution_policy: ExecutionPolicy = Field(default_factory=ExecutionPolicy)
    output: FixOutput = Field(default_factory=FixOutput)
    dry_run: bool = False
    in_place: bool = False


class ConvertSource(Open):
    path: str = Field(min_length=1)
    format: DiskFormat | None = None
    checksum: str | None = None

    _checksum = field_validator("checksum")(ImageRef._checksum.__func__)


class ConvertTarget(Open):
    path: str = Field(min_length=1)
    format: DiskFormat
    compression: bool = False


class ConvertOptions(Open):
    verify_after_convert: bool = True
    preserve_sparse: bool = True
    #: replace an existing file at ``target.path`` (otherwise the job fails OUTPUT_EXISTS)
    overwrite: bool = False


class ConvertPayloadV1(Open):
    source: ConvertSource
    target: ConvertTarget
    options: ConvertOptions = Field(default_factory=ConvertOptions)


class CompareOptions(Open):
    compare_packages: bool = True
    compare_files: bool = True
    compare_config: bool = True
    ignore_timestamps: bool = True


class ComparePayloadV1(Open):
    baseline: ImageRef
    target: ImageRef
    options: CompareOptions = Field(default_factory=CompareOptions)
    output: OutputSpec = Field(default_factory=OutputSpec)
