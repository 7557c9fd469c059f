"""Chaos test: many jobs through the API and the file drop while workers, the broker and the bridge
are killed under them; then the invariants, printed.

    .venv/bin/python -m tests.chaos --broker redis --jobs 1000 --duration-limit 600
    .venv/bin/python -m tests.chaos --broker rabbitmq --quick          # 100 jobs, about a minute

What it does, in its own workspace (a temporary directory, removed at the end unless ``--keep``):

- starts a PRIVATE broker on a free port (``redis-server``; a second RabbitMQ node named
  ``chaos<port>@localhost``), never touching the shared ones; ``embedded`` needs no server;
- starts ``--workers`` real ``celery -A app worker`` processes (prefork, ``--concurrency`` each)
  and one ``celery -A app bridge`` process on a jobs directory;
- submits ``--jobs`` jobs of mixed operations (test.count ok / retried / failing, system.echo,
  test.boom, guestkit.inspect on a small image, idempotency-key groups, some cancelled), a share
  of them (``--file-share``) dropped as files for the bridge, the rest through ``app.intake.api.submit``;
- meanwhile SIGKILLs a random worker process every ``--kill-interval`` seconds (a pool child, the
  main process alone, or the main process with all its children) and restarts what died; restarts
  the broker once (down for ``--broker-down`` seconds) and SIGKILLs and restarts the bridge once;
- watches every job's state and result file all along, then checks:

  I1 every job ends in exactly one terminal state (store state terminal, history has exactly one
     terminal entry and it is the last one, the result file says the same state);
  I2 no job is lost (every submitted job and every dropped file is accounted for: store entry,
     result file; every file in done/ or failed/, none left behind);
  I3 no completed job ran its handler twice unless retried (two executions never share an
     attempt number; executions never exceed the final attempt; a job with n executions has at
     least n-1 retries in its history);
  I4 no terminal state ever changed (the first terminal state and result status seen while
     watching are the final ones);
  I5 attempts never exceed max_attempts (store, every history entry, result, executions);
  I6 one idempotency key completes (non-replayed) at most once; a job whose submission failed
     never ran.

Exit status 0 when every invariant holds, 1 otherwise; ``--json FILE`` writes the report too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
SHARED_REDIS = os.environ.get("GUESTKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# --- private brokers ----------------------------------------------------------------------------
class Broker:
    name = "embedded"
    restartable = False

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    @property
    def url(self) -> str:
        return "embedded://" + str(self.workspace / "broker")

    def start(self) -> None: ...

    def restart(self, down: float) -> str:
        return "embedded broker has no server: nothing to restart (its state is the broker folder)"

    def close(self) -> None: ...

    def messages_naming(self, job_id: str) -> list[str]:
        """Where the broker still holds a message naming ``job_id`` (queued or unacknowledged)."""
        needle = job_id.encode()
        found = []
        for path in sorted((self.workspace / "broker").rglob("*")):
            try:
                if path.is_file() and needle in path.read_bytes():
                    found.append(str(path.relative_to(self.workspace / "broker")))
            except OSError:
                continue
        return found


class PrivateRedis(Broker):
    """A redis-server of our own with an append-only file, so a restart loses no message (the way a
    Redis broker must be run in production)."""

    name = "redis"
    restartable = True

    def __init__(self, workspace: Path) -> None:
        super().__init__(workspace)
        self.port = free_port()
        self.dir = workspace / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")], start_new_session=True)
        wait_until(lambda: port_open(self.port), 20, "the private redis-server")

    def restart(self, down: float) -> str:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=30)
        assert self.proc is not None
        self.proc.wait(30)
        time.sleep(down)
        self.start()
        return f"redis-server on port {self.port} shut down, down {down:g} s, restarted from its AOF"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def messages_naming(self, job_id: str) -> list[str]:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        found = []
        try:
            for key in client.scan_iter(count=1000):
                kind = client.type(key).decode()
                values = (client.lrange(key, 0, -1) if kind == "list" else
                          list(client.hgetall(key).values()) if kind == "hash" else
                          [m for m, _ in client.zrange(key, 0, -1, withscores=True)] if kind == "zset" else [])
                hits = sum(job_id.encode() in value for value in values)
                if hits:
                    found.append(f"{key.decode(errors='replace')} ({kind}): {hits}")
        except redis.RedisError as exc:
            found.append(f"(redis not readable: {exc})")
        finally:
            client.close()
        return found


class PrivateRabbit(Broker):
    """A second RabbitMQ node (own name, ports, data directory); bounced with stop_app/start_app."""

    name = "rabbitmq"
    restartable = True

    def __init__(self, workspace: Path) -> None:
        super().__init__(workspace)
        self.port = free_port()
        # a long name on the loopback address: needs no resolvable host name (a fresh root may have
        # no /etc/hosts, and the Erlang distribution then fails on "localhost" with nxdomain)
        self.node = f"chaos{self.port}@127.0.0.1"
        self.dir = workspace / "rabbitmq"
        self.dir.mkdir()
        self.dir.chmod(0o777)
        workspace.chmod(0o755)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        for name in ("enabled_plugins", "rabbitmq.conf"):
            (self.dir / name).chmod(0o666)
        self.env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_USE_LONGNAME": "true",
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(free_port()), "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
                    "RABBITMQ_PID_FILE": str(self.dir / "pid")}
        self.started = False

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, *args], env=self.env, check=True, capture_output=True,
                       timeout=timeout)

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True, timeout=60)
        self.started = True
        wait_until(lambda: port_open(self.port), 120, f"the private RabbitMQ node {self.node}")
        self._ctl("await_startup", "--timeout", "120")

    def restart(self, down: float) -> str:
        self._ctl("stop_app")
        time.sleep(down)
        self._ctl("start_app")
        return f"RabbitMQ node {self.node} stop_app, down {down:g} s, start_app"

    def close(self) -> None:
        if self.started:
            try:
                self._ctl("stop", timeout=60)
            except (subprocess.SubprocessError, OSError) as exc:
                log(f"could not stop {self.node}: {exc}")


BROKERS = {"embedded": Broker, "redis": PrivateRedis, "rabbitmq": PrivateRabbit}


# --- worker and bridge processes ----------------------------------------------------------------
class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path, ready: bytes) -> None:
        self.name, self.args, self.env, self.log_path, self.ready = name, args, env, log_path, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as handle:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1
        if wait:
            wait_until(lambda: self.ready in self.log_path.read_bytes()[offset:] or not self.alive, 60,
                       f"{self.name} to be ready")
            if not self.alive:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_path.read_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill_group(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # stray grandchildren (qemu-nbd), if any
            except ProcessLookupError:
                pass


# --- the jobs -----------------------------------------------------------------------------------
@dataclass
class Job:
    job_id: str
    kind: str
    via: str  # api | file
    max_attempts: int
    key: str | None = None
    submitted: str = "pending"  # ok | submit_failed | rejected | dropped
    cancel: bool = False
    first_terminal: str | None = None
    first_result: str | None = None


@dataclass
class Stats:
    kills: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    broker_restarts: list[str] = field(default_factory=list)
    bridge_restarts: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    submit_errors: Counter[str] = field(default_factory=Counter)


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tag = uuid.uuid4().hex[:8]
        self.workspace = Path(tempfile.mkdtemp(prefix=f"guestkit-chaos-{args.broker}-"))
        self.broker = BROKERS[args.broker](self.workspace)
        self.runs_file = self.workspace / "runs.txt"
        self.jobs_dir = self.workspace / "jobs"
        self.results_dir = self.workspace / "results"
        self.pool = f"chaos-{self.tag}"
        if args.broker == "redis":
            self.store_url = f"{SHARED_REDIS}?prefix=chaos-{self.tag}"
        else:
            self.store_url = "file://" + str(self.workspace / "store")
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.stats = Stats()
        self.workers: list[Proc] = []
        self.bridge: Proc | None = None
        self.submitting_done = threading.Event()
        self.stop_watch = threading.Event()
        self.violations: list[str] = []
        self.broken = False  # set by check(): keep the workspace for a look
        self.events: list[str] = []
        self.image: Path | None = None

    # --- setup --------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        from tests.plugins import TEST_HANDLERS

        return {
            "CELERY_BROKER_URL": self.broker.url,
            "GUESTKIT_STORE_URL": self.store_url,
            "GUESTKIT_HOME": str(self.workspace / "home"),
            "GUESTKIT_RESULTS_DIR": str(self.results_dir),
            "GUESTKIT_JOBS_DIR": str(self.jobs_dir),
            "GUESTKIT_ALLOWED_DIRS": str(self.workspace),
            "GUESTKIT_EXTRA_HANDLERS": TEST_HANDLERS,
            "GUESTKIT_POOLS": self.pool,
            "GUESTKIT_BRIDGE": "0",
            "GUESTKIT_RETRY_BACKOFF": "0.1",
            "GUESTKIT_TIMEOUT_GRACE": "2",
            "GUESTKIT_SHUTDOWN_GRACE": "5",
            "GUESTKIT_HEARTBEAT_INTERVAL": "1",
            "GUESTKIT_CAPABILITY_WAIT": "30",
            # Redis: a message taken by a worker that was SIGKILLed comes back after this long.
            # Every chaos job lasts well under it, so a running job is never handed out twice.
            "GUESTKIT_VISIBILITY_TIMEOUT": str(self.args.visibility_timeout),
            # a killed run's lease must lapse before its redelivery may run it again: keep that short
            "GUESTKIT_RUN_LEASE": str(self.args.run_lease),
            # a job whose message the broker lost (kombu's Redis transport can, when a worker dies
            # between BRPOP and its unacked bookkeeping) is published again after this long
            "GUESTKIT_REQUEUE_AFTER": "15",
            # a killed pool child's job is called lost (and retried) after this long, not Celery's 10 s
            "GUESTKIT_WORKER_LOST_WAIT": "1",
        }

    def setup(self) -> None:
        self.broker.start()
        env = self.environment()
        os.environ.update(env)
        self.jobs_dir.mkdir()
        self.results_dir.mkdir()
        if self.args.inspect_share > 0:
            self.image = self._build_image()
        full_env = {**os.environ, **env}
        logs = self.workspace / "logs"
        logs.mkdir()
        for n in range(self.args.workers):
            name = f"chaos{n}-{self.tag}"
            self.workers.append(Proc(
                name, [CELERY, "-A", "app", "worker", "-l", "info", "-c", str(self.args.concurrency), "-n",
                       f"{name}@%h", "--without-mingle", "--without-gossip", "-Q", self.pool],
                full_env, logs / f"{name}.log", b" ready."))
        self.bridge = Proc("bridge", [CELERY, "-A", "app", "bridge", "--jobs-dir", str(self.jobs_dir),
                                      "--interval", "0.05", "--settle", "0.5"],
                           full_env, logs / "bridge.log", b"bridge: watching")
        threads = [threading.Thread(target=w.start) for w in self.workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.bridge.start()

    def _build_image(self) -> Path:
        from tests.imagebuild import build_image, sample_root

        root = self.workspace / "guest-root"
        root.mkdir()
        sample_root(root)
        image = self.workspace / "guest.qcow2"
        build_image(root, image, "plain", "qcow2")
        return image

    # --- job documents ------------------------------------------------------------------------
    def make_document(self, index: int) -> tuple[dict[str, Any], Job]:
        roll = self.rng.random()
        a = self.args
        job_id = f"chaos-{self.tag}-{index:05d}"
        execution: dict[str, Any] = {"max_attempts": self.rng.choice([1, 2, 3, 3, 5]), "timeout_seconds": 60}
        count = {"runs_file": str(self.runs_file), "seconds": round(self.rng.uniform(0, a.max_job_seconds), 3)}
        if roll < a.inspect_share and self.image is not None:
            kind, operation, data = "inspect", "guestkit.inspect", {"image": {"path": str(self.image)}}
        elif roll < a.inspect_share + 0.12:
            kind, operation, data = "echo", "system.echo", {"message": f"hello {index}"}
        elif roll < a.inspect_share + 0.16:
            kind, operation, data = "boom", "test.boom", {}
        elif roll < a.inspect_share + 0.26:
            kind, operation, data = "count-retry", "test.count", {**count, "fail_first": True}
            execution["max_attempts"] = self.rng.choice([2, 3, 5])
        elif roll < a.inspect_share + 0.30:
            kind, operation, data = "count-fail", "test.count", {**count, "fail": True}
        else:
            kind, operation, data = "count", "test.count", count
        key = None
        if operation == "test.count" and self.rng.random() < 0.08:
            key = f"chaos-key-{self.tag}-{self.rng.randrange(max(3, a.jobs // 40))}"
            execution["idempotency_key"] = key
        doc = {
            "version": "1.0", "job_id": job_id, "created_at": datetime.now(UTC).isoformat(),
            "kind": "VMOperation", "operation": operation, "execution": execution,
            "routing": {"worker_pool": self.pool},
            "payload": {"type": f"{operation}.v1", "data": data},
        }
        via = "file" if self.rng.random() < a.file_share else "api"
        job = Job(job_id, kind, via, execution["max_attempts"], key,
                  cancel=via == "api" and self.rng.random() < 0.03)
        return doc, job

    def submit_all(self) -> None:
        from app.intake import api
        from app.plugin.errors import ValidationFailed

        total = self.args.jobs
        spread = self.args.submit_seconds
        started = time.monotonic()
        for index in range(total):
            doc, job = self.make_document(index)
            with self.lock:
                self.jobs[job.job_id] = job
            if job.via == "file":
                tmp = self.jobs_dir / f".{job.job_id}.json.tmp"
                tmp.write_text(json.dumps(doc))
                os.rename(tmp, self.jobs_dir / f"{job.job_id}.json")
                job.submitted = "dropped"
            else:
                try:
                    api.submit(doc)
                    job.submitted = "ok"
                except api.SubmitFailed as exc:
                    job.submitted = "submit_failed"
                    self.stats.submit_errors[str(exc)[:80]] += 1
                except ValidationFailed as exc:
                    job.submitted = "rejected"
                    self.violations.append(f"{job.job_id}: valid document rejected: {exc}")
                except Exception as exc:  # noqa: BLE001 - counted and reported: submit must not crash
                    job.submitted = "submit_failed"
                    self.stats.submit_errors[f"unexpected {type(exc).__name__}: {str(exc)[:60]}"] += 1
                if job.cancel and job.submitted == "ok":
                    time.sleep(self.rng.uniform(0, 0.2))
                    try:
                        api.cancel(job.job_id)
                        self.stats.cancels["requested"] += 1
                    except api.CancelRefused:
                        self.stats.cancels["refused (already ended)"] += 1
                    except Exception as exc:  # noqa: BLE001
                        self.stats.cancels[f"error {type(exc).__name__}"] += 1
            # pace the submissions over ``spread`` seconds
            ahead = started + spread * (index + 1) / total - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.submitting_done.set()

    # --- watching ----------------------------------------------------------------------------
    def store(self) -> Any:
        from app.celery import app

        return app.backend.store

    def read_result(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.results_dir / f"{job_id}-result.json").read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:  # a half-written result file would be a bug: results are atomic
            self.violations.append(f"{job_id}: result file does not parse: {exc}")
            return None

    def watch_once(self) -> int:
        """Record the first terminal state and result status of every job; return how many ended."""
        store = self.store()
        with self.lock:
            jobs = list(self.jobs.values())
        ended = 0
        for job in jobs:
            if job.first_terminal is None:
                try:
                    status = store.get(job.job_id)
                except Exception:  # noqa: BLE001 - the store may be briefly unreachable
                    continue
                if status is not None and status.terminal:
                    job.first_terminal = status.state.value
            if job.first_result is None:
                result = self.read_result(job.job_id)
                if result is not None:
                    job.first_result = result.get("status")
            if job.first_terminal is not None and job.first_result is not None:
                ended += 1
        return ended

    def watch(self) -> None:
        while not self.stop_watch.is_set():
            self.watch_once()
            self.stop_watch.wait(0.5)

    def files_pending(self) -> int:
        left = [p for p in self.jobs_dir.iterdir() if p.name.endswith(".json")]
        claims = self.jobs_dir / ".processing"
        held = list(claims.iterdir()) if claims.is_dir() else []
        return len(left) + len(held)

    def all_done(self) -> bool:
        if not self.submitting_done.is_set():
            return False
        with self.lock:
            jobs = list(self.jobs.values())
        return all(j.first_terminal and j.first_result for j in jobs) and self.files_pending() == 0

    # --- chaos --------------------------------------------------------------------------------
    def kill_something(self) -> None:
        import psutil

        alive = [w for w in self.workers if w.alive]
        if not alive:
            return
        worker = self.rng.choice(alive)
        mode = self.rng.choices(["child", "group", "main"], weights=[5, 3, 2])[0]
        children = worker.children()
        if mode == "child" and children:
            victim = self.rng.choice(children)
            try:
                os.kill(victim, signal.SIGKILL)
                self.stats.kills["pool child"] += 1
                self.event(f"SIGKILL pool child {victim} of {worker.name}")
            except ProcessLookupError:
                pass
            return
        self.event(f"SIGKILL {'main process only' if mode == 'main' else 'main and children'} of {worker.name}")
        if mode == "main":
            os.kill(worker.pid, signal.SIGKILL)
            worker.proc.wait(30)  # type: ignore[union-attr]
            self.stats.kills["main process only"] += 1
            # its pool children must not outlive it (Celery sets PR_SET_PDEATHSIG on them)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(psutil.pid_exists(c) and psutil.Process(c).status()
                                                      != psutil.STATUS_ZOMBIE for c in children):
                time.sleep(0.05)
            orphans = [c for c in children if psutil.pid_exists(c)
                       and psutil.Process(c).status() != psutil.STATUS_ZOMBIE]
            if orphans:
                self.stats.kills["orphaned children left running"] += len(orphans)
            worker.kill_group()
        else:
            worker.kill_group()
            self.stats.kills["main process and children"] += 1
        time.sleep(self.rng.uniform(0.1, 1.0))
        worker.start(wait=False)
        self.stats.restarts += 1
        self.event(f"restarted {worker.name}")

    def restart_bridge(self) -> None:
        assert self.bridge is not None
        self.bridge.kill_group()
        time.sleep(0.5)
        self.bridge.start()
        self.stats.bridge_restarts += 1

    def event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {text}")

    def revive(self) -> None:
        """Restart what died on its own (a supervisor's job: systemd Restart=always)."""
        for worker in self.workers:
            if not worker.alive:
                code = worker.proc.returncode if worker.proc else None
                self.stats.kills[f"died on its own (exit {code})"] += 1
                self.event(f"{worker.name} died on its own (exit {code}); restarting it")
                log(self.events[-1])
                worker.start(wait=False)
                self.stats.restarts += 1
        if self.bridge is not None and not self.bridge.alive:
            self.bridge.start()

    def _reporting_death(self, target: Any) -> Any:  # noqa: ANN401
        """``target`` for a driver thread, whose death (a run of 0 jobs) becomes a violation with its
        traceback instead of a line on stderr."""
        def run() -> None:
            try:
                target()
            except BaseException:  # noqa: BLE001 - reported, not swallowed
                import traceback

                self.violations.append(f"the chaos driver's {target.__name__} thread died: {traceback.format_exc()}")
                log(f"{target.__name__} thread died:\n{traceback.format_exc()}")
        return run

    def run(self) -> float:
        # the app is imported here, before the driver's threads start: celery's package is not safe to
        # import from two threads at once (one can be handed a half-initialised module and die)
        from app.intake import api  # noqa: F401 - the submitter's
        self.store()  # the watcher's
        started = time.monotonic()
        limit = started + self.args.duration_limit
        submitter = threading.Thread(target=self._reporting_death(self.submit_all), daemon=True)
        watcher = threading.Thread(target=self._reporting_death(self.watch), daemon=True)
        submitter.start()
        watcher.start()
        broker_at = started + self.args.submit_seconds * 0.4
        bridge_at = started + self.args.submit_seconds * 0.6
        chaos_until = started + max(self.args.submit_seconds * 1.5, self.args.chaos_seconds)
        next_kill = started + self.args.kill_interval
        broker_done = bridge_done = False
        progress, progress_at = -1, started
        while time.monotonic() < limit:
            now = time.monotonic()
            ended = sum(1 for j in list(self.jobs.values()) if j.first_terminal)
            if ended != progress:
                progress, progress_at = ended, now
            elif self.submitting_done.is_set() and now >= chaos_until and now - progress_at > self.args.stall_seconds:
                log(f"no job ended for {self.args.stall_seconds:g} s: stopping ({len(self.jobs) - ended} not ended)")
                break
            if not broker_done and now >= broker_at:
                broker_done = True
                if self.broker.restartable:
                    log("restarting the broker")
                    self.event("broker restart begins")
                    self.stats.broker_restarts.append(self.broker.restart(self.args.broker_down))
                    log(self.stats.broker_restarts[-1])
                else:
                    self.stats.broker_restarts.append(self.broker.restart(0))
            if not bridge_done and now >= bridge_at:
                bridge_done = True
                log("SIGKILL and restart of the bridge")
                self.event("bridge SIGKILL")
                self.restart_bridge()
            if now >= next_kill and now < chaos_until:
                self.kill_something()
                next_kill = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.args.kill_interval
            self.revive()
            if self.all_done():
                break
            time.sleep(0.1)
        else:
            log(f"duration limit of {self.args.duration_limit} s reached")
        submitter.join(5)
        self.stop_watch.set()
        watcher.join(5)
        self.watch_once()
        return time.monotonic() - started

    def sabotage(self) -> None:
        """Break invariant I2 on purpose: remove the result file of one job that completed."""
        store = self.store()
        victim = next(j for j in sorted(self.jobs) if (s := store.get(j)) is not None and s.state.value == "completed"
                      and (self.results_dir / f"{j}-result.json").exists())
        (self.results_dir / f"{victim}-result.json").unlink()
        log(f"sabotage: removed the result file of {victim}")

    # --- what a job that broke an invariant left behind ---------------------------------------
    def dossier(self, job_id: str) -> dict[str, Any]:
        """Everything that says where a job got to: how it was submitted, its store record and history,
        its last progress, its result file, its dropped file (and the bridge's claim of it, its reason
        file) and the broker messages still naming it."""
        job = self.jobs.get(job_id)
        store = self.store()
        status = store.get(job_id)
        found: dict[str, Any] = {
            "submitted": None if job is None else {"kind": job.kind, "via": job.via, "submitted": job.submitted,
                                                   "cancel": job.cancel, "first_terminal": job.first_terminal},
            "state": None if status is None else status.state.value,
            "history": [] if status is None else [
                f"{h.at.isoformat()} {h.state.value} attempt {h.attempt} {h.worker_id or ''} {h.reason or ''}".strip()
                for h in status.history],
            "progress": store.progress(job_id)[-3:],
            "cancel_requested": store.cancel_requested(job_id),
            "result_file": (self.results_dir / f"{job_id}-result.json").exists(),
            "broker_messages": self.broker.messages_naming(job_id),
            "run_lease": self._lease_holder(store, job_id),
            "worker_processes": self._worker_processes(),
        }
        name = f"{job_id}.json"
        # every name holding the job id: a claim (<pid>@<host>@<token>@<file>), a numbered move, a reason
        found["dropped_file"] = {folder or "jobs": sorted(e.name for e in os.scandir(self.jobs_dir / folder)
                                                          if job_id in e.name)
                                 for folder in ("", ".processing", "done", "failed")
                                 if (self.jobs_dir / folder).is_dir()}
        reason = self.jobs_dir / "failed" / f"{name}.reason.txt"
        if reason.exists():
            found["reason"] = reason.read_text(errors="replace")
        return found

    @staticmethod
    def _lease_holder(store: Any, job_id: str) -> str:  # noqa: ANN401
        """Whether a live process still holds the job's run lease (taken and given back at once if not)."""
        probe = f"chaos-dossier/{os.getpid()}"
        if store.acquire_run(job_id, probe, ttl=5):
            store.release_run(job_id, probe)
            return "free"
        return "held by a live process"

    def _worker_processes(self) -> list[str]:
        """This run's celery processes still alive (an orphaned pool child has ppid 1 or a dead parent)."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
            cmdline = process.info["cmdline"] or []
            if any(self.tag in part for part in cmdline):
                found.append(f"pid {process.info['pid']} ppid {process.info['ppid']} {process.info['status']}: "
                             f"{' '.join(cmdline)[-80:]}")
        return found

    # --- invariants ---------------------------------------------------------------------------
    def check(self, elapsed: float) -> dict[str, Any]:
        store = self.store()
        executions: dict[str, list[int]] = defaultdict(list)
        if self.runs_file.exists():
            for line in self.runs_file.read_text().splitlines():
                job_id, attempt, _pid = line.split()
                executions[job_id].append(int(attempt))
        states: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        retried = 0
        key_completions: Counter[str] = Counter()
        v: dict[str, list[str]] = {name: [] for name in ("I1 one terminal state", "I2 nothing lost",
                                                          "I3 no unexplained second run", "I4 terminal never changed",
                                                          "I5 attempts <= max_attempts",
                                                          "I6 keys and failed submissions")}
        for job in self.jobs.values():
            kinds[f"{job.kind}/{job.via}"] += 1
            status = store.get(job.job_id)
            result = self.read_result(job.job_id)
            if status is None:
                v["I2 nothing lost"].append(f"{job.job_id} ({job.kind}, {job.via}, {job.submitted}): not in the store")
                continue
            if result is None:
                v["I2 nothing lost"].append(f"{job.job_id} ({job.kind}, {job.via}): no result file "
                                            f"(state {status.state})")
            states[status.state.value] += 1
            if status.error:
                codes[str(status.error.get("code"))] += 1
            terminal_entries = [h for h in status.history if h.state.terminal]
            if not status.terminal:
                v["I1 one terminal state"].append(f"{job.job_id} ({job.kind}): still {status.state}")
            elif len(terminal_entries) != 1 or not status.history[-1].state.terminal:
                v["I1 one terminal state"].append(
                    f"{job.job_id}: history {[h.state.value for h in status.history]}")
            if result is not None and status.terminal and result.get("status") != status.state.value:
                v["I1 one terminal state"].append(f"{job.job_id}: result says {result.get('status')}, "
                                                  f"store says {status.state}")
            if job.first_terminal is not None and job.first_terminal != status.state.value:
                v["I4 terminal never changed"].append(f"{job.job_id}: was {job.first_terminal}, now {status.state}")
            if job.first_result is not None and result is not None and job.first_result != result.get("status"):
                v["I4 terminal never changed"].append(f"{job.job_id}: result was {job.first_result}, "
                                                      f"now {result.get('status')}")
            attempts = [status.attempt, *(h.attempt for h in status.history)]
            if result is not None and "idempotent_replay_of" not in result:
                # (a replay carries the earlier job's execution_summary, as contract section 5 says)
                attempts.append((result.get("execution_summary") or {}).get("attempt") or 0)
            runs = executions.get(job.job_id, [])
            if max([*attempts, *runs]) > job.max_attempts:
                v["I5 attempts <= max_attempts"].append(
                    f"{job.job_id}: attempts {attempts} runs {runs}, max_attempts {job.max_attempts}")
            retries = sum(1 for h in status.history if (h.reason or "").startswith("retry:"))
            retried += bool(retries)
            if len(runs) != len(set(runs)):
                v["I3 no unexplained second run"].append(f"{job.job_id}: two executions of one attempt: {runs}")
            if runs and (max(runs) > status.attempt or len(runs) > retries + 1):
                v["I3 no unexplained second run"].append(
                    f"{job.job_id}: executions {runs}, final attempt {status.attempt}, {retries} retries")
            if status.state.value == "completed" and result is not None and runs and \
                    "idempotent_replay_of" not in result and \
                    result.get("execution_summary", {}).get("attempt") != max(runs):
                v["I3 no unexplained second run"].append(
                    f"{job.job_id}: result of attempt {result['execution_summary']['attempt']}, "
                    f"last execution attempt {max(runs)}")
            if job.key and result is not None and result.get("status") == "completed" \
                    and "idempotent_replay_of" not in result:
                key_completions[job.key] += 1
            if job.submitted == "submit_failed":
                if runs:
                    v["I6 keys and failed submissions"].append(f"{job.job_id}: submission failed but it ran {runs}")
                if status.state.value != "failed":
                    v["I6 keys and failed submissions"].append(f"{job.job_id}: submission failed, state "
                                                               f"{status.state}")
        for key, count in key_completions.items():
            if count > 1:
                v["I6 keys and failed submissions"].append(f"key {key}: {count} non-replayed completions")
        # the dropped files: each in done/ or failed/, none left behind
        files = [j for j in self.jobs.values() if j.via == "file"]
        done = {p.name for p in (self.jobs_dir / "done").glob("*.json")}
        failed = {p.name for p in (self.jobs_dir / "failed").glob("*.json")}
        for job in files:
            name = f"{job.job_id}.json"
            where = (name in done) + (name in failed)
            if where != 1:
                v["I2 nothing lost"].append(f"file {name}: in done/ {name in done}, in failed/ {name in failed}")
            else:
                final = store.get(job.job_id)
                if (name in done) != (final is not None and final.state.value == "completed"):
                    v["I2 nothing lost"].append(f"file {name}: in {'done' if name in done else 'failed'}/, "
                                                f"job {final.state if final else 'unknown'}")
        if self.files_pending():
            v["I2 nothing lost"].append(f"{self.files_pending()} files still in jobs/ or jobs/.processing/")
        v["I2 nothing lost"].extend(self.violations)
        # kept for a look; a sabotaged run breaks one on purpose: kept when anything else broke too
        self.broken = sum(map(len, v.values())) > (1 if self.args.sabotage else 0)
        total_runs = sum(len(r) for r in executions.values())
        multi = sum(1 for r in executions.values() if len(r) > 1)
        return {
            "broker": self.args.broker, "jobs": len(self.jobs), "elapsed_seconds": round(elapsed, 1),
            "workers": f"{self.args.workers} x prefork {self.args.concurrency}",
            "submitted": dict(Counter(j.submitted for j in self.jobs.values())),
            "mix": dict(sorted(kinds.items())),
            "final_states": dict(sorted(states.items())), "error_codes": dict(sorted(codes.items())),
            "handler_executions": total_runs, "jobs_executed_more_than_once": multi,
            "jobs_with_retries": retried,
            "kills": dict(self.stats.kills), "worker_restarts": self.stats.restarts,
            "broker_restarts": self.stats.broker_restarts, "bridge_restarts": self.stats.bridge_restarts,
            "cancels": dict(self.stats.cancels), "submit_errors": dict(self.stats.submit_errors),
            "events": self.events,
            "invariants": {name: {"ok": not problems, "violations": len(problems), "examples": problems[:5]}
                           for name, problems in v.items()},
            "dossiers": self._dossiers(v),
            "ok": not any(v.values()),
            "workspace": str(self.workspace),
        }

    def _dossiers(self, violations: dict[str, list[str]]) -> dict[str, Any]:
        """The dossier of (at most ten of) the jobs named by a violation."""
        named = {job_id for problems in violations.values() for problem in problems
                 for job_id in self.jobs if re.search(rf"{re.escape(job_id)}\b", problem)}
        return {job_id: self.dossier(job_id) for job_id in sorted(named)[:10]}

    # --- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        procs = [*self.workers, *([self.bridge] if self.bridge else [])]
        for proc in procs:
            if proc.alive:
                proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for proc in procs:
            try:
                proc.stop(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log(f"stopping {proc.name}: {exc}")
        self.broker.close()
        if self.store_url.startswith("redis://"):
            import redis

            client = redis.Redis.from_url(SHARED_REDIS)
            for key in client.scan_iter(match=f"chaos-{self.tag}:*", count=1000):
                client.delete(key)
        if self.args.keep or self.broken:  # a broken invariant keeps the workers' logs and the broker folder
            log(f"workspace kept: {self.workspace}")
        else:
            shutil.rmtree(self.workspace, ignore_errors=True)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"=== chaos report: {report['broker']} ===")
    for name in ("jobs", "elapsed_seconds", "workers", "submitted", "mix", "final_states", "error_codes",
                 "handler_executions", "jobs_executed_more_than_once", "jobs_with_retries", "kills",
                 "worker_restarts", "broker_restarts", "bridge_restarts", "cancels", "submit_errors"):
        print(f"{name:>30}: {report[name]}")
    print("invariants:")
    for name, verdict in report["invariants"].items():
        mark = "OK  " if verdict["ok"] else "FAIL"
        print(f"  {mark} {name}" + ("" if verdict["ok"] else f" ({verdict['violations']} violations)"))
        for example in verdict["examples"]:
            print(f"         {example}")
    if not report["ok"]:
        print("chaos events (for the violations above):")
        for line in report["events"]:
            print(f"  {line}")
        print("what the jobs named above left behind:")
        for job_id, dossier in report["dossiers"].items():
            print(f"  {job_id}:")
            for key, value in dossier.items():
                for number, line in enumerate(value if isinstance(value, list) and value else [value]):
                    print(f"    {key if number == 0 else '':>18}  {line}")
    print(f"RESULT: {'ALL INVARIANTS HOLD' if report['ok'] else 'INVARIANTS VIOLATED'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=sorted(BROKERS), default="embedded")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration-limit", type=float, default=600, help="hard bound of the whole run, seconds")
    parser.add_argument("--quick", action="store_true", help="100 jobs, a couple of kills: the CI version")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-interval", type=float, default=3.0, help="seconds between kills (randomised)")
    parser.add_argument("--submit-seconds", type=float, default=None, help="spread submissions over this long")
    parser.add_argument("--chaos-seconds", type=float, default=0, help="keep killing at least this long")
    parser.add_argument("--max-job-seconds", type=float, default=0.4)
    parser.add_argument("--file-share", type=float, default=0.2, help="share of jobs dropped as files")
    parser.add_argument("--inspect-share", type=float, default=0.02, help="share of guestkit.inspect jobs")
    parser.add_argument("--broker-down", type=float, default=3.0, help="seconds the broker stays down")
    parser.add_argument("--visibility-timeout", type=int, default=15)
    parser.add_argument("--run-lease", type=float, default=10, help="GUESTKIT_RUN_LEASE of the workers")
    parser.add_argument("--stall-seconds", type=float, default=120,
                        help="stop early when no job ended for this long after the chaos phase")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (logs, store, results)")
    parser.add_argument("--sabotage", action="store_true",
                        help="remove one completed job's result file before checking (shows the dossiers work)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = min(args.jobs, 100) if args.jobs != 1000 else 100
        args.kill_interval = min(args.kill_interval, 2.0)
        args.duration_limit = min(args.duration_limit, 240)
    if args.submit_seconds is None:
        args.submit_seconds = max(8.0, args.jobs / 25)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chaos = Chaos(args)
    log(f"broker {args.broker}, {args.jobs} jobs, seed {args.seed}, workspace {chaos.workspace}")
    report: dict[str, Any]
    try:
        chaos.setup()
        log(f"broker {chaos.broker.url.split('@')[-1]}, {args.workers} workers and a bridge are up; submitting")
        elapsed = chaos.run()
        if args.sabotage:
            chaos.sabotage()
        report = chaos.check(elapsed)
        report["seed"] = args.seed
    finally:
        chaos.close()
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
