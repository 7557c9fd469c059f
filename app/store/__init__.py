"""The job store: source of truth for job states, progress, idempotency claims and cancel requests.

``base`` holds the interface (``JobStore``, ``Admission``, ``KeyClaim``, ``RunView``), ``files`` and
``redis`` its two implementations, ``factory.open_store(url)`` picks one."""
