"""The embedded default broker: kombu's filesystem transport, made safe and priority-aware.

Selected by a ``embedded:///path`` broker URL; needs no server. Compared with kombu's plain
``filesystem://`` transport it:

- orders each queue by priority (10 first) and then by arrival, as the contract wants;
- writes a message to a file without a name (O_TMPFILE) and links it in, or where that cannot
  be done under a temporary name that it renames in, so no reader sees half a message;
- keeps a message it handed to a consumer in ``unacked/`` until it is acknowledged, and puts
  it back in the queue when it is rejected, restored, or when the process that took it died
  (kill -9 included; a process that reuses a dead one's pid does not keep its messages):
  delivery is at least once, as with Redis and RabbitMQ;
- expires event queues (``celeryev.*``, Flower's and ``celery events``') whose reader has been
  gone for ``EVENT_QUEUE_EXPIRES`` seconds, as a real broker does with the queue's ``expires``,
  instead of filling them with event files for ever;
- does not read the whole queue folder for every message: a consumer lists the folder once, then
  keeps its listing (a heap per queue) up to date from inotify, which reports each message linked
  or renamed into the folder, and reads the folder in full again only when the kernel dropped
  events, when the folder was replaced, and every ``_RESYNC`` seconds (a safety net). Where
  inotify is missing it reads the folder on every poll, as kombu does;
- waits without polling: an idle consumer wakes when a message comes into the folder (inotify),
  and a consumer whose prefetch is full wakes when an acknowledgement frees a slot, instead of
  sleeping a polling interval in between.
"""

from __future__ import annotations

import ctypes
import errno
import heapq
import os
import select
import struct
import threading
import time
import weakref
from pathlib import Path
from queue import Empty
from time import monotonic, time_ns
from typing import Any

import psutil
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.json import dumps, loads

_MAX_PRIORITY = 10
_EVENT_QUEUE_PREFIX = "celeryev."
#: seconds after which an event queue nobody reads is dropped (Celery's event_queue_expires)
EVENT_QUEUE_EXPIRES = 60.0
#: longest wait inside drain_events before it looks whether the worker is stopping
_STEP = 0.25
#: seconds between looks for messages taken by processes that died
_ORPHAN_SWEEP = 2.0
#: seconds between full reads of a queue folder whose changes inotify reports anyway
_RESYNC = 2.0

_STATES: dict[Path, virtual.BrokerState] = {}


def _root_of(client: Any) -> Path:
    """The broker folder named by the connection's ``embedded:///path`` URL."""
    url = client.hostname or ""
    return Path(url.removeprefix("embedded://") or ".guestkit/broker").absolute()


def _queue_of(name: str) -> str | None:
    """The queue a message file belongs to (``<rank>_<time>_<random>.<queue>.msg``), else None."""
    if name.startswith("."):
        return None
    rest = name.partition(".")[2]
    return rest[:-4] if rest.endswith(".msg") else None


# --- who holds a message in unacked/ -----------------------------------------------------------
_OWNER: tuple[int, str] = (0, "")


def _start_of(process: psutil.Process) -> int:
    """When ``process`` started, in 1/100 s: with the pid, it tells a process from a later one
    that got the same pid (a restarted container's worker is often pid 1 again)."""
    return round(process.create_time() * 100)


def _owner() -> str:
    """This process, as named in ``unacked/``: ``<pid>.<start>``."""
    global _OWNER
    pid = os.getpid()
    if _OWNER[0] != pid:  # first call, or a forked child
        _OWNER = (pid, f"{pid}.{_start_of(psutil.Process(pid))}")
    return _OWNER[1]


def _owner_alive(owner: str) -> bool:
    """True while the process ``owner`` (``<pid>.<start>``, or a bare pid as older versions wrote)
    runs; a killed process its parent has not reaped yet counts as dead."""
    pid_text, _, start = owner.partition(".")
    try:
        process = psutil.Process(int(pid_text))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not start or abs(_start_of(process) - int(start)) <= 1
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, ValueError):
        return True  # cannot tell: leave the message to its holder


# --- the listing of a queue folder, kept up to date by inotify ----------------------------------
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x80, 0x100, 0x400, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x4000, 0x8000, 0x01000000
_WATCH_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ_SIZE = 64 * 1024
_MAX_EVENT = _EVENT.size + 256


def _libc(*names: str) -> list[Any] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return [getattr(libc, name) for name in names]
    except (OSError, AttributeError):  # not Linux
        return None


def _load_inotify() -> tuple[Any, Any] | None:
    functions = _libc("inotify_init1", "inotify_add_watch")
    if functions is None:
        return None
    init, add = functions
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return init, add


