"""Secrets and exposure: broker and store passwords never reach logs, results, the job store or error
messages; Flower and its metrics bind to loopback unless told otherwise; the README says what to protect."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CELERY, ROOT, SESSION_DIR, WorkerPool, make_job, wait_for

PASSWORD = "S3cr3t-Pa55w0rd-xyzzy"
pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server that requires a password; yields its URL (password included)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis-auth")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", PASSWORD, "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(up, 20, "the password-protected redis-server")
    yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(10)


def _leaks(text: str | bytes) -> bool:
    needle = PASSWORD.encode() if isinstance(text, bytes) else PASSWORD
    return needle in text


def _all_files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path


@pytest.mark.slow
def test_password_never_reaches_logs_results_or_store(secured_redis: str, tmp_path: Path) -> None:
    """A worker and a submitter on a password-protected Redis broker and Redis job store: the banner,
    the log, the results, the job store's contents and the worker advertisement hold no password."""
    import redis

    prefix = f"secret-{os.getpid()}"
    home = SESSION_DIR / f"secret-home-{tmp_path.name}"
    results = SESSION_DIR / f"secret-results-{tmp_path.name}"
    pool_name = f"secret-{tmp_path.name[-10:]}"
    env = {"CELERY_BROKER_URL": secured_redis, "GUESTKIT_STORE_URL": f"{secured_redis}?prefix={prefix}",
           "GUESTKIT_HOME": str(home), "GUESTKIT_RESULTS_DIR": str(results), "GUESTKIT_POOLS": pool_name}
    pool = WorkerPool(tmp_path)
    try:
        worker = pool(concurrency=1, env=env)
        script = (
            "import json, sys\n"
            "from app.intake import api\n"
            "doc = json.loads(sys.argv[1])\n"
            "print(json.dumps(api.submit(doc).result(timeout=60)))\n"
            "print(api.status(doc['job_id']).model_dump_json())\n"
        )
        doc = make_job(data={"message": "hello"})
        done = subprocess.run([sys.executable, "-c", script, json.dumps(doc)], cwd=ROOT, capture_output=True,
                              env={**os.environ, **env}, timeout=90)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert json.loads(done.stdout.splitlines()[0])["status"] == "completed"
        worker.stop()
        log = worker.text()
        assert "redis://:**@127.0.0.1" in log, "the banner shows the broker, masked"
        assert not _leaks(log), [line for line in log.splitlines() if PASSWORD in line][:3]
        assert not _leaks(done.stdout) and not _leaks(done.stderr)
        for path in [*_all_files(results), *_all_files(home)]:
            assert not _leaks(path.read_bytes()), path
        client = redis.Redis.from_url(secured_redis)
        for key in client.scan_iter(match=f"{prefix}:*"):
            kind = client.type(key)
            values = {b"string": lambda k: [client.get(k)], b"list": lambda k: client.lrange(k, 0, -1),
                      b"set": lambda k: list(client.smembers(k)), b"hash": lambda k: list(client.hgetall(k).values()),
                      }.get(kind, lambda k: [])(key)
            assert not any(_leaks(v) for v in values if v), key
    finally:
        pool.kill_all()


def _run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_submit_with_broker_down_masks_the_password(scheme: str, tmp_path: Path) -> None:
    """``SubmitFailed`` (message, result document ``details.broker``) and the CLI never show the password."""
    port = _free_port()  # nothing listens there
    url = (f"redis://:{PASSWORD}@127.0.0.1:{port}/0" if scheme == "redis"
           else f"amqp://guest:{PASSWORD}@127.0.0.1:{port}//")
    results = tmp_path / "results"
    env = {"CELERY_BROKER_URL": url, "GUESTKIT_STORE_URL": "file://" + str(tmp_path / "store"),
           "GUESTKIT_HOME": str(tmp_path / "home"), "GUESTKIT_RESULTS_DIR": str(results),
           "GUESTKIT_POOLS": "secret-down"}
    doc = make_job()
    script = (
        "import json, sys\n"
        "from app.intake import api\n"
        "try:\n"
        "    api.submit(json.loads(sys.argv[1]))\n"
        "except api.SubmitFailed as exc:\n"
        "    print('SubmitFailed:', exc, repr(exc), exc.__cause__)\n"
        "else:\n"
        "    print('submitted?!')\n"
    )
    started = time.monotonic()
    done = _run_cli([sys.executable, "-c", script, json.dumps(doc)], env, timeout=90)
    elapsed = time.monotonic() - started
    assert "SubmitFailed:" in done.stdout, done.stdout + done.stderr[-2000:]
    assert elapsed < 30, f"submit with the broker down took {elapsed:.1f} s: it must fail fast"
    assert not _leaks(done.stdout + done.stderr), (done.stdout + done.stderr)[-2000:]
    result = json.loads((results / f"{doc['job_id']}-result.json").read_text())
    assert result["status"] == "failed"
    assert not _leaks(json.dumps(result)), result["error"]
    assert "**" in result["error"]["details"]["broker"], result["error"]["details"]
    # the command line says the same, masked
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(make_job()))
    cli = _run_cli([CELERY, "-A", "app", "submit", str(job_file)], env, timeout=90)
    assert cli.returncode != 0
    assert not _leaks(cli.stdout + cli.stderr), (cli.stdout + cli.stderr)[-2000:]


