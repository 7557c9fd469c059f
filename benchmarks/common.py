"""What every benchmark shares: a private workspace, broker set-ups for the platform and for plain
Celery, worker processes, percentiles and the printed tables.

The platform's configuration is read from the environment when ``app`` is first imported, so one
benchmark process measures one broker; ``--broker all`` runs the module once per broker in a child
process.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform as _platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.brokers import reachable
from tests.processes import CELERY, ROOT, WorkerProcess

BROKER_NAMES = ("embedded", "redis", "rabbitmq")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
#: where each run's workspace (stores, results, broker folders, logs) is made: beside the project, as
#: the README's worker keeps its results. Not /tmp: on this machine creating a file in a new directory
#: under /tmp took 0.45 ms instead of 0.03 ms in about half of the directories made there, at random,
#: which swung the file-writing side of each run by a factor of two
BENCH_DIR = Path(os.environ.get("BENCH_DIR", ROOT / ".bench"))
#: the embedded broker's polling interval (the platform's default); the plain filesystem transport gets the same
POLL = os.environ.get("GUESTKIT_BROKER_POLL", "0.01")




# --- arguments and the per-broker fan-out -----------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--broker", choices=(*BROKER_NAMES, "all"), default="embedded")
    p.add_argument("--quick", action="store_true", help="small counts: finishes in well under a minute")
    p.add_argument("--concurrency", "-c", type=int, default=2, help="prefork children per worker (both sides)")
    p.add_argument("--plain-defaults", action="store_true",
                   help="plain Celery with Celery's defaults (acks early, prefetch 4) instead of the platform's "
                        "delivery settings (acks_late, reject_on_worker_lost, prefetch 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace (logs) afterwards")
    p.add_argument("--store", choices=("file", "redis"),
                   help="the platform's job store (default: file on embedded and RabbitMQ, Redis on Redis)")
    p.add_argument("--events", action="store_true",
                   help="both sides' workers send task events (-E), as when Flower or `celery events` watches")
    return p


def fan_out(module: str, args: argparse.Namespace, argv: list[str]) -> int | None:
    """With ``--broker all``, run this module once per broker in a child process; return its exit code."""
    if args.broker != "all":
        return None
    worst = 0
    for name in BROKER_NAMES:
        rest = [a for a in argv if not a.startswith("--broker")]
        if "--broker" in argv:  # "--broker all" as two words
            i = argv.index("--broker")
            rest = argv[:i] + argv[i + 2:]
        print(f"\n===== {module} --broker {name} =====", flush=True)
        code = subprocess.call([sys.executable, "-m", module, "--broker", name, *rest], cwd=ROOT)
        worst = worst or code
    return worst


# --- one benchmark run's workspace and broker set-up ----------------------------------------------
@dataclass
class Setup:
    broker: str
    tag: str
    workspace: Path
    concurrency: int
    platform_env: dict[str, str]
    plain_env: dict[str, str]
    plain_queue: str
    pool: str
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    keep: bool = False
    #: extra ``celery worker`` options for both sides (``-E`` with ``--events``)
    worker_options: list[str] = field(default_factory=list)
    #: µs of CPU to create a file in the workspace, measured when it was made (see ``_workspace``)
    file_create_us: float = 0.0

    @property
    def results_dir(self) -> Path:
        return Path(self.platform_env["GUESTKIT_RESULTS_DIR"])

    @property
    def jobs_dir(self) -> Path:
        return Path(self.platform_env["GUESTKIT_JOBS_DIR"])

    def platform_api(self):
        """The platform's Python API, configured for this workspace (import once per process)."""
        os.environ.update(self.platform_env)
        from app.celery import app
        from app.intake import api

        assert app.conf.broker_url == self.platform_env["CELERY_BROKER_URL"]
        # Celery prefers CELERY_BROKER_URL from the environment over any app's configuration: the
        # platform has read it now; drop it so the plain Celery app in this process keeps its own broker
        os.environ.pop("CELERY_BROKER_URL", None)
        return api

    def plain_app(self, matched: bool = True):
        from benchmarks.plain_app import make_app

        if self.broker == "embedded":
            _atomic_filesystem_put()
        env = self.plain_env
        return make_app(env["BENCH_BROKER_URL"], env["BENCH_RESULT_BACKEND"], env["BENCH_QUEUE"],
                        json.loads(env["BENCH_TRANSPORT_OPTIONS"]), matched=matched)

    def platform_worker(self, name: str = "platform", env: dict[str, str] | None = None,
                        loglevel: str = "info", app_module: str = "app") -> Worker:
        worker = Worker(f"{name}-{self.tag}", self.workspace / f"{name}.log",
                        {**_base_env(), **self.platform_env, **(env or {})},
                        [CELERY, "-A", app_module, "worker", "-l", loglevel, "-c", str(self.concurrency),
                         "-P", "prefork", "-n", f"bench-{name}-{self.tag}@%h", "--without-mingle", "--without-gossip",
                         *self.worker_options])
        self.workers.append(worker)
        return worker.start()

    def plain_worker(self, name: str = "plain", matched: bool = True, loglevel: str = "info") -> Worker:
        worker = Worker(f"{name}-{self.tag}", self.workspace / f"{name}.log",
                        {**_base_env(), **self.plain_env, "BENCH_MATCHED": "1" if matched else "0"},
                        [CELERY, "-A", "benchmarks.plain_app", "worker", "-l", loglevel, "-c", str(self.concurrency),
                         "-P", "prefork", "-Q", self.plain_queue, "-n", f"bench-{name}-{self.tag}@%h",
                         "--without-mingle", "--without-gossip", *self.worker_options])
        self.workers.append(worker)
        return worker.start()

    def check_workers(self) -> None:
        """Raise if a worker this run started has died (a crash must not look like a slow run)."""
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is not None and not worker.stopped:
                raise RuntimeError(f"worker {worker.name} died (exit {worker.proc.returncode}); "
                                   f"log {worker.log}:\n{worker.log.read_text(errors='replace')[-2500:]}")

    def wait_plain(self, results: list, timeout: float = 600.0, interval: float = 0.005) -> None:
        """``AsyncResult.get()`` each result, checking every few seconds that the workers live."""
        from celery.exceptions import TimeoutError as CeleryTimeout

        deadline = time.monotonic() + timeout
        for r in results:
            while True:
                try:
                    r.get(timeout=3, interval=interval)
                    break
                except CeleryTimeout:
                    self.check_workers()
                    if time.monotonic() > deadline:
                        raise

    def wait_files(self, paths: Iterable[Path], timeout: float = 600.0) -> float:
        return wait_for_files(paths, timeout, check=self.check_workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - clean-up is best effort
                print(f"(clean-up: {type(exc).__name__}: {exc})", file=sys.stderr)
        if self.keep:
            print(f"workspace kept: {self.workspace}")
        else:
            shutil.rmtree(self.workspace, ignore_errors=True)


_PATCHED_PUT = False


def _atomic_filesystem_put() -> None:
    """The plain Celery client publishes to kombu's filesystem transport under a temporary name and renames
    the message in. Stock kombu writes the message file in place and its consumer may take it while it is
    still empty, then the worker dies with JSONDecodeError (seen here around 1,000 tasks). Only this client
    process is patched; the plain worker consumes with stock kombu."""
    global _PATCHED_PUT
    if _PATCHED_PUT:
        return
    from kombu.transport import filesystem
    from kombu.utils.json import dumps

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(os.path.dirname(self.data_folder_out.rstrip("/")), f".{name}.tmp")
        with open(tmp, "wb", buffering=0) as handle:
            handle.write(dumps(payload).encode())
        os.rename(tmp, final)

    filesystem.Channel._put = _put
    _PATCHED_PUT = True


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "GUESTKIT_", "BENCH_"))}


