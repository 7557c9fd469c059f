"""Where the platform's per-job time goes: py-spy on the worker (main process and prefork children)
and on the submitting process, while N ``system.echo`` jobs run through the Python API.

    .venv/bin/python -m benchmarks.profile_job --broker embedded|redis|rabbitmq [--quick] [-n N] [--cprofile]

Prints, per side, the time per job spent inside each function of interest (inclusive), and the
hottest functions by own time. Needs py-spy (``pip install py-spy``) and ptrace rights.

py-spy counts a process as busy when it is runnable, so on a saturated machine waiting for a CPU
shows up as work, mostly where a reply has just arrived (socket reads). ``--cprofile`` profiles the
worker's processes with cProfile on the CPU clock instead (``benchmarks/cprofile_app.py``): exact
call counts, nothing waited counted; every Python call is slower under it, so read the shares.
"""

from __future__ import annotations

import collections
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import echo_job, header, make_setup, parser

RATE = 500
#: (label, regex on a py-spy frame "function (file:line)" or a pyinstrument frame)
INTEREST = [
    ("JobTask.run (the whole job, our code)", r"JobTask\.run \(.*app/adapter\.py"),
    ("  validate() in the worker", r"^validate \(.*app/validation\.py"),
    ("  store.open_run (lease, status, start: 1 round trip)", r"\.open_run \(.*app/store/"),
    ("  store.update (state changes off the short path)", r"\.update \(.*app/store/"),
    ("  store.claim_key", r"\.claim_key \(.*app/store/"),
    ("  store.end_run (end state, progress, lease release)", r"\.end_run \(.*app/store/"),
    ("  JobContext.__init__", r"JobContext\.__init__ \(.*app/context\.py"),
    ("  cancel_watch", r"^cancel_watch \(.*app/interrupts\.py"),
    ("  report_progress (3 per echo job)", r"\.report_progress \(.*app/context\.py"),
    ("    store.append_progress", r"\.append_progress \(.*app/store/"),
    ("    logging", r"(Logger|LoggerAdapter)\.info \(.*logging/__init__\.py"),
    ("    ProgressEvent model", r"ProgressEvent|BaseModel\.model_dump \("),
    ("  save_final (result file + terminal state)", r"\.save_final \(.*app/backend\.py"),
    ("  success_result / ResultDocument", r"^success_result \(.*app/results\.py"),
    ("  _metrics / _usage (getrusage)", r"^(_metrics|_usage) \(.*app/adapter\.py"),
    ("  write_atomic (the result file)", r"^write_atomic \(.*app/atomic\.py"),
    ("  JobStatus JSON parse (model_validate_json)", r"model_validate_json \("),
    ("  JobStatus JSON dump (model_dump_json)", r"model_dump_json \("),
    ("Celery trace_task around it (incl. ours)", r"trace_task \(.*celery/app/trace\.py"),
    ("Celery task-received/succeeded log lines", r"^info \(.*celery/app/trace\.py|Request\.on_accepted|log_"),
    ("Celery worker events (EventDispatcher.send)", r"EventDispatcher\.send \("),
]
SUBMIT = [
    ("submit() (API, whole)", r"^submit \(.*app/api\.py"),
    ("  validate()", r"^validate \(.*app/validation\.py"),
    ("  store.admit (status, document, key claim)", r"\.(admit|_admit_job|create|claim_key) \(.*app/store/"),
    ("  store.workers (constraint matching)", r"\.workers \(.*app/store/"),
    ("  publish (Celery send_task)", r"^publish \(.*app/api\.py"),
    ("    kombu Channel._put", r"Channel\._put \("),
    ("  JobStatus JSON parse/dump", r"model_(validate|dump)_json \("),
]


