"""The platform's settings (the ``guestkit_*`` keys of the Celery configuration), as one model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from app.plugin.limits import Limits


class Settings(BaseModel):
    home: Path
    store_url: str
    results_dir: Path
    jobs_dir: Path
    bridge_in_worker: bool
    bridge_interval: float
    bridge_settle: float
    allowed_dirs: list[Path]
    max_chain_depth: int = 0
    work_dir: Path
    timeout_ceiling: int
    timeout_grace: int
    pools: list[str]
    worker_id: str
    capabilities: list[str]
    privileged: bool
    extra_handlers: list[str]
    retry_backoff: float
    shutdown_grace: float
    heartbeat_interval: float
    capability_wait: float
    run_lease: float
    requeue_after: float
    limits: Limits = Field(default_factory=Limits)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Settings:
        prefix = "guestkit_"
        return cls(**{key[len(prefix):]: value for key, value in conf.items()
                      if key.startswith(prefix) and key[len(prefix):] in cls.model_fields},
                   limits=Limits.from_conf(conf))

    def result_path(self, job_id: str) -> Path:
        return self.results_dir / f"{job_id}-result.json"