def make_setup(broker: str, concurrency: int = 2, keep: bool = False, store: str | None = None,
               events: bool = False) -> Setup:
    """A private workspace, queue names and key prefixes for ``broker``; exits 0 with a message when the
    broker's server is not reachable."""
    # SIGTERM (timeout, kill) runs the clean-up too: workers stopped, queues and keys deleted
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tag = uuid.uuid4().hex[:8]
    ws, create_us, discarded = _workspace(broker)
    pool = f"bench-{tag}"
    plain_queue = f"bench-plain-{tag}"
    platform_env = {
        "GUESTKIT_HOME": str(ws / "home"),
        "GUESTKIT_RESULTS_DIR": str(ws / "results"),
        "GUESTKIT_JOBS_DIR": str(ws / "jobs"),
        "GUESTKIT_ALLOWED_DIRS": str(ws),
        "GUESTKIT_POOLS": pool,
        "GUESTKIT_CONCURRENCY": str(concurrency),
        "GUESTKIT_BRIDGE": "0",
        "GUESTKIT_BROKER_POLL": POLL,
    }
    plain_env = {"BENCH_QUEUE": plain_queue, "BENCH_TRANSPORT_OPTIONS": "{}"}
    cleanups: list[Callable[[], None]] = []
    if broker == "embedded":
        platform_env["CELERY_BROKER_URL"] = "embedded://" + str(ws / "broker")
        platform_env["GUESTKIT_STORE_URL"] = "file://" + str(ws / "store")
        plain_dir = ws / "plain-broker"
        for sub in ("queue", "control"):
            (plain_dir / sub).mkdir(parents=True)
        (ws / "plain-results").mkdir()
        plain_env.update(BENCH_BROKER_URL="filesystem://", BENCH_RESULT_BACKEND="file://" + str(ws / "plain-results"),
                         BENCH_TRANSPORT_OPTIONS=json.dumps({
                             "data_folder_in": str(plain_dir / "queue"), "data_folder_out": str(plain_dir / "queue"),
                             "control_folder": str(plain_dir / "control"), "polling_interval": float(POLL)}))
    elif broker == "redis":
        if not reachable(REDIS_URL):
            _unreachable(broker, REDIS_URL, ws)
        platform_env["CELERY_BROKER_URL"] = REDIS_URL
        platform_env["GUESTKIT_STORE_URL"] = f"{REDIS_URL}?prefix=bench-{tag}"
        plain_env.update(BENCH_BROKER_URL=REDIS_URL, BENCH_RESULT_BACKEND=REDIS_URL)
        cleanups.append(lambda: _redis_cleanup(tag))
    elif broker == "rabbitmq":
        if not reachable(RABBITMQ_URL):
            _unreachable(broker, RABBITMQ_URL, ws)
        platform_env["CELERY_BROKER_URL"] = RABBITMQ_URL
        platform_env["GUESTKIT_STORE_URL"] = "file://" + str(ws / "store")
        plain_env.update(BENCH_BROKER_URL=RABBITMQ_URL, BENCH_RESULT_BACKEND="rpc://")
        cleanups.append(lambda: _amqp_cleanup([pool, plain_queue]))
    else:
        raise SystemExit(f"unknown broker {broker}")
    if store == "redis":  # job store override (e.g. RabbitMQ broker + Redis store)
        platform_env["GUESTKIT_STORE_URL"] = f"{REDIS_URL}?prefix=bench-{tag}"
        cleanups.append(lambda: _redis_cleanup(tag))
    elif store == "file":
        platform_env["GUESTKIT_STORE_URL"] = "file://" + str(ws / "store")
    cleanups += [functools.partial(shutil.rmtree, slow, ignore_errors=True) for slow in discarded]
    return Setup(broker, tag, ws, concurrency, platform_env, plain_env, plain_queue, pool, cleanups, keep=keep,
                 worker_options=["-E"] if events else [], file_create_us=create_us)