def collapse(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def inclusive(stacks: list[tuple[list[str], int]], pattern: str, within: str | None = None) -> int:
    rx = re.compile(pattern)
    wx = re.compile(within) if within else None
    total = 0
    for frames, count in stacks:
        start = 0
        if wx is not None:
            hits = [i for i, f in enumerate(frames) if wx.search(f)]
            if not hits:
                continue
            start = hits[0]
        if any(rx.search(f) for f in frames[start:]):
            total += count
    return total


def own(stacks: list[tuple[list[str], int]], top: int = 20) -> list[tuple[str, int]]:
    tally: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        tally[frames[-1]] += count
    return tally.most_common(top)


def report(title: str, stacks, n: int, rate: int, rows: list[tuple[str, str]]) -> None:
    total = sum(c for _, c in stacks)
    print(f"\n## {title}: {total} samples at {rate}/s = {total / rate:.2f} s CPU-active, "
          f"{1000 * total / rate / n:.2f} ms per job")
    for label, pattern in rows:
        count = inclusive(stacks, pattern)
        print(f"  {label:<52} {1000 * count / rate / n:7.3f} ms/job  {100 * count / max(total, 1):5.1f} %")
    print("  hottest own-time frames:")
    for frame, count in own(stacks):
        print(f"    {1000 * count / rate / n:7.3f} ms/job  {frame[:150]}")


def spy(pyspy: str, pid: int, out: Path, children: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen([pyspy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                             "--output", str(out), "--nonblocking", *(["--subprocesses"] if children else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err.decode(errors="replace")[-800:]


def run_cprofile(setup, api, n: int) -> None:
    """cProfile on the CPU clock in the worker's processes (``benchmarks/cprofile_app.py``): exact call
    counts, and no waiting counted as work; every Python call costs more under it, so read the shares."""
    out = setup.workspace / "cprofile"
    worker = setup.platform_worker(env={"BENCH_CPROFILE_DIR": str(out)}, app_module="benchmarks.cprofile_app")
    handles = [api.submit(echo_job(setup.tag, i)) for i in range(n)]
    setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in handles], 600)
    worker.stop()  # each process writes its profile as it ends
    for role, title in (("child", "prefork children"), ("main", "worker main process")):
        files = sorted(str(f) for f in out.glob(f"{role}-*.pstats"))
        if not files:
            print(f"\n## {title}: no profile written")
            continue
        stats = pstats.Stats(*files)
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"\n## {title} (cProfile, CPU clock, {len(files)} process(es)): {1000 * total / n:.2f} ms per job "
              "under the profiler")
        rows = [(ct, tt, nc, f"{name} ({Path(file).name}:{line})")
                for (file, line, name), (_, nc, tt, ct, _) in stats.stats.items()]  # type: ignore[attr-defined]
        for label, key in (("inclusive", 0), ("own time", 1)):
            print(f"  by {label}: µs per job, share of the process, calls per job")
            for row in sorted(rows, key=lambda r: r[key], reverse=True)[:18]:
                share = 100 * row[key] / total
                print(f"    {1e6 * row[key] / n:8.1f}  {share:5.1f} %  {row[2] / n:6.2f}  {row[3][:110]}")


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="jobs (default 2,000; --quick 200)")
    p.add_argument("--cprofile", action="store_true",
                   help="cProfile on the CPU clock in the worker's processes instead of py-spy")
    args = p.parse_args(argv)
    if args.broker == "all":
        raise SystemExit("profile one broker at a time")
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    n = args.n or (200 if args.quick else 2000)
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    try:
        header("profile of the per-job path", setup, f"{n} system.echo jobs")
        api = setup.platform_api()
        if args.cprofile:
            run_cprofile(setup, api, n)
            return 0
        worker = setup.platform_worker()
        warm = [api.submit(echo_job(setup.tag, f"w{i}")) for i in range(30)]
        setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in warm], 60)
        worker_raw, driver_raw = setup.workspace / "worker.pyspy.txt", setup.workspace / "submit.pyspy.txt"
        spies = [spy(pyspy, worker.pid, worker_raw, True), spy(pyspy, os.getpid(), driver_raw, False)]
        time.sleep(1.5)
        docs = [echo_job(setup.tag, i) for i in range(n)]
        t0 = time.perf_counter()
        handles = [api.submit(doc) for doc in docs]
        sent = time.perf_counter()
        end = setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in handles], 600)
        errors = [stop(s) for s in spies]
        print(f"submitted {n} in {sent - t0:.2f} s ({1000 * (sent - t0) / n:.2f} ms per submit), "
              f"all results after {end - t0:.2f} s ({n / (end - t0):.0f} jobs/s) -- slowed by the profilers")
        if worker_raw.exists():
            stacks = collapse(worker_raw)
            kids = [(f, c) for f, c in stacks if any("Worker.workloop" in x for x in f)]
            main_ = [(f, c) for f, c in stacks if not any("Worker.workloop" in x for x in f)]
            report("prefork children (py-spy): where a job's time goes", kids, n, RATE, INTEREST)
            report("worker main process (py-spy): consumer, timers, pool I/O", main_, n, RATE, [])
        else:
            print(f"py-spy (worker) wrote nothing: {errors[0]}")
        if driver_raw.exists():
            report("submitting process (py-spy): api.submit", collapse(driver_raw), n, RATE, SUBMIT)
        else:
            print(f"py-spy (submit) wrote nothing: {errors[1]}")
    finally:
        setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
