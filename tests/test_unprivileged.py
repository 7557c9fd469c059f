"""Nothing the worker does needs root: a real worker, and the client that submits to it, run as an
unprivileged user the test creates (``useradd``; ``setpriv`` drops to it) through inspect, fix and
convert, with only the directories README's "Running without root" names owned by that user. And a
worker started as root says at start-up that it need not be."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import skip_or_fail
from tests.conftest import CELERY, ROOT, WorkerPool, make_job, wait_for
from tests.imagebuild import sample_guest
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow

SUBMIT = """
import json, sys
from app.intake import api
print(json.dumps(api.submit(json.loads(sys.argv[1])).result(timeout=120)))
"""


@pytest.fixture(scope="module")
def user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        skip_or_fail("creating a user and dropping to it needs root (CI runs as root)")
    name = f"gk{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True,
                   env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})
    yield pwd.getpwnam(name)
    subprocess.run(["userdel", name], check=False, capture_output=True,
                   env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})


def _venv_usable_by(user: pwd.struct_passwd) -> None:
    """The venv's interpreter must run as the user: one made from a Python under /root cannot."""
    probe = subprocess.run(_as(user, sys.executable, "-c", "import app.celery"), cwd=ROOT, capture_output=True,
                           text=True, check=False, env={**os.environ, "HOME": "/"})
    if probe.returncode == 0:
        return
    reason = (f"{sys.executable} cannot run as an unprivileged user (a venv made from a Python other users "
              f"cannot read, such as one under /root; ./guestkit.sh makes it from /usr/bin/python3): "
              f"{probe.stderr.strip().splitlines()[-1:]}")
    skip_or_fail(reason)


@pytest.fixture(scope="module")
def place(user: pwd.struct_passwd) -> Iterator[Path]:
    """The user's directories: GUESTKIT_HOME (broker, store, work), results, jobs, and images."""
    _venv_usable_by(user)
    base = Path(tempfile.mkdtemp(prefix="guestkit-unprivileged-", dir="/var/tmp"))
    base.chmod(0o755)
    sample_guest(base / "images", "guest.qcow2")
    for sub in ("home", "results", "jobs"):
        (base / sub).mkdir()
    for path in [base, *base.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _env(place: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTKIT_", "CELERY_"))}
    return {**keep, "HOME": str(place), "CELERY_BROKER_URL": f"embedded://{place}/home/broker",
            "GUESTKIT_HOME": str(place / "home"), "GUESTKIT_STORE_URL": f"file://{place}/home/store",
            "GUESTKIT_RESULTS_DIR": str(place / "results"), "GUESTKIT_JOBS_DIR": str(place / "jobs"),
            "GUESTKIT_ALLOWED_DIRS": str(place / "images"), "GUESTKIT_POOLS": "unprivileged"}


def _as(user: pwd.struct_passwd, *args: str) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", *args]


@pytest.fixture(scope="module")
def worker(user: pwd.struct_passwd, place: Path) -> Iterator[WorkerProcess]:
    args = _as(user, CELERY, "-A", "app", "worker", "-l", "info", "-c", "1", "-n", "unprivileged@%h",
               "--without-mingle", "--without-gossip")
    process = WorkerProcess("unprivileged", place / "worker.log", _env(place), args).start()
    yield process
    process.kill()


def _run(user: pwd.struct_passwd, place: Path, operation: str, data: dict[str, Any]) -> dict[str, Any]:
    doc = make_job(operation, data)
    done = subprocess.run(_as(user, sys.executable, "-c", SUBMIT, json.dumps(doc)), cwd=ROOT, env=_env(place),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_worker_run_as_an_unprivileged_user_inspects_fixes_and_converts(
        user: pwd.struct_passwd, place: Path, worker: WorkerProcess) -> None:
    image = place / "images" / "guest.qcow2"
    inspected = _run(user, place, "guestkit.inspect", {"image": {"path": str(image)}})
    assert inspected["status"] == "completed", inspected
    assert inspected["data"]["os"]["hostname"] == "testvm"
    fixed = place / "images" / "fixed.qcow2"
    result = _run(user, place, "guestkit.fix", {
        "image": {"path": str(image), "format": "qcow2"},
        "operations": [{"type": "set_hostname", "options": {"hostname": "renamed"}}],
        "output": {"fixed_image": str(fixed)}})
    assert result["status"] == "completed", result
    converted = place / "images" / "fixed.raw"
    result = _run(user, place, "guestkit.convert", {"source": {"path": str(fixed), "format": "qcow2"},
                                                    "target": {"path": str(converted), "format": "raw"}})
    assert result["status"] == "completed", result
    again = _run(user, place, "guestkit.inspect", {"image": {"path": str(converted), "format": "raw"}})
    assert again["data"]["os"]["hostname"] == "renamed"
    for output in (fixed, converted, place / "results" / f"{again['job_id']}-result.json"):
        assert output.stat().st_uid == user.pw_uid  # written by the user, nothing by root
    processes = [worker.pid, *worker.children()]
    uids = {int(line.split()[1]) for pid in processes
            for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")}
    assert uids == {user.pw_uid}
    assert "running as root" not in worker.text()


def test_a_worker_started_as_root_says_it_need_not_be(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        skip_or_fail("only a worker run as root warns (CI runs as root)")
    worker = WorkerPool(tmp_path)(concurrency=1)
    try:
        wait_for(lambda: "running as root, which nothing guestkit-worker does needs" in worker.text(), 20,
                 "the warning")
    finally:
        worker.kill()
    assert "README: Running without root" in worker.text()
