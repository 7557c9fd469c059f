"""Memory: resident memory of an idle worker (main process and each prefork child), after a warm-up of
N/10 jobs, and after N jobs (default 10,000; --quick 1,000), platform against plain Celery.

    .venv/bin/python -m benchmarks.memory --broker embedded|redis|rabbitmq|all [--quick] [-n N]

"Flat" means: between the warm-up mark and the end, no process of the worker grows by more than
``--bound`` MiB (default 3). Growth from idle to warm is reported too (imports, caches, connections).
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import echo_job, fan_out, header, make_setup, parser, table


def _settle(worker) -> dict[str, float]:
    time.sleep(1.5)
    return worker.rss()


def run_plain(setup, n: int, warm: int, matched: bool) -> dict[str, dict[str, float]]:
    worker = setup.plain_worker(matched=matched)
    app = setup.plain_app(matched=matched)
    marks = {"idle": _settle(worker)}
    try:
        done = 0
        for mark, upto in (("warm", warm), ("end", n)):
            batch = [app.send_task("bench.noop", task_id=f"plain-{setup.tag}-m{i}") for i in range(done, upto)]
            setup.wait_plain(batch)
            done = upto
            marks[mark] = _settle(worker)
    finally:
        app.close()
        worker.stop()
    return marks


def _job(setup, i: int, timeout: int | None) -> dict:
    doc = echo_job(setup.tag, f"m{i}")
    if timeout is not None:
        doc["execution"]["timeout_seconds"] = timeout
    return doc


def run_platform(setup, api, n: int, warm: int, timeout: int | None = None) -> dict[str, dict[str, float]]:
    worker = setup.platform_worker()
    marks = {"idle": _settle(worker)}
    try:
        done = 0
        for mark, upto in (("warm", warm), ("end", n)):
            handles = [api.submit(_job(setup, i, timeout)) for i in range(done, upto)]
            setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in handles], 1800)
            done = upto
            marks[mark] = _settle(worker)
    finally:
        worker.stop()
    return marks


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="jobs (default 10,000; --quick 1,000)")
    p.add_argument("--bound", type=float, default=3.0, help="MiB a process may grow after the warm-up")
    p.add_argument("--job-timeout", type=int, help="the platform jobs' timeout_seconds (default: the seed's 60)")
    args = p.parse_args(argv)
    code = fan_out("benchmarks.memory", args, argv)
    if code is not None:
        return code
    n = args.n or (1000 if args.quick else 10000)
    warm = max(100, n // 10)
    matched = not args.plain_defaults
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    try:
        header("memory (RSS, MiB)", setup, f"{n} jobs, warm-up mark at {warm}")
        api = setup.platform_api()
        sides = {"plain Celery": run_plain(setup, n, warm, matched),
                 "platform": run_platform(setup, api, n, warm, args.job_timeout)}
        rows, worst = [], {}
        for side, marks in sides.items():
            for proc in marks["idle"]:
                idle, w, end = (marks[m].get(proc, float("nan")) for m in ("idle", "warm", "end"))
                rows.append([side, proc, idle, w, end, end - idle, end - w])
            worst[side] = max(marks["end"].get(k, 0) - marks["warm"].get(k, 0) for k in marks["idle"])
            total = {m: sum(marks[m].values()) for m in marks}
            rows.append([side, "total", total["idle"], total["warm"], total["end"], total["end"] - total["idle"],
                         total["end"] - total["warm"]])
        table(rows, ["side", "process", "idle", f"after {warm}", f"after {n}", "growth", f"growth {warm}->{n}"])
        ok = worst["platform"] <= args.bound
        print(f"RESULT memory {setup.broker}: platform largest growth after warm-up {worst['platform']:.1f} MiB "
              f"(plain {worst['plain Celery']:.1f} MiB) over {n - warm} jobs; bound {args.bound} MiB per process: "
              f"{'FLAT' if ok else 'GROWS'}")
    finally:
        setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
