"""Flood: a backlog of job files renamed into the jobs directory at once, drained by the file-drop
bridge (``celery -A app bridge``), against the Python API submitting the same number of jobs on the same
broker; and one file dropped in the middle of the flood: how long it waits.

    .venv/bin/python -m benchmarks.flood --broker embedded|redis|rabbitmq|all [--quick] [-n N]

The jobs go to a pool no worker serves: what is measured is intake (claim, validate, store, publish),
not execution. "Drained" is the moment no job file is left to claim in the jobs directory (each file
is submitted right after its claim). The late file is dropped right after the flood, named to sort
after it; its wait is from its rename to its claim, beside what the backlog ahead of it (counted when
it was dropped) needed at the bridge's rate. The watching loop costs no more per poll with the backlog.
The API submits half its jobs before the flood and half after, so a machine that gets slower or faster
during the run moves both sides alike; beside the wall-clock rates, each side's CPU seconds (the API's
in this process, the bridge's from /proc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import echo_job, fan_out, header, make_setup, parser, table
from tests.processes import CELERY, ROOT, WorkerProcess


def _left(jobs: Path) -> int:
    with os.scandir(jobs) as entries:
        return sum(1 for e in entries if e.name.endswith(".json") and not e.name.startswith("."))


def _any_left(jobs: Path) -> bool:
    with os.scandir(jobs) as entries:
        return any(e.name.endswith(".json") and not e.name.startswith(".") for e in entries)


def run_api(setup, api, n: int, pool: str, part: str) -> tuple[float, float]:
    """Submit ``n`` jobs; return (seconds, CPU seconds)."""
    docs = [dict(echo_job(setup.tag, f"api-{part}-{i}"), routing={"worker_pool": pool}) for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    for doc in docs:
        api.submit(doc)
    return time.perf_counter() - t0, time.process_time() - c0


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bridge(setup, n: int, pool: str) -> dict[str, float]:
    """The bridge running (and idle) first; then the whole backlog renamed in, then the late file."""
    jobs = setup.jobs_dir
    staging = setup.workspace / "staging"
    staging.mkdir()
    jobs.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (staging / f"flood-{i:07d}.json").write_text(
            json.dumps(dict(echo_job(setup.tag, f"file-{i}"), routing={"worker_pool": pool})))
    late = dict(echo_job(setup.tag, "late"), routing={"worker_pool": pool})
    (staging / "zzz-late.json").write_text(json.dumps(late))
    log = setup.workspace / "bridge.log"
    bridge = Bridge("bridge", log, {**os.environ, **setup.platform_env},
                    [CELERY, "-A", "app", "bridge", "--jobs-dir", str(jobs)]).start()
    try:
        cpu0 = _cpu_seconds(bridge.proc.pid)
        t0 = time.perf_counter()
        for i in range(n):  # all at once, as a big copy would
            name = f"flood-{i:07d}.json"
            os.rename(staging / name, jobs / name)
        renamed = time.perf_counter() - t0
        ahead = _left(jobs)  # counted once: the poll below must not cost in proportion to the backlog
        os.rename(staging / "zzz-late.json", jobs / "zzz-late.json")  # the last by name, the newest by time
        late_at = time.perf_counter()
        late_claimed = None
        while True:
            time.sleep(0.005)
            now = time.perf_counter()
            if late_claimed is None and not (jobs / "zzz-late.json").exists():
                late_claimed = now
            if late_claimed is not None and not _any_left(jobs):
                break
            if bridge.proc is not None and bridge.proc.poll() is not None:
                raise SystemExit(f"the bridge exited:\n{log.read_text()[-3000:]}")
        drained = time.perf_counter() - t0
        cpu = _cpu_seconds(bridge.proc.pid) - cpu0
    finally:
        bridge.kill()
    assert late_claimed is not None
    rate = (n + 1) / drained
    return {"renamed_s": renamed, "drained_s": drained, "rate": rate, "cpu_s": cpu,
            "late_wait_s": late_claimed - late_at, "ahead": ahead, "ahead_s": ahead / rate}


class Bridge(WorkerProcess):
    """``celery -A app bridge``: ready once it says it is watching."""

    def start(self, ready_timeout: float = 60.0) -> Bridge:
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while b"bridge: watching" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the bridge did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.01)
        return self


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="files in the flood (default 100,000; --quick 5,000)")
    args = p.parse_args(argv)
    code = fan_out("benchmarks.flood", args, argv)
    if code is not None:
        return code
    n = args.n or (5000 if args.quick else 100_000)
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    try:
        header("flood", setup, f"{n} job files renamed into the jobs directory at once; the same number "
                               "submitted through the API; jobs routed to a pool nobody serves (intake only)")
        api = setup.platform_api()
        pool = f"nobody-{setup.tag}"
        before = run_api(setup, api, n // 2, pool, "before")
        flood = run_bridge(setup, n, pool)
        after = run_api(setup, api, n - n // 2, pool, "after")
        api_s, api_cpu = before[0] + after[0], before[1] + after[1]
        api_rate = n / api_s
        table([["API submit (half before, half after)", n, "", f"{api_s:.1f}", f"{api_rate:.0f}", "1.00",
                f"{api_cpu:.1f}", "1.00"],
               ["file drop (bridge)", n, f"{flood['renamed_s']:.1f}", f"{flood['drained_s']:.1f}",
                f"{flood['rate']:.0f}", f"{flood['rate'] / api_rate:.2f}", f"{flood['cpu_s']:.1f}",
                f"{api_cpu / flood['cpu_s']:.2f}"]],
              ["side", "jobs", "renames s", "seconds", "jobs/s", "ratio to API", "CPU s", "CPU ratio"])
        print(f"late file (dropped with {flood['ahead']} files ahead, named to sort last): claimed after "
              f"{flood['late_wait_s']:.2f} s; the backlog ahead needed {flood['ahead_s']:.2f} s at the drain rate")
        ratio = flood["rate"] / api_rate
        print(f"RESULT flood {setup.broker}: {n} files drained in {flood['drained_s']:.1f} s, {flood['rate']:.0f} "
              f"files/s against the API's {api_rate:.0f} jobs/s (ratio {ratio:.2f}; target >= 0.8: "
              f"{'MET' if ratio >= 0.8 else 'NOT MET'}); late file waited {flood['late_wait_s']:.2f} s "
              f"for {flood['ahead_s']:.2f} s of backlog ahead", flush=True)
    finally:
        setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
