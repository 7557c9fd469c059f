"""Broker and job-store loss, on PRIVATE servers started here (the shared Redis and RabbitMQ are never
bounced): submit fails fast and clearly while the broker is down, jobs queued before the outage survive
it, workers reconnect when it returns, the bridge keeps dropped files; the same for the Redis job store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import PrivateRabbit, PrivateRedis
from tests.conftest import CELERY, ROOT, SESSION_DIR, WorkerPool, make_job, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _need(binary: str) -> None:
    if not shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        if os.environ.get("CI") or os.environ.get("GUESTKIT_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{binary} is needed here")
        pytest.skip(f"{binary} is not installed")


class Outage:
    """A private broker (or store) server that the test can take down and bring back."""

    def __init__(self, kind: str) -> None:
        self.workspace = Path(tempfile.mkdtemp(prefix=f"guestkit-outage-{kind}-"))
        self.kind = kind
        self.server: PrivateRedis | PrivateRabbit = PrivateRedis(self.workspace) if kind == "redis" \
            else PrivateRabbit(self.workspace)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        if isinstance(self.server, PrivateRabbit) and self.server.started:
            self.server._ctl("start_app")
        else:
            self.server.start()

    def stop(self) -> None:
        if isinstance(self.server, PrivateRedis):
            subprocess.run(["redis-cli", "-p", str(self.server.port), "shutdown"], capture_output=True, timeout=30)
            assert self.server.proc is not None
            self.server.proc.wait(30)
        else:
            self.server._ctl("stop_app")

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.workspace, ignore_errors=True)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Outage]:
    _need("redis-server" if request.param == "redis" else "rabbitmq-server")
    outage = Outage(request.param)
    outage.start()
    yield outage
    outage.close()


def _env(tmp: Path, broker_url: str, store_url: str | None = None, pool: str | None = None) -> dict[str, str]:
    return {"CELERY_BROKER_URL": broker_url,
            "GUESTKIT_STORE_URL": store_url or "file://" + str(tmp / "store"),
            "GUESTKIT_HOME": str(tmp / "home"), "GUESTKIT_RESULTS_DIR": str(tmp / "results"),
            "GUESTKIT_JOBS_DIR": str(tmp / "jobs"), "GUESTKIT_POOLS": pool or f"outage-{uuid.uuid4().hex[:6]}",
            "GUESTKIT_VISIBILITY_TIMEOUT": "30", "GUESTKIT_CAPABILITY_WAIT": "600"}


API = """
import json, sys, time
from app.intake import api
out = {}
doc = json.loads(sys.argv[1])
started = time.monotonic()
try:
    handle = api.submit(doc)
    out["submitted"] = True
    if sys.argv[2] == "wait":
        out["result"] = handle.result(timeout=float(sys.argv[3]))
except Exception as exc:
    out["error"] = type(exc).__name__
    out["message"] = str(exc)
out["seconds"] = time.monotonic() - started
status = None
try:
    status = api.status(doc["job_id"])
except Exception as exc:
    out["status_error"] = f"{type(exc).__name__}: {exc}"
out["status"] = status.model_dump(mode="json") if status else None
print(json.dumps(out))
"""


def api_call(env: dict[str, str], doc: dict[str, Any], wait: float | None = None) -> dict[str, Any]:
    """Submit (and wait) in a fresh process configured by ``env``: this process's app is bound to the
    session's broker."""
    done = subprocess.run([sys.executable, "-c", API, json.dumps(doc), "wait" if wait else "no", str(wait or 0)],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=(wait or 0) + 90)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_broker_outage_submit_fails_fast_nothing_queued_is_lost_workers_reconnect(broker: Outage,
                                                                                   tmp_path: Path) -> None:
    env = _env(tmp_path, broker.url)
    pool = WorkerPool(tmp_path)
    try:
        worker = pool(concurrency=1, env=env)
        assert api_call(env, make_job(), wait=30)["result"]["status"] == "completed"
        # queued before the outage, for a pool nobody serves yet: must survive the broker restart
        early_pool = f"later-{uuid.uuid4().hex[:6]}"
        early = dict(make_job(data={"early": True}), routing={"worker_pool": early_pool})
        assert api_call(env, early)["status"]["state"] == "queued"
        broker.stop()
        down = api_call(env, make_job())
        assert down.get("error") == "SubmitFailed", down
        assert down["seconds"] < 15, f"submit took {down['seconds']:.1f} s with the broker down"
        assert "could not queue the job" in down["message"]
        assert down["status"]["state"] == "failed"
        assert "could not queue the job" in down["status"]["error"]["message"]
        time.sleep(2)
        broker.start()
        after = api_call(env, make_job(), wait=60)
        assert after["result"]["status"] == "completed", after
        assert worker.proc is not None and worker.proc.poll() is None, "the worker survived the outage"
        pool(concurrency=1, env={**env, "GUESTKIT_POOLS": early_pool})
        done = api_call(env, dict(make_job(), routing={"worker_pool": early_pool}), wait=60)
        assert done["result"]["status"] == "completed"
        results = Path(env["GUESTKIT_RESULTS_DIR"])
        wait_for(lambda: (results / f"{early['job_id']}-result.json").exists(), 30, "the early job's result")
        assert json.loads((results / f"{early['job_id']}-result.json").read_text())["status"] == "completed"
    finally:
        pool.kill_all()