#: a workspace where creating a file costs more than this (µs of CPU) is not used (see ``_workspace``)
SLOW_CREATE_US = 100.0
WORKSPACE_TRIES = 8


def _workspace(broker: str) -> tuple[Path, float, list[Path]]:
    """A new workspace directory where creating a file costs what it normally does, its measured cost
    (µs of CPU per file), and the directories tried before it (removed at the end of the run).

    On ext4 without a journal (this machine's root file system) a new inode skips every inode of its
    block group that was deleted between 1 s and 60 s ago (360 s if not written back yet):
    ``find_inode_bit``/``recently_deleted`` in fs/ext4/ialloc.c. After a clean-up that deleted thousands
    of files (a previous benchmark's workspace, a test suite, pip), creating one file in a directory of
    that group costs 0.3-0.9 ms of kernel CPU instead of 0.02-0.05 ms, for minutes. The platform writes
    a result file per job and plain Celery on Redis or RabbitMQ writes none, so such a directory would
    measure the last clean-up rather than the platform. The parent is marked ``chattr +T`` (a "top
    directory"), so that ext4 spreads new workspaces over block groups, and each candidate is probed
    by creating 200 empty files in it (kept: deleting them would start the same effect)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+T", str(BENCH_DIR)], capture_output=True, check=False)  # best effort
    tried: list[Path] = []
    for _ in range(WORKSPACE_TRIES):
        ws = Path(tempfile.mkdtemp(prefix=f"{broker}-", dir=BENCH_DIR))
        cost = _file_create_us(ws)
        if cost <= SLOW_CREATE_US:
            return ws, cost, tried
        tried.append(ws)
    print(f"(creating a file costs {cost:.0f} µs in each of {WORKSPACE_TRIES} new directories under {BENCH_DIR}: "
          "measuring anyway)", file=sys.stderr)
    return ws, cost, tried[:-1]


def _file_create_us(directory: Path, files: int = 200) -> float:
    probe = directory / ".create-probe"
    probe.mkdir()
    start = time.process_time()
    for i in range(files):
        os.close(os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return (time.process_time() - start) / files * 1e6


def _unreachable(broker: str, url: str, ws: Path) -> None:
    shutil.rmtree(ws, ignore_errors=True)
    print(f"SKIPPED {broker}: {url} is not reachable")
    raise SystemExit(0)


def _redis_cleanup(tag: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{tag}*", count=5000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])


def _amqp_cleanup(queues: list[str]) -> None:
    from kombu import Connection

    with Connection(RABBITMQ_URL) as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                channel.queue_delete(queue)
            except Exception:  # noqa: BLE001 - it may not exist
                channel = conn.channel()


# --- worker processes --------------------------------------------------------------------------------
class Worker(WorkerProcess):
    """A worker process that also reports its memory, and knows whether it was stopped on purpose."""

    stopped = False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        self.stopped = True
        return super().stop(sig, timeout)

    def rss(self) -> dict[str, float]:
        """Resident memory in MiB: the main process and each child."""
        import psutil

        main = psutil.Process(self.pid)
        out = {"main": main.memory_info().rss / 2**20}
        for i, child in enumerate(sorted(main.children(recursive=True), key=lambda c: c.pid)):
            try:
                out[f"child{i + 1}"] = child.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
        return out


# --- CPU accounting -------------------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds (user + system) spent by each side of a run: this process (submitting and
    waiting), the worker's main process, its prefork children, and the broker's server when it runs
    on this machine (redis-server, RabbitMQ's beam.smp). Read before and after the measured part."""

    SERVERS = {"redis": ("redis-server",), "rabbitmq": ("beam.smp", "beam")}

    def __init__(self, worker: WorkerProcess, broker: str) -> None:
        import psutil

        main = psutil.Process(worker.pid)
        self.processes: dict[str, list[Any]] = {
            "client": [psutil.Process()], "worker main": [main], "children": main.children(recursive=True),
            "broker": [p for p in psutil.process_iter(["name"])
                       if (p.info["name"] or "") in self.SERVERS.get(broker, ())],
        }
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        import psutil

        totals = {}
        for side, processes in self.processes.items():
            total = 0.0
            for process in processes:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            totals[side] = total
        return totals

    def per_job(self, jobs: int) -> dict[str, float]:
        """Milliseconds of CPU per job on each side since the meter was made, and their sum."""
        end = self._read()
        spent = {side: (end[side] - self.start[side]) * 1000 / jobs for side in end}
        spent["total"] = sum(spent.values())
        return spent


