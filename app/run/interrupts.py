"""Stopping a running handler from outside its code: cancellation and child-process clean-up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil


class CancelRequested(BaseException):
    """Raised inside a running handler once its job's cancel request is seen.

    A ``BaseException`` so that a handler's ``except Exception`` does not swallow it.
    """


@contextmanager
def cancel_watch(cancel_requested: Callable[[], bool], interval: float = 0.25) -> Iterator[None]:
    """Call ``cancel_requested`` every ``interval`` seconds while the block runs (SIGALRM in
    the worker child's main thread) and raise ``CancelRequested`` when it returns True."""

    def on_alarm(signum: int, frame: object) -> None:
        if cancel_requested():
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise CancelRequested()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: handlers poll ctx.cancel_requested() here
        return
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def kill_children() -> int:
    """Kill every process this one started (recursively); return how many."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=5)
    return len(children)
