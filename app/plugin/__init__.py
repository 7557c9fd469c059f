"""What a handler plugin sees: the ``Handler`` base and its context (``handler``), error codes and
``JobError`` (``errors``), path confinement (``paths``), a job's checked outputs (``outputs``),
atomic writes (``atomic``), and how handlers are found (``registry``). Imports nothing else of
``app``, so a handler never pulls in Celery."""