# --- jobs ----------------------------------------------------------------------------------------------
def echo_job(tag: str, n: int | str, pool: str | None = None) -> dict[str, Any]:
    """A ``system.echo`` job like the seed's (idempotency key, timeout, priority 5)."""
    job_id = f"bench-{tag}-{n}"
    return {
        "version": "1.0",
        "job_id": job_id,
        "created_at": datetime.now(UTC).isoformat(),
        "kind": "VMOperation",
        "operation": "system.echo",
        "execution": {"idempotency_key": f"key-{job_id}", "timeout_seconds": 60, "priority": 5},
        "payload": {"type": "system.echo.v1",
                    "data": {"message": "Hello from guestkit worker!", "timestamp": "2026-01-30T15:00:00Z"}},
    }


def wait_for_files(paths: Iterable[Path], timeout: float, pause: float = 0.002,
                   check: Callable[[], None] | None = None) -> float:
    """Wait until every path exists; return the time.perf_counter() at which the last one was seen.

    Looks at the oldest missing path only (jobs finish roughly in order), so the waiting client
    costs next to no CPU on the machine the workers share."""
    pending = list(paths)
    head = 0
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 2
    while head < len(pending):
        if os.path.exists(pending[head]):
            head += 1
            continue
        if check is not None and time.monotonic() > next_check:
            check()
            next_check = time.monotonic() + 2
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending) - head} results missing after {timeout} s, e.g. {pending[head]}")
        time.sleep(pause)
    return time.perf_counter()


# --- figures -------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine() -> str:
    import celery
    import kombu

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB RAM, Linux {_platform.release()}, "
            f"Python {_platform.python_version()}, Celery {celery.__version__}, kombu {kombu.__version__}")


def header(name: str, setup: Setup, extra: str = "") -> None:
    events = "task events on (-E)" if "-E" in setup.worker_options else "task events off (Celery's default)"
    store = "Redis" if setup.platform_env["GUESTKIT_STORE_URL"].startswith("redis") else "file"
    print(f"# {name} | broker {setup.broker} | {store} job store | prefork -c {setup.concurrency} | {events} | "
          f"{extra}".rstrip(" |"))
    print(f"# {machine()}; creating a file in the workspace: {setup.file_create_us:.0f} µs")
    print(f"# {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}", flush=True)


def table(rows: list[list[Any]], head: list[str]) -> None:
    cells = [[str(c) for c in head]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
