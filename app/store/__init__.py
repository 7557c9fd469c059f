"""The job store: source of truth for job states, progress, idempotency claims and cancel requests."""

from app.store.base import JobStore, KeyClaim, open_store

__all__ = ["JobStore", "KeyClaim", "open_store"]
