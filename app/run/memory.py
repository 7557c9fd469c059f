"""A pool child's memory: its address space bounded by ``guestkit_child_memory_mb`` (``RLIMIT_AS``,
set in each child as it starts, so the worker's main process is never limited; the tools a job runs,
qemu-img and qemu-nbd, inherit it), and each job's own high-water mark.

Linux keeps a process's peak resident size (``VmHWM``) for its whole life; a pool child runs many
jobs, so it is reset when a job starts (``/proc/self/clear_refs``, Linux 4.0) and read when its
result has been serialised: the job's own peak, serialisation included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
from typing import Any

from celery.signals import worker_process_init

MiB = 1024 * 1024
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def limit_address_space(megabytes: int) -> None:
    """Bound this process's address space (0: leave it as it is)."""
    if megabytes <= 0:
        return
    wanted = megabytes * MiB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        wanted = hard
    resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted))


class JobPeak:
    """A job's memory high-water mark: this process's since the job began (``VmHWM``, reset at the
    start), or a tool's it ran (qemu-img), if a tool peaked higher than any before it."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass
        self.tools_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    def mb(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with open("/proc/self/status") as handle:
                own = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
        except (OSError, StopIteration, ValueError):
            pass
        tools = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return round(max(own, tools if tools > self.tools_before else 0) / 1024, 1)


def address_space_limit() -> int | None:
    """This process's address-space limit in bytes; None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def room_for(nbytes: int) -> bool:
    """True when ``nbytes`` more of address space fit under this process's limit."""
    limit = address_space_limit()
    if limit is None:
        return True
    try:
        with open("/proc/self/status") as handle:
            used = next(int(line.split()[1]) for line in handle if line.startswith("VmSize:")) * 1024
    except (OSError, StopIteration, ValueError):
        return False
    return limit - used > nbytes


def give_back() -> None:
    """Return what a job freed to the system (after a job that came near the limit)."""
    gc.collect()
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def enable(megabytes: int) -> None:
    def limit(**_: Any) -> None:
        limit_address_space(megabytes)

    worker_process_init.connect(limit, weak=False)