def _load_linkat() -> Any:
    functions = _libc("linkat") if hasattr(os, "O_TMPFILE") else None
    if functions is None:
        return None
    linkat = functions[0]
    linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    linkat.restype = ctypes.c_int
    return linkat


_INOTIFY = _load_inotify()
#: linkat(2): gives a name to a file opened with O_TMPFILE (os.link cannot follow /proc/self/fd/N)
_LINKAT = _load_linkat()
_AT_FDCWD, _AT_SYMLINK_FOLLOW = -100, 0x400


def _watch(folder: str) -> int | None:
    """A non-blocking inotify descriptor reporting the names created in or renamed into ``folder``,
    or None (no inotify here, too many instances, no such folder)."""
    if _INOTIFY is None:
        return None
    init, add = _INOTIFY
    fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    if add(fd, os.fsencode(folder), _WATCH_MASK) < 0:
        os.close(fd)
        return None
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_fds(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


class _Listing:
    """The message names in one queue folder, per queue, in delivery order (the file names sort
    by priority, then arrival), without reading the folder for every message.

    A message enters the folder by a link or a rename (a new one, a requeued one, one put back
    from ``unacked/``), and inotify reports each one before the call returns: a listing read
    after the watch was set, plus the names reported since, holds every message.
    Names other consumers took stay in the heap until popped; the rename that claims them fails
    then. Used by the thread that consumes (kombu's drain_events)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._fds: list[int] = []
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)
        self.heaps: dict[str, list[str]] = {}
        self._read_at = float("-inf")
        self._set_watch()

    @property
    def fd(self) -> int | None:
        return self._fds[0] if self._fds else None

    def _set_watch(self) -> None:
        fd = _watch(self.folder)
        if fd is not None:
            self._fds.append(fd)

    def _drop_watch(self) -> None:
        _close_fds(self._fds)
        self._read_at = float("-inf")

    def close(self) -> None:
        self._finalizer()

    def pop(self, queue: str) -> str | None:
        """The first name of ``queue`` not popped yet, or None."""
        heap = self.heaps.get(queue)
        if heap is None or not self._fds or monotonic() - self._read_at > _RESYNC:
            self._read_all(queue)
            heap = self.heaps[queue]
        else:
            self.pull()
        return heapq.heappop(heap) if heap else None

    def _read_all(self, queue: str) -> None:
        if self._fds:
            self._take_events(push=False)  # the folder read below has these names
        if not self._fds:  # never watched, or the folder was replaced
            self._set_watch()
        self._read_at = monotonic()
        heaps: dict[str, list[str]] = {q: [] for q in self.heaps}
        heaps.setdefault(queue, [])
        for name in os.listdir(self.folder):
            heap = heaps.get(_queue_of(name))  # type: ignore[arg-type]
            if heap is not None:
                heap.append(name)
        for heap in heaps.values():
            heapq.heapify(heap)
        self.heaps = heaps

    def pull(self) -> bool:
        """Add the names that came in since the last look; True if a listed queue got one (or the
        listing must be read again)."""
        return self._take_events(push=True)

    def _take_events(self, push: bool) -> bool:
        got = False
        while self._fds:
            try:
                data = os.read(self._fds[0], _READ_SIZE)
            except BlockingIOError:
                break
            got = self._parse(data, push) or got
            if len(data) <= _READ_SIZE - _MAX_EVENT:  # the kernel had no more
                break
        return got

    def _parse(self, data: bytes, push: bool) -> bool:
        got = False
        heaps = self.heaps
        pos, end = 0, len(data)
        while pos < end:
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size
            if mask & (_IN_CREATE | _IN_MOVED_TO):
                if push:
                    name = os.fsdecode(data[pos:pos + length].rstrip(b"\0"))
                    heap = heaps.get(_queue_of(name))  # type: ignore[arg-type]
                    if heap is not None:
                        heapq.heappush(heap, name)
                        got = True
            elif mask & _IN_Q_OVERFLOW:  # the kernel dropped events: read the folder again
                self._read_at = float("-inf")
                got = True
            elif mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):  # folder gone or moved
                self._drop_watch()
                return True
            pos += length
        return got


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_folder.mkdir(parents=True, exist_ok=True)
        self.unacked_folder.mkdir(parents=True, exist_ok=True)
        self._queue_dir = str(self.queue_folder)
        self._unacked_dir = str(self.unacked_folder)
        self._unnamed_files = _LINKAT is not None
        self._taken: dict[str, str] = {}
        self._marked_alive: dict[str, float] = {}
        self._swept_at = 0.0
        self._recover_orphans()

    @property
    def root(self) -> Path:
        return _root_of(self.connection.client)

    @property
    def queue_folder(self) -> Path:
        return self.root / "queue"

    @property
    def unacked_folder(self) -> Path:
        return self.root / "unacked"

    # kombu's filesystem channel reads these three from the transport options
    @property
    def data_folder_in(self) -> str:  # type: ignore[override]
        return str(self.queue_folder)

    @property
    def data_folder_out(self) -> str:  # type: ignore[override]
        return str(self.queue_folder)

    @property
    def control_folder(self) -> Path:  # type: ignore[override]
        return self.root / "control"

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:
        priority = payload.get("properties", {}).get("priority") or 0
        rank = _MAX_PRIORITY - max(0, min(_MAX_PRIORITY, int(priority)))
        name = f"{rank:02d}_{time_ns():020d}_{os.urandom(8).hex()}.{queue}.msg"
        data = dumps(payload).encode()
        if self._unnamed_files and self._put_unnamed(name, data):
            return
        tmp = f"{self._queue_dir}/.{name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed under a running process
            os.makedirs(self._queue_dir, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, f"{self._queue_dir}/{name}")

    def _put_unnamed(self, name: str, data: bytes) -> bool:
        """Write the message to a file without a name (O_TMPFILE), then link it in under ``name``:
        one change to the folder instead of a create and a rename, and a publisher killed half way
        leaves nothing behind. False (and not tried again on this channel) where the system or the
        file system cannot; a missing folder is left to the rename path, which makes it again."""
        try:
            fd = os.open(self._queue_dir, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            return False
        except OSError:
            self._unnamed_files = False
            return False
        try:
            _write_all(fd, data)
            if _LINKAT(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD,
                       os.fsencode(f"{self._queue_dir}/{name}"), _AT_SYMLINK_FOLLOW) == 0:
                return True
            if ctypes.get_errno() != errno.ENOENT or os.path.isdir(self._queue_dir):
                self._unnamed_files = False  # no /proc, or a file system that does not link these
            return False
        finally:
            os.close(fd)

    def _get(self, queue: str) -> dict[str, Any]:
        if monotonic() - self._swept_at > _ORPHAN_SWEEP:
            self._recover_orphans()
        if queue.startswith(_EVENT_QUEUE_PREFIX):
            self._mark_alive(queue)
        listing = self.connection.listing
        while (name := listing.pop(queue)) is not None:
            taken = self._claim(name)
            if taken is None:
                continue
            with open(taken, "rb", buffering=0) as handle:
                payload = loads(handle.readall())
            tag = payload.get("properties", {}).get("delivery_tag")
            if tag is None:
                os.unlink(taken)
            else:
                self._taken[tag] = taken
            return payload
        raise Empty()

    def _claim(self, name: str) -> str | None:
        """Move message ``name`` to ``unacked/``, named after this process; None if another
        consumer took it first (the rename is atomic: one consumer wins)."""
        source = f"{self._queue_dir}/{name}"
        taken = f"{self._unacked_dir}/{_owner()}-{name}"
        try:
            os.rename(source, taken)
        except FileNotFoundError:
            if not os.path.exists(source):
                return None
            os.makedirs(self._unacked_dir, exist_ok=True)  # removed under a running process
            try:
                os.rename(source, taken)
            except FileNotFoundError:
                return None
        return taken

    # --- event queues whose reader has gone ---------------------------------------------------
    def _alive_file(self, queue: str) -> Path:
        return self.control_folder / f"{queue}.alive"

    def _mark_alive(self, queue: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._marked_alive.get(queue, 0.0) > 1.0:
            self.control_folder.mkdir(parents=True, exist_ok=True)
            alive = self._alive_file(queue)
            try:
                os.utime(alive, follow_symlinks=False)  # never the mtime of what a planted link names
            except FileNotFoundError:
                os.close(os.open(alive, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            self._marked_alive[queue] = now

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        super()._queue_bind(exchange, routing_key, pattern, queue)
        if queue.startswith(_EVENT_QUEUE_PREFIX):
            self._mark_alive(queue, force=True)

    def get_table(self, exchange: str) -> list:
        table = super().get_table(exchange)
        live = []
        for binding in table:
            if binding.queue.startswith(_EVENT_QUEUE_PREFIX) and self._reader_gone(binding.queue):
                self._delete(binding.queue, exchange, binding.routing_key, binding.pattern)
                self._alive_file(binding.queue).unlink(missing_ok=True)
            else:
                live.append(binding)
        return live

    def _reader_gone(self, queue: str) -> bool:
        try:
            return time.time() - self._alive_file(queue).stat().st_mtime > EVENT_QUEUE_EXPIRES
        except FileNotFoundError:
            return True

    # --- acknowledgement ---------------------------------------------------------------------
    def _forget(self, delivery_tag: str) -> None:
        path = self._taken.pop(delivery_tag, None)
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        transport = self.connection
        if transport is not None:
            transport.wake()  # a prefetch slot is free

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self._forget(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._forget(message.delivery_tag)

    def _recover_orphans(self) -> None:
        """Put back messages taken by processes that no longer exist (at start, then every
        ``_ORPHAN_SWEEP`` seconds, so a running worker also recovers what a dead one took)."""
        self._swept_at = monotonic()
        alive: dict[str, bool] = {}
        for entry in os.scandir(self._unacked_dir):
            owner, _, name = entry.name.partition("-")
            if not owner.partition(".")[0].isdigit():
                continue
            if owner not in alive:
                alive[owner] = _owner_alive(owner)
            if not alive[owner]:
                try:
                    os.rename(entry.path, f"{self._queue_dir}/{name}")
                except FileNotFoundError:
                    pass

    def _purge(self, queue: str) -> int:
        count = 0
        for name in os.listdir(self._queue_dir):
            if _queue_of(name) == queue:
                try:
                    os.unlink(f"{self._queue_dir}/{name}")
                except FileNotFoundError:
                    continue
                count += 1
        return count

    def _size(self, queue: str) -> int:
        return sum(1 for n in os.listdir(self._queue_dir) if _queue_of(n) == queue)


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = "embedded"
    driver_name = "embedded"
    can_parse_url = True

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # kombu keeps bindings in one state per transport class; keep one per broker folder, or a
        # process that uses two folders would think a binding exists in the second one
        self.state = _STATES.setdefault(_root_of(client), virtual.BrokerState())
        self._listing: _Listing | None = None
        # written on each acknowledgement (from any thread), read by the consuming thread's wait
        self._wake_fds: list[int] = []
        self._wake_lock = threading.Lock()
        weakref.finalize(self, _close_fds, self._wake_fds)

    @property
    def listing(self) -> _Listing:
        """The queue folder's listing, shared by this connection's channels (made on first use)."""
        if self._listing is None:
            self._listing = _Listing(str(_root_of(self.client) / "queue"))
        return self._listing

    def wake(self) -> None:
        """End a wait in drain_events (a prefetch slot became free)."""
        with self._wake_lock:
            if self._wake_fds:
                try:
                    os.write(self._wake_fds[1], b"\0")
                except BlockingIOError:  # full: a wake is pending anyway
                    pass

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            if self._listing is not None:
                self._listing.close()
            with self._wake_lock:
                _close_fds(self._wake_fds)

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        """Deliver one message, waiting as asked, and in steps of at most ``_STEP`` that notice a
        worker shutting down: Celery's loop for polling transports waits 2 s per call and checks
        for shutdown only in between."""
        now = monotonic()
        deadline = None if timeout is None else now + timeout
        step_end = now + _STEP
        while True:
            try:
                return self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                pass
            now = monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()
            if now >= step_end:
                if _worker_stopping():
                    raise TimeoutError()
                step_end = now + _STEP
            self._pause(min(step_end, deadline if deadline is not None else step_end) - now)

    def _pause(self, limit: float) -> None:
        """Wait up to ``limit`` s for something that may let a channel take a message: a message
        coming into the queue folder while a channel has room (inotify), or an acknowledgement
        (the wake pipe). Without inotify, or while every channel is full, look again after the
        polling interval at the latest, as kombu does."""
        if not self._wake_fds:
            with self._wake_lock:
                self._wake_fds.extend(os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
        wake = self._wake_fds[0]
        fds = [wake]
        wait = self.polling_interval or 0.0
        listing = self._listing
        if listing is not None and listing.fd is not None:
            queues = [queue for channel in self.channels if channel._consumers and channel.qos.can_consume()
                      for queue in channel._active_queues]
            if queues:
                # names may have come in since a channel looked, or been taken in by another channel
                if listing.pull() or any(listing.heaps.get(queue) for queue in queues):
                    return
                if listing.fd is not None:
                    fds.append(listing.fd)
                    wait = max(wait, _STEP)
        ready, _, _ = select.select(fds, [], [], min(wait, limit))
        if wake in ready:
            try:
                os.read(wake, 4096)
            except BlockingIOError:
                pass


def _worker_stopping() -> bool:
    from celery.worker import state

    return state.should_stop is not None or state.should_terminate is not None


TRANSPORT_ALIASES.setdefault("embedded", "app.brokers.embedded:Transport")