def test_worker_that_cannot_reach_its_broker_masks_the_password(tmp_path: Path) -> None:
    port = _free_port()
    env = {"CELERY_BROKER_URL": f"amqp://admin:{PASSWORD}@127.0.0.1:{port}//",
           "GUESTKIT_STORE_URL": "file://" + str(tmp_path / "store"), "GUESTKIT_HOME": str(tmp_path / "home"),
           "GUESTKIT_RESULTS_DIR": str(tmp_path / "results"), "GUESTKIT_POOLS": "secret-worker"}
    log = tmp_path / "worker.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([CELERY, "-A", "app", "worker", "-l", "info", "-c", "1", "--without-mingle",
                                 "--without-gossip"], cwd=ROOT, env={**os.environ, **env}, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: b"Cannot connect to" in log.read_bytes(), 60, "the connection error in the log")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
    text = log.read_text(errors="replace")
    assert "amqp://admin:**@127.0.0.1" in text
    assert not _leaks(text), [line for line in text.splitlines() if PASSWORD in line][:3]


def _listening_addresses(pid: int) -> set[str]:
    import psutil

    found: set[str] = set()
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add(conn.laddr.ip)
        except psutil.NoSuchProcess:
            continue
    return found


def _listen_of(args: list[str], cwd: Path, log: Path) -> set[str]:
    with open(log, "wb") as handle:
        # PYTHONPATH: the test handlers (GUESTKIT_EXTRA_HANDLERS) live in the checkout, not in the install
        proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or _listening_addresses(proc.pid), 60, f"{args[3]} to listen")
        assert proc.poll() is None, f"{args[3]} exited:\n{log.read_text()[-3000:]}"
        addresses = _listening_addresses(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait(10)
    assert addresses, log.read_text()[-2000:]
    return addresses


LOOPBACK = {"127.0.0.1", "::1"}


def test_flower_binds_loopback_by_default(tmp_path: Path) -> None:
    pytest.importorskip("flower")
    addresses = _listen_of([CELERY, "-A", "app", "flower", f"--port={_free_port()}"], ROOT, tmp_path / "f.log")
    assert addresses <= LOOPBACK, f"flower listens on {addresses}"


def test_flower_binds_loopback_when_started_outside_the_checkout(tmp_path: Path) -> None:
    pytest.importorskip("flower")
    addresses = _listen_of([CELERY, "-A", "app", "flower", f"--port={_free_port()}"], tmp_path, tmp_path / "f.log")
    assert addresses <= LOOPBACK, f"flower listens on {addresses}"


def test_metrics_endpoint_binds_loopback_by_default(tmp_path: Path) -> None:
    for cwd in (ROOT, tmp_path):
        addresses = _listen_of([CELERY, "-A", "app", "metrics", "--port", "0"], cwd, tmp_path / f"m-{cwd.name}.log")
        assert addresses <= LOOPBACK, f"metrics listens on {addresses} (cwd {cwd})"


def test_readme_states_what_to_protect_when_exposing_flower() -> None:
    readme = (ROOT / "README.md").read_text().lower()
    assert "flower" in readme and "/metrics" in readme
    assert "127.0.0.1" in readme or "loopback" in readme
    assert "authentication" in readme or "protect" in readme
