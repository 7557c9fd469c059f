"""Running a job on a worker: the Celery task that drives the state machine (``adapter``), the context a
handler gets, cancellation and time limits, worker adverts and constraint matching, the result backend,
and the worker process hooks (graceful shutdown, timer heap, gc freeze)."""
