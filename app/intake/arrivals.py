"""The job files dropped into a directory, oldest first, without reading the directory on every look.

inotify reports each name renamed into the directory (``IN_MOVED_TO``, the way to drop a file),
created there (``IN_CREATE``: a file written in place is claimed at once, and the bridge waits for
it to be complete) or written and closed there (``IN_CLOSE_WRITE``), in the order they arrive; those
names queue behind the ones already known. The directory is read whole (and sorted by modification time, then name)
when the bridge starts, when inotify is missing or overflowed, and every ``resync`` seconds as a
safety net: its cost is one pass per ``resync``, not one per tick, whatever the backlog.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x008, 0x080, 0x100
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_DELETE_SELF, _IN_MOVE_SELF, _IN_ONLYDIR = 0x4000, 0x8000, 0x400, 0x800, 0x01000000
_MASK = _IN_CREATE | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ_SIZE = 256 * 1024


def _load_inotify() -> tuple[Any, Any] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):  # not Linux
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return init, add


_INOTIFY = _load_inotify()


def is_job_file(name: str) -> bool:
    """A dropped job file: ``*.json`` not starting with a dot (write to ``.name.tmp``, then rename)."""
    return name.endswith(".json") and not name.startswith(".")


class DirectoryEvents:
    """The names inotify reports arriving in one directory (renamed in, created, or written and
    closed there), oldest first; ``watching`` is False where there is no inotify (or the directory
    went away), ``overflowed`` True once the kernel dropped events (the caller looks everywhere)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.overflowed = False
        if _INOTIFY is None:
            return
        init, add = _INOTIFY
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return
        if add(fd, os.fsencode(path), _MASK) < 0:
            os.close(fd)
            return
        self.fd = fd

    @property
    def watching(self) -> bool:
        return self.fd >= 0

    def names(self) -> list[str]:
        """The names reported since the last call."""
        found: list[str] = []
        while self.fd >= 0:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            pos, end = 0, len(data)
            while pos < end:
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                if mask & (_IN_MOVED_TO | _IN_CREATE | _IN_CLOSE_WRITE):
                    found.append(os.fsdecode(data[pos:pos + length].rstrip(b"\0")))
                elif mask & _IN_Q_OVERFLOW:
                    self.overflowed = True
                elif mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):  # the directory went away
                    self.close()
                    break
                pos += length
        return found

    def wait(self, timeout: float) -> None:
        """Until something arrives or ``timeout`` seconds pass (sleep without inotify); what arrived
        is forgotten: it only says "look now"."""
        if self.fd < 0:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self.names()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Arrivals:
    """The job files waiting in one directory (opened as ``folder``, a directory descriptor, at
    ``path``), in the order they are to be taken."""

    def __init__(self, folder: int, path: str, resync: float = 30.0,
                 clock: Callable[[], float] = monotonic) -> None:
        self.folder = folder
        self.path = path
        self.resync = resync
        self._clock = clock
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._events: DirectoryEvents | None = None
        self._next_full = float("-inf")
        self.full_reads = 0

    @property
    def watching(self) -> bool:
        return self._events is not None and self._events.watching

    def pop(self) -> str | None:
        """The next name to take (it may be gone by now: another bridge took it), or None."""
        if not self._queue or self._clock() >= self._next_full:
            self._refresh()
        if not self._queue:
            return None
        name = self._queue.popleft()
        self._queued.discard(name)
        return name

    def _refresh(self) -> None:
        if not self.watching:
            self._events = DirectoryEvents(self.path)
            self._next_full = float("-inf")  # what came before the watch: read the directory
        if not self.watching or self._clock() >= self._next_full:
            self._read_all()
        else:
            self._take_events()

    def _read_all(self) -> None:
        """The whole directory, oldest first; what inotify reported meanwhile is in it."""
        if self._events is not None:
            self._events.names()
            self._events.overflowed = False
        found: list[tuple[int, str]] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if is_job_file(entry.name):
                    try:
                        found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
                    except FileNotFoundError:
                        continue  # taken meanwhile
        found.sort()
        self._queue = deque(name for _, name in found)
        self._queued = {name for _, name in found}
        self._next_full = self._clock() + self.resync
        self.full_reads += 1

    def _take_events(self) -> None:
        assert self._events is not None
        for name in self._events.names():
            if is_job_file(name) and name not in self._queued:
                self._queue.append(name)
                self._queued.add(name)
        if self._events.overflowed:  # the kernel dropped events: read the directory again
            self._next_full = float("-inf")

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
        self._next_full = float("-inf")
