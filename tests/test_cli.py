"""The command line as a user types it: ``celery -A app <command>`` in a real process, against a
real worker; plain text, ``--json`` and exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CELERY, ROOT, SEED_JOB, WorkerProcess, make_job, wait_for


def celery(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CELERY, "-A", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ)


def job_state(job_id: str) -> str | None:
    from app.intake.api import status

    current = status(job_id)
    return current.state.value if current else None


def write(folder: Path, doc: dict[str, Any], name: str | None = None) -> Path:
    path = folder / (name or f"{doc['job_id']}.json")
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def cli_worker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One worker for the whole module: every command here talks to it."""
    log_dir = tmp_path_factory.mktemp("cli-worker")
    args = [CELERY, "-A", "app", "worker", "-l", "info", "-c", "2", "-n", "cli@%h", "--without-mingle",
            "--without-gossip"]
    proc = WorkerProcess("cli", log_dir / "worker.log", {**os.environ}, args).start()
    yield proc
    proc.kill()


def test_submit_wait_shows_progress_and_result(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    doc = make_job(data={"message": "hello"})
    run = celery("submit", "--wait", str(write(tmp_path, doc)))
    assert run.returncode == 0, run.stderr
    assert f"{doc['job_id']}: completed in" in run.stdout
    progress = [line for line in run.stderr.splitlines() if line.startswith(doc["job_id"])]
    assert [line.split()[1] for line in progress] == ["0%", "50%", "100%"]  # the echo handler's events
    assert "result_generation" in run.stderr


def test_submit_json_and_failure_exit_code(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    good, boom = make_job(), make_job("test.boom", {"seconds": 0})
    run = celery("submit", "--wait", "--json", str(write(tmp_path, good)), str(write(tmp_path, boom)))
    assert run.returncode == 1, "a failed job gives a non-zero exit"
    outcomes = json.loads(run.stdout)
    assert [(o["job_id"], o["state"]) for o in outcomes] == [(good["job_id"], "completed"), (boom["job_id"], "failed")]
    assert outcomes[1]["result"]["error"]["code"] == "EXECUTION_ERROR"
    assert outcomes[0]["result"]["data"] == good["payload"]["data"]


@pytest.mark.slow
def test_submit_without_wait_then_status_result_jobs(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    doc = make_job()
    run = celery("submit", "--json", str(write(tmp_path, doc)))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["job_id"] == doc["job_id"]
    wait_for(lambda: job_state(doc["job_id"]) == "completed", 20, "the job to complete")

    status = celery("status", doc["job_id"])
    assert status.returncode == 0 and "state:      completed" in status.stdout and "running" in status.stdout
    as_json = json.loads(celery("status", doc["job_id"], "--json").stdout)
    assert as_json["state"] == "completed" and [h["state"] for h in as_json["history"]][-1] == "completed"

    result = celery("result", doc["job_id"], "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "completed"
    assert "completed in" in celery("result", doc["job_id"]).stdout

    table = celery("jobs", "--state", "completed")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["JOB_ID", "STATE", "OPERATION", "ATTEMPT", "UPDATED"]
    assert any(row.split()[:3] == [doc["job_id"], "completed", "system.echo"] for row in rows)
    listed = json.loads(celery("jobs", "--json", "--state", "completed").stdout)
    assert doc["job_id"] in {j["job_id"] for j in listed} and {j["state"] for j in listed} == {"completed"}


@pytest.mark.slow
def test_unknown_job_and_bad_input_go_to_stderr_with_exit_codes(tmp_path: Path) -> None:
    for command in ("status", "result", "cancel"):
        run = celery(command, "no-such-job-here")
        assert run.returncode == 3, (command, run.stderr)
        assert run.stdout == "" and "no job no-such-job-here" in run.stderr
    bad = make_job(priority=11)
    run = celery("submit", str(write(tmp_path, bad)))
    assert run.returncode == 2 and "execution.priority" in run.stderr and run.stdout == ""
    run = celery("jobs", "--state", "sideways")
    assert run.returncode == 2 and "sideways" in run.stderr


def test_submit_wait_timeout(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    doc = make_job("test.sleep", {"seconds": 30})
    run = celery("submit", "--wait", "--timeout", "0.5", str(write(tmp_path, doc)))
    assert run.returncode == 4 and "has not ended after 0.5 s" in run.stderr
    assert celery("cancel", doc["job_id"]).returncode == 0


@pytest.mark.slow
def test_cancel_running_job(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    started = tmp_path / "started"
    doc = make_job("test.sleep", {"seconds": 30, "started_file": str(started)})
    assert celery("submit", str(write(tmp_path, doc))).returncode == 0
    wait_for(started.exists, 20, "the job to start")
    run = celery("cancel", doc["job_id"], "--json")
    assert run.returncode == 0, run.stderr
    wait_for(lambda: job_state(doc["job_id"]) == "cancelled", 20, "the job to be cancelled")
    assert celery("result", doc["job_id"]).returncode == 1  # did not complete
    again = celery("cancel", doc["job_id"])
    assert again.returncode == 1 and "already ended" in again.stderr


@pytest.mark.slow
def test_validate_and_schema(tmp_path: Path) -> None:
    bad = make_job(priority=11)
    bad["job_id"] = "x"
    (tmp_path / "broken.json").write_text("{nope")
    run = celery("validate", str(SEED_JOB), str(write(tmp_path, bad, "bad.json")), str(tmp_path / "broken.json"))
    assert run.returncode == 1
    assert f"{SEED_JOB}: ok (job test-echo-001, system.echo)" in run.stdout
    assert "bad.json: invalid (VALIDATION_ERROR)" in run.stdout
    assert "  execution.priority:" in run.stdout and "  job_id:" in run.stdout
    assert "invalid JSON at line 1 column 2" in run.stdout
    reports = json.loads(celery("validate", "--json", str(tmp_path / "bad.json")).stdout)
    assert reports[0]["valid"] is False and any(p.startswith("job_id:") for p in reports[0]["problems"])
    assert celery("validate", str(SEED_JOB)).returncode == 0

    schema = celery("schema")
    assert schema.returncode == 0
    parsed = json.loads(schema.stdout)
    assert "job_id" in parsed["properties"] and "payload" in parsed["required"]


def test_status_without_job_id_is_still_celerys(cli_worker: WorkerProcess) -> None:
    run = celery("status")
    assert run.returncode == 0 and "cli@" in run.stdout and "online" in run.stdout


def test_progress_bar_on_a_terminal(cli_worker: WorkerProcess, tmp_path: Path) -> None:
    doc = make_job("test.sleep", {"seconds": 0.3})
    path = write(tmp_path, doc)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([CELERY, "-A", "app", "submit", "--wait", str(path)], cwd=ROOT, env=os.environ,
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(30) == 0
    text = shown.decode()
    assert f"\r\x1b[K{doc['job_id']} [" in text and "] 100% cleanup: woke up" in text
    assert "#" * 30 in text



@pytest.mark.slow
def test_workers_lists_live_workers_as_a_table_and_json(shared_worker) -> None:
    import json as json_module
    import subprocess as sp

    from tests.conftest import CELERY, ROOT, wait_for

    def listed() -> str | None:
        out = sp.run([CELERY, "-A", "app", "workers"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        return out.stdout if shared_worker.name in out.stdout else None

    table = wait_for(listed, timeout=30, what="the worker in `celery -A app workers`")
    assert table.splitlines()[0].split()[:3] == ["WORKER", "POOLS", "JOBS"]
    out = sp.run([CELERY, "-A", "app", "workers", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    adverts = json_module.loads(out.stdout)
    mine = next(a for a in adverts if a["worker_id"].startswith(shared_worker.name))
    assert "system.echo" in mine["capabilities"]["operations"]
