"""What one job may consume. Each limit is a ``GUESTKIT_<NAME>`` setting with a safe default (the
README's settings table lists them), enforced in one place:

- ``max_file_bytes``: bytes read from any one guest file (``handlers.tree``: every guest tree's
  read; a file cut short is listed in the report's ``truncated``);
- ``max_entries``: entries parsed from any one guest database (packages) or configuration file
  (lines); the rest is left out, and listed in ``truncated``;
- ``max_tree_depth`` and ``max_tree_entries``: how deep below its start, and how many entries,
  one walk of a guest's directory tree looks at (``handlers.guestos.walk``: compare's file
  listings); a walk cut short is listed in ``truncated``;
- ``max_volumes``: partitions and logical volumes looked at in one image (``handlers.guestimage.
  guest``); the rest are left out, and listed in ``truncated``;
- ``output_reserve_mb``: free space every output must leave on its file system (``app.plugin.outputs.
  check_room``, before the first byte is written: convert's target, fix's fixed image and backup);
- ``max_work_dir_mb``: what a job may write into its work directory (fix's working copy);
- ``child_memory_mb``: the address space of a worker's pool child (``RLIMIT_AS``, set in the child
  as it starts: ``app.run.memory``); a job that runs out fails, the child lives on;
- ``max_result_bytes``: a result document, as compact JSON (``app.run.adapter``).

A job that needs more than a limit allows fails ``RESOURCE_LIMIT`` (``ResourceLimitExceeded``),
saying which limit, its value and what the job wanted; the limits on what is read from a guest cut
instead, and the job completes saying what was cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from app.plugin.errors import ErrorCode, JobError

MiB = 1024 * 1024


class Limits(BaseModel):
    max_file_bytes: int = Field(default=512 * MiB, gt=0)
    max_entries: int = Field(default=100_000, gt=0)
    max_tree_depth: int = Field(default=64, gt=0)
    max_tree_entries: int = Field(default=200_000, gt=0)
    max_volumes: int = Field(default=256, gt=0)
    output_reserve_mb: int = Field(default=1024, ge=0)
    max_work_dir_mb: int = Field(default=65536, gt=0)
    #: 0: no limit
    child_memory_mb: int = Field(default=4096, ge=0)
    max_result_bytes: int = Field(default=64 * MiB, gt=0)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Limits:
        """The ``guestkit_<name>`` keys of a Celery configuration that name a limit."""
        return cls(**{name: conf[f"guestkit_{name}"] for name in cls.model_fields if f"guestkit_{name}" in conf})

    @staticmethod
    def setting(name: str) -> str:
        """The environment variable that sets limit ``name``."""
        return f"GUESTKIT_{name.upper()}"


class ResourceLimitExceeded(JobError):
    """The job needs more of a resource than the limit ``name`` allows."""

    def __init__(self, what: str, name: str, value: int, wanted: int | None, unit: str = "bytes") -> None:
        need = "more" if wanted is None else f"{wanted} {unit}"
        super().__init__(ErrorCode.RESOURCE_LIMIT,
                         f"{what} needs {need}; the limit {Limits.setting(name)} is {value} {unit}",
                         details={"limit": Limits.setting(name), "value": value, "wanted": wanted, "unit": unit})
