"""Opening the job store a URL names; the one module that knows every implementation."""

from __future__ import annotations

from app.store.base import JobStore
from app.store.files import FileJobStore
from app.store.redis import RedisJobStore


def open_store(url: str) -> JobStore:
    """The store named by ``url``: ``file:///path`` (or a plain path) or ``redis://host:port/db``."""
    if url.startswith(("redis://", "rediss://")):
        return RedisJobStore(url)
    return FileJobStore(url.removeprefix("file://"))
