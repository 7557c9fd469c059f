"""The job store: source of truth for job states, progress, idempotency claims and cancel requests."""

from app.store.base import Admission, JobStore, KeyClaim, RunView, open_store

__all__ = ["Admission", "JobStore", "KeyClaim", "RunView", "open_store"]
