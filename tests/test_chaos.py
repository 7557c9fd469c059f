"""The chaos test's short version (``python -m tests.chaos --quick``): 100 jobs of mixed operations
through the API and the file drop while worker processes are SIGKILLed and restarted, the broker is
restarted once and the bridge is SIGKILLed once; every invariant must hold. Each broker gets a private
server of its own (never the shared ones), so this runs in the default suite, not per ``--broker``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import skip_or_fail
from tests.conftest import ROOT

SERVER = {"redis": "redis-server", "rabbitmq": "rabbitmq-server"}


def _available(broker: str) -> None:
    binary = SERVER.get(broker)
    if binary and not shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        skip_or_fail(f"{binary} is not installed: the chaos test on {broker} needs it")


def _explain(report: dict) -> str:
    """A broken invariant, compactly (CI shows the end of a failure): the run's seed and length, each
    violation, and what each job named left behind."""
    lines = [f"seed {report.get('seed')}, {report['elapsed_seconds']} s, final states {report['final_states']}",
             f"workspace kept (worker logs, broker folder): {report.get('workspace')}"]
    lines += [f"{name}: {example}" for name, v in report["invariants"].items() for example in v["examples"]]
    for job_id, dossier in report["dossiers"].items():
        lines.append(f"{job_id}:")
        lines += [f"  {key}: {value}" for key, value in dossier.items() if key != "worker_processes"]
    lines.append(f"events: {report['events'][-12:]}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("broker", ["embedded", "rabbitmq", "redis"])
def test_chaos_quick(broker: str, tmp_path: Path) -> None:
    _available(broker)
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTKIT_", "CELERY_"))}
    done = subprocess.run([sys.executable, "-m", "tests.chaos", "--broker", broker, "--quick",
                           "--duration-limit", "300", "--stall-seconds", "60", "--json", str(report_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    print(done.stdout[-6000:])
    print(done.stderr[-6000:])  # a driver thread that died (a report of 0 jobs) says why here
    assert report_path.exists(), f"no report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    assert report["ok"], _explain(report)
    assert done.returncode == 0
    assert report["jobs"] == 100
    assert sum(report["final_states"].values()) == 100
    assert sum(report["kills"].values()) >= 2, report["kills"]
    assert report["bridge_restarts"] == 1
    assert report["submitted"].get("dropped", 0) > 0


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_broken_invariant_comes_with_what_the_job_left(tmp_path: Path) -> None:
    """The diagnostics a real violation needs: a job whose result file is removed on purpose is
    reported with its store history, progress, result file, dropped file and broker messages."""
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTKIT_", "CELERY_"))}
    done = subprocess.run([sys.executable, "-m", "tests.chaos", "--broker", "embedded", "--quick", "--sabotage",
                           "--duration-limit", "300", "--stall-seconds", "60", "--json", str(report_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 1, done.stdout[-3000:]
    report = json.loads(report_path.read_text())
    victim = re.search(r"sabotage: removed the result file of (\S+)", done.stdout + done.stderr)
    assert victim, done.stdout[-3000:]
    job_id = victim.group(1)
    examples = [e for v in report["invariants"].values() for e in v["examples"]]
    # anything beside the sabotaged job is a real violation (issue 27): the run's report says what it left
    assert len(examples) == 1 and job_id in examples[0] and "no result file" in examples[0], _explain(report)
    assert list(report["dossiers"]) == [job_id]
    dossier = report["dossiers"][job_id]
    assert dossier["state"] == "completed" and dossier["result_file"] is False
    assert any("completed" in line for line in dossier["history"]) and dossier["broker_messages"] == []
    assert dossier["run_lease"] == "free" and dossier["worker_processes"]  # checked while the workers run
    assert "what the jobs named above left behind" in done.stdout


# --- deterministic versions of what chaos can hit by chance ------------------------------------
@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(120)
def test_duplicate_delivery_of_a_running_job_does_not_run_it_twice(start_worker, pool_name: str,
                                                                   tmp_path: Path) -> None:
    """A second delivery while the first still runs (a Redis visibility timeout, a republish) must wait
    for the run lease, not be taken for a dead worker (it was: BUG-10, found here, fixed by the run lease)."""
    from app.intake import api
    from app.protocol.validation import validate
    from tests.conftest import SESSION_DIR, make_job, routed, wait_for

    scratch = SESSION_DIR / "dup" / tmp_path.name
    scratch.mkdir(parents=True)
    runs = scratch / "runs"
    worker = start_worker(concurrency=2, env={"GUESTKIT_POOLS": pool_name})
    doc = routed(make_job("test.count", {"runs_file": str(runs), "seconds": 3}, max_attempts=3), pool_name)
    handle = api.submit(doc)
    wait_for(runs.exists, 30, "the job to start")
    api.publish(validate(doc))  # the broker hands the same message out again while it runs
    result = handle.result(timeout=60)
    # the duplicate waited for the run lease, came back once the job had ended, and was dropped
    wait_for(lambda: f"[{doc['job_id']}] ignored" in worker.text(), 30, "the duplicate delivery to be dropped")
    executions = runs.read_text().split("\n")
    assert result["status"] == "completed"
    assert len([line for line in executions if line]) == 1, executions


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_a_running_job_whose_run_died_and_whose_message_is_gone_is_run_again(start_worker, pool_name: str,
                                                                             tmp_path: Path) -> None:
    """What chaos found (issue 27): a job left running by a pool child killed as it started, whose
    message the prefork pool then kept reserved and never ran nor acknowledged. Nothing would ever
    move it on: the requeue duty now publishes it again once no live process holds its run lease."""
    from app.intake.api import JobHandle
    from app.protocol.states import JobState, JobStatus
    from app.protocol.validation import validate
    from app.store.factory import open_store
    from tests.conftest import make_job, routed

    job = validate(routed(make_job("system.echo", {"message": "again"}, max_attempts=2), pool_name))
    gone = "gone-worker@host"
    status = (JobStatus(job_id=job.job_id, operation=job.operation, max_attempts=2)
              .advance(JobState.QUEUED).advance(JobState.ASSIGNED, worker_id=gone)
              .advance(JobState.RUNNING, worker_id=gone))
    assert open_store(os.environ["GUESTKIT_STORE_URL"]).create(status, job.to_dict())  # and no message anywhere
    start_worker(concurrency=1, env={"GUESTKIT_POOLS": pool_name})
    result = JobHandle(job.job_id).result(timeout=60)
    assert result["status"] == "completed", result
    history = [(h.state.value, h.reason or "") for h in JobHandle(job.job_id).status().history]
    assert any("worker lost" in reason for _, reason in history), history


DIE_BEFORE_PUBLISH = """
import os, sys
from pathlib import Path
import app.celery
import app.intake.submission
from app.intake.bridge import Bridge, BridgeConfig