def test_bridge_keeps_files_while_the_broker_is_down(tmp_path: Path) -> None:
    _need("redis-server")
    outage = Outage("redis")
    outage.start()
    env = _env(tmp_path, outage.url)
    jobs = Path(env["GUESTKIT_JOBS_DIR"])
    jobs.mkdir(parents=True)
    pool = WorkerPool(tmp_path)
    bridge_log = tmp_path / "bridge.log"
    bridge = None
    try:
        pool(concurrency=1, env=env)
        with open(bridge_log, "wb") as handle:
            bridge = subprocess.Popen([CELERY, "-A", "app", "bridge", "--interval", "0.05"], cwd=ROOT,
                                      env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        wait_for(lambda: b"bridge: watching" in bridge_log.read_bytes(), 30, "the bridge")
        outage.stop()
        doc = make_job()
        (jobs / ".drop.tmp").write_text(json.dumps(doc))
        os.rename(jobs / ".drop.tmp", jobs / "drop.json")
        wait_for(lambda: b"drop.json stays in place until the broker is back" in bridge_log.read_bytes(), 30,
                 "the bridge to find the broker gone")
        assert not (jobs / "failed" / "drop.json").exists(), (jobs / "failed" / "drop.json.reason.txt").read_text()
        outage.start()
        wait_for(lambda: (jobs / "done" / "drop.json").exists(), 60, "the file to reach done/")
    finally:
        if bridge is not None:
            os.killpg(bridge.pid, 9)
            bridge.wait(10)
        pool.kill_all()
        outage.close()


@pytest.fixture
def redis_store() -> Iterator[Outage]:
    _need("redis-server")
    outage = Outage("redis")
    outage.start()
    yield outage
    outage.close()


def test_store_outage_submit_fails_fast_and_clearly(redis_store: Outage, tmp_path: Path) -> None:
    env = _env(tmp_path, "embedded://" + str(tmp_path / "broker"), f"{redis_store.url}?prefix=outage")
    assert api_call(env, make_job())["status"]["state"] == "queued"
    redis_store.stop()
    down = api_call(env, make_job())
    assert "error" in down, down
    assert down["seconds"] < 15, f"submit took {down['seconds']:.1f} s with the store down"
    assert "connect" in down["message"].lower() or "store" in down["message"].lower(), down
    redis_store.start()
    assert api_call(env, make_job())["status"]["state"] == "queued"


def test_store_outage_during_a_job_loses_nothing(redis_store: Outage, tmp_path: Path) -> None:
    scratch = SESSION_DIR / "outage" / tmp_path.name
    scratch.mkdir(parents=True)
    env = _env(tmp_path, "embedded://" + str(tmp_path / "broker"), f"{redis_store.url}?prefix=outage")
    pool = WorkerPool(tmp_path)
    try:
        worker = pool(concurrency=1, env=env)
        started = scratch / "started"
        doc = make_job("test.sleep", {"seconds": 3, "started_file": str(started)}, max_attempts=2)
        assert api_call(env, doc)["submitted"]
        wait_for(started.exists, 30, "the job to start")
        redis_store.stop()
        time.sleep(5)  # the job ends while the store is away
        redis_store.start()
        results = Path(env["GUESTKIT_RESULTS_DIR"])
        wait_for(lambda: (results / f"{doc['job_id']}-result.json").exists(), 60, "a result for the job")
        import redis

        client = redis.Redis.from_url(redis_store.url)
        status = json.loads(client.get(f"outage:job:{doc['job_id']}"))
        assert status["state"] in ("completed", "failed"), status["state"]
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        pool.kill_all()
