"""Benchmarks: the platform against plain Celery on the same broker, pool and concurrency.

Each module is runnable with ``python -m benchmarks.<name>``; see benchmarks/README.md.
"""
