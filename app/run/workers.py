"""Worker advertisements (contract section 7) and matching a job's constraints against them."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import psutil
from pydantic import BaseModel, Field

from app import __version__
from app.plugin.registry import HandlerRegistry
from app.protocol.models import SEMVER, JobDocument
from app.protocol.states import utc_now
from app.run.settings import Settings


class Capabilities(BaseModel):
    operations: list[str]
    features: list[str]
    disk_formats: list[str] = Field(default_factory=list)


class Resources(BaseModel):
    max_concurrent_jobs: int
    max_disk_size_gb: int | None = None
    cpu_cores: int
    memory_gb: float


class Configuration(BaseModel):
    worker_pool: str
    pools: list[str]
    privileged: bool
    allowed_dirs: list[str]


class WorkerStatus(BaseModel):
    state: str = "online"
    current_jobs: int = 0
    last_heartbeat: datetime = Field(default_factory=utc_now)


class WorkerAdvert(BaseModel):
    worker_id: str
    version: str
    hostname: str
    capabilities: Capabilities
    resources: Resources
    configuration: Configuration
    status: WorkerStatus


def build_advert(settings: Settings, registry: HandlerRegistry, worker_id: str, concurrency: int,
                 current_jobs: int, state: str = "online") -> WorkerAdvert:
    return WorkerAdvert(
        worker_id=worker_id, version=__version__, hostname=socket.gethostname(),
        capabilities=Capabilities(
            operations=sorted(registry.handlers), features=sorted(set(registry.features) | set(settings.capabilities)),
            disk_formats=sorted({f for h in registry.handlers.values() for f in h.disk_formats}),
        ),
        resources=Resources(max_concurrent_jobs=concurrency, cpu_cores=os.cpu_count() or 1,
                            memory_gb=round(psutil.virtual_memory().total / 2**30, 1)),
        configuration=Configuration(worker_pool=settings.pools[0], pools=settings.pools,
                                    privileged=settings.privileged,
                                    allowed_dirs=[str(d) for d in settings.allowed_dirs]),
        status=WorkerStatus(state=state, current_jobs=current_jobs),
    )


def semver_key(version: str) -> tuple[int, int, int]:
    match = SEMVER.fullmatch(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def unmet_constraints(job: JobDocument, advert: WorkerAdvert | dict[str, Any]) -> list[str]:
    """Why the advertised worker cannot run ``job``; empty when it can."""
    worker = advert if isinstance(advert, WorkerAdvert) else WorkerAdvert.model_validate(advert)
    if job.operation not in worker.capabilities.operations:
        return [f"operation {job.operation} not served"]
    pool = job.routing.worker_pool if job.routing and job.routing.worker_pool else None
    if pool is not None and pool not in worker.configuration.pools:
        return [f"pool {pool!r} not served (serves {worker.configuration.pools})"]
    constraints = job.constraints
    if constraints is None:
        return []
    offered = set(worker.capabilities.features) | set(worker.capabilities.operations)
    unmet = [f"capability {c!r} missing" for c in constraints.required_capabilities if c not in offered]
    unmet += [f"feature {f!r} missing" for f in constraints.required_features if f not in offered]
    if constraints.minimum_worker_version and semver_key(worker.version) < semver_key(
            constraints.minimum_worker_version):
        unmet.append(f"worker version {worker.version} is older than {constraints.minimum_worker_version}")
    if constraints.allowed_worker_pools is not None and not (
            set(constraints.allowed_worker_pools) & set(worker.configuration.pools)):
        unmet.append(f"worker pools {worker.configuration.pools} not in {constraints.allowed_worker_pools}")
    if constraints.require_privileged and not worker.configuration.privileged:
        unmet.append("the job needs a privileged worker")
    return unmet
