"""Throughput: N ``system.echo`` jobs through the Python API until every result JSON exists, against
N no-op tasks of plain Celery with a result backend, same broker, prefork pool and concurrency.

    .venv/bin/python -m benchmarks.throughput --broker embedded|redis|rabbitmq|all [--quick] [-n N]

Plain Celery's result backend: Redis for Redis, ``rpc://`` for RabbitMQ, ``file://`` (with kombu's plain
``filesystem://`` transport) for the embedded broker. Each side gets a fresh worker; plain runs first.
A warm-up round (``--warmup`` jobs per side) runs first and is shown but not counted: the first round
of a run was the slowest in 5 of 7 runs on this machine, in every process, the client's included
(0.50-0.65 against 0.66-0.77 after it). The verdict takes the lower of two summaries of the rounds:
the ratio of the median rates, and the median of each round's ratio.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks.common import CpuMeter, echo_job, fan_out, header, make_setup, parser, table

WARMUP = 50


def run_plain(setup, n: int, matched: bool) -> dict[str, float]:
    worker = setup.plain_worker(matched=matched)
    app = setup.plain_app(matched=matched)
    try:
        setup.wait_plain([app.send_task("bench.noop", task_id=f"plain-{setup.tag}-w{i}") for i in range(WARMUP)])
        meter = CpuMeter(worker, setup.broker)
        t0 = time.perf_counter()
        results = [app.send_task("bench.noop", task_id=f"plain-{setup.tag}-{time.time_ns()}-{i}") for i in range(n)]
        sent = time.perf_counter()
        setup.wait_plain(results)
        end = time.perf_counter()
        cpu = meter.per_job(n)
    finally:
        app.close()
        worker.stop()
    return {"submit_s": sent - t0, "total_s": end - t0, "rate": n / (end - t0), "cpu": cpu}


def run_platform(setup, api, n: int, round_: int, app_module: str = "app") -> dict[str, float]:
    worker = setup.platform_worker("platform", app_module=app_module)
    try:
        tag = f"{setup.tag}-{app_module.rpartition('.')[2]}"
        warm = [api.submit(echo_job(tag, f"r{round_}w{i}")) for i in range(WARMUP)]
        setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in warm], 60)
        docs = [echo_job(tag, f"r{round_}-{i}") for i in range(n)]
        meter = CpuMeter(worker, setup.broker)
        t0 = time.perf_counter()
        handles = [api.submit(doc) for doc in docs]
        sent = time.perf_counter()
        end = setup.wait_files([setup.results_dir / f"{h.job_id}-result.json" for h in handles], 600)
        cpu = meter.per_job(n)
    finally:
        worker.stop()
    sample = handles[:: max(1, n // 50)]
    failed = [h.job_id for h in sample if api.JobHandle(h.job_id).result(5)["status"] != "completed"]
    if failed:
        raise SystemExit(f"platform jobs did not complete: {failed[:5]}")
    return {"submit_s": sent - t0, "total_s": end - t0, "rate": n / (end - t0), "cpu": cpu}


CPU_SIDES = ("client", "worker main", "children", "broker", "total")


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="jobs per side (default 5,000; --quick 300)")
    p.add_argument("--rounds", type=int, default=1, help="alternate plain/platform this many times (median)")
    p.add_argument("--warmup", type=int, help="jobs per side in a first round that is shown but not counted "
                   "(default 2,000 or -n if fewer; --quick 0)")
    args = p.parse_args(argv)
    code = fan_out("benchmarks.throughput", args, argv)
    if code is not None:
        return code
    n = args.n or (300 if args.quick else 5000)
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    matched = not args.plain_defaults
    try:
        header("throughput", setup, f"{n} jobs per side | plain Celery with "
               f"{'the platform delivery settings (acks_late, prefetch 1)' if matched else 'Celery defaults'}")
        api = setup.platform_api()
        warmup = args.warmup if args.warmup is not None else 0 if args.quick else min(2000, n)
        rounds = [("warm-up", warmup)] if warmup else []
        rounds += [(f"round {i + 1}", n) for i in range(args.rounds)]
        rows, cpu_rows, plain_runs, platform_runs = [], [], [], []
        for index, (name, jobs) in enumerate(rounds):
            pl, pf = run_plain(setup, jobs, matched), run_platform(setup, api, jobs, index)
            if name != "warm-up":
                plain_runs.append(pl)
                platform_runs.append(pf)
            rows.append([f"{name} plain Celery", jobs, pl["submit_s"], pl["total_s"], pl["rate"], ""])
            rows.append([f"{name} platform", jobs, pf["submit_s"], pf["total_s"], pf["rate"],
                         f"{pf['rate'] / pl['rate']:.2f}"])
            cpu_rows.append([f"{name} plain Celery", *(pl["cpu"][side] for side in CPU_SIDES)])
            cpu_rows.append([f"{name} platform", *(pf["cpu"][side] for side in CPU_SIDES)])
        table(rows, ["side", "jobs", "submit s", "total s", "jobs/s", "platform/plain"])
        print("CPU ms per job (client = the submitting and waiting process; broker = its server, if local):")
        table(cpu_rows, ["side", *CPU_SIDES])
        platform_rate = statistics.median(pf["rate"] for pf in platform_runs)
        plain_rate = statistics.median(pl["rate"] for pl in plain_runs)
        paired = [pf["rate"] / pl["rate"] for pl, pf in zip(plain_runs, platform_runs, strict=True)]
        # the lower of the two ways to sum the rounds up: medians' ratio, and median of each round's ratio
        ratio = min(platform_rate / plain_rate, statistics.median(paired))
        verdict = "MET" if ratio >= 0.75 else "NOT MET"
        print(f"RESULT throughput {setup.broker}: platform {platform_rate:.0f}/s, plain {plain_rate:.0f}/s, "
              f"ratio {ratio:.2f} (medians {platform_rate / plain_rate:.2f}, rounds "
              f"{' / '.join(f'{r:.2f}' for r in paired)}; target >= 0.75: {verdict})", flush=True)
    finally:
        setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