def die(*args, **kwargs):  # the bridge process dies after the job is stored as queued, before the broker has it
    os._exit(137)

app.intake.submission.publish = die
bridge = Bridge(BridgeConfig(jobs_dir=Path(sys.argv[1]), settle=0.0))
while True:
    bridge.tick()
"""


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_bridge_dying_between_store_and_broker_loses_nothing(request: pytest.FixtureRequest, start_worker,
                                                             pool_name: str, tmp_path: Path) -> None:
    from tests.conftest import CELERY, make_job, routed, wait_for

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    doc = routed(make_job(), pool_name)
    (jobs / ".a.tmp").write_text(json.dumps(doc))
    os.rename(jobs / ".a.tmp", jobs / "a.json")
    died = subprocess.run([sys.executable, "-c", DIE_BEFORE_PUBLISH, str(jobs)], cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    assert died.returncode == 137, died.stderr[-2000:]
    from app.intake import api

    assert api.status(doc["job_id"]).state.value == "queued"
    start_worker(concurrency=1, env={"GUESTKIT_POOLS": pool_name})
    log = tmp_path / "bridge.log"
    with open(log, "wb") as handle:
        bridge = subprocess.Popen([CELERY, "-A", "app", "bridge", "--jobs-dir", str(jobs), "--interval", "0.05"],
                                  cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: (jobs / "done" / "a.json").exists() or (jobs / "failed" / "a.json").exists(), 40,
                 "the adopted file to be finished")
        assert (jobs / "done" / "a.json").exists(), log.read_text()[-2000:]
    finally:
        os.killpg(bridge.pid, 9)
        bridge.wait(10)
