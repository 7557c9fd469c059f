"""Latency: p50/p95 from submit to ``running`` and to the result, over sequential jobs, platform against
plain Celery on the same broker; and from a job file renamed into the jobs directory to ``running``
(the file-drop bridge inside the worker, at its default scan interval).

    .venv/bin/python -m benchmarks.latency --broker embedded|redis|rabbitmq|all [--quick] [-n N]

Platform: ``submit`` is timed from just before the call; ``running`` is the time of the ``running``
transition in the job's stored history; ``result`` is when the client first sees
``<job_id>-result.json`` (polled every 0.5 ms). Plain Celery: the no-op task returns ``time.time()``
when it starts; ``result`` is when ``AsyncResult.get()`` returns. One job at a time, same host clock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime

from benchmarks.common import echo_job, fan_out, header, make_setup, parser, percentile, table

WARMUP = 20


def _wait(path, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result {path} after {timeout} s")
        time.sleep(0.0005)
    return time.time()


def _history(api, job_id: str) -> dict[str, float]:
    status = api.status(job_id)
    return {t.state.value: t.at.timestamp() for t in status.history}


def run_plain(setup, n: int, matched: bool) -> dict[str, list[float]]:
    worker = setup.plain_worker(matched=matched)
    app = setup.plain_app(matched=matched)
    running, result = [], []
    try:
        for i in range(WARMUP + n):
            t0 = time.time()
            r = app.send_task("bench.noop", task_id=f"plain-{setup.tag}-l{i}")
            started = r.get(timeout=30, interval=0.0005)
            done = time.time()
            if i >= WARMUP:
                running.append(started - t0)
                result.append(done - t0)
    finally:
        app.close()
        worker.stop()
    return {"running": running, "result": result}


def run_platform(setup, api, n: int, app_module: str = "app") -> dict[str, list[float]]:
    worker = setup.platform_worker("platform", app_module=app_module)
    tag = f"{setup.tag}-{app_module.rpartition('.')[2]}"
    out: dict[str, list[float]] = {k: [] for k in ("running", "result", "submit_call", "queued_to_running",
                                                    "running_to_completed")}
    try:
        for i in range(WARMUP + n):
            doc = echo_job(tag, f"l{i}")
            t0 = time.time()
            api.submit(doc)
            t_sub = time.time()
            done = _wait(setup.results_dir / f"{doc['job_id']}-result.json")
            if i < WARMUP:
                continue
            h = _history(api, doc["job_id"])
            out["running"].append(h["running"] - t0)
            out["result"].append(done - t0)
            out["submit_call"].append(t_sub - t0)
            out["queued_to_running"].append(h["running"] - h["queued"])
            result = json.loads((setup.results_dir / f"{doc['job_id']}-result.json").read_bytes())
            if result["status"] != "completed":
                raise SystemExit(f"job {doc['job_id']} did not complete: {json.dumps(result)[:800]}")
            completed = datetime.fromisoformat(result["completed_at"].replace("Z", "+00:00")).timestamp()
            out["running_to_completed"].append(completed - h["running"])
    finally:
        worker.stop()
    return out


def run_drop(setup, api, n: int, interval: str | None) -> dict[str, list[float]]:
    """Files renamed into the jobs directory, one at a time, with the bridge inside the worker."""
    env = {"GUESTKIT_BRIDGE": "1", **({"GUESTKIT_BRIDGE_INTERVAL": interval} if interval else {})}
    worker = setup.platform_worker("platform-bridge", env=env)
    jobs = setup.jobs_dir
    jobs.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[float]] = {"running": [], "result": [], "queued": []}
    try:
        time.sleep(0.5)
        for i in range(WARMUP + n):
            doc = echo_job(setup.tag, f"d{interval}-{i}")
            tmp = jobs / f".{doc['job_id']}.json.tmp"
            tmp.write_text(json.dumps(doc))
            t0 = time.time()
            os.rename(tmp, jobs / f"{doc['job_id']}.json")
            done = _wait(setup.results_dir / f"{doc['job_id']}-result.json")
            # a pause like a real producer's, so a drop does not always land just after a scan
            time.sleep(0.003 + (i % 7) * 0.004)
            if i < WARMUP:
                continue
            h = _history(api, doc["job_id"])
            out["running"].append(h["running"] - t0)
            out["queued"].append(h["queued"] - t0)
            out["result"].append(done - t0)
    finally:
        worker.stop()
    return out


def _row(label: str, values: list[float], target: str = "") -> list:
    ms = [1000 * v for v in values]
    return [label, len(ms), percentile(ms, 0.5), percentile(ms, 0.95), max(ms), target]


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="sequential jobs per measurement (default 500; --quick 50)")
    p.add_argument("--no-drop", action="store_true", help="skip the file-drop measurement")
    p.add_argument("--drop-all-brokers", action="store_true",
                   help="measure file drop on Redis/RabbitMQ too (default: embedded only)")
    p.add_argument("--bridge-interval", action="append", default=[],
                   help="also measure file drop with this GUESTKIT_BRIDGE_INTERVAL (repeatable; e.g. 0.01)")
    args = p.parse_args(argv)
    code = fan_out("benchmarks.latency", args, argv)
    if code is not None:
        return code
    n = args.n or (50 if args.quick else 500)
    matched = not args.plain_defaults
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    try:
        header("latency", setup, f"{n} sequential jobs per measurement")
        api = setup.platform_api()
        plain = run_plain(setup, n, matched)
        plat = run_platform(setup, api, n)
        tgt = "p50 <= 5 ms" if setup.broker != "embedded" else ""
        rows = [
            _row("plain Celery: send -> task started", plain["running"]),
            _row("platform: submit -> running", plat["running"], tgt),
            _row("  of which: submit() call", plat["submit_call"]),
            _row("  of which: queued -> running (stored times)", plat["queued_to_running"]),
            _row("plain Celery: send -> result (get returns)", plain["result"]),
            _row("platform: submit -> result file seen", plat["result"]),
            _row("  of which: running -> completed_at (result)", plat["running_to_completed"]),
        ]
        drop = None
        if not args.no_drop and (setup.broker == "embedded" or args.drop_all_brokers):
            drop = run_drop(setup, api, n, None)
            rows += [
                _row("platform: file renamed in -> queued", drop["queued"]),
                _row("platform: file renamed in -> running", drop["running"], "p50 <= 20, p95 <= 50 ms"
                     if setup.broker == "embedded" else ""),
                _row("platform: file renamed in -> result file", drop["result"]),
            ]
            for interval in args.bridge_interval:
                other = run_drop(setup, api, n, interval)
                rows += [_row(f"  with GUESTKIT_BRIDGE_INTERVAL={interval}: renamed in -> queued", other["queued"]),
                         _row(f"  with GUESTKIT_BRIDGE_INTERVAL={interval}: renamed in -> running",
                              other["running"])]
        table(rows, ["ms", "jobs", "p50", "p95", "max", "target"])
        pr50, pl50 = percentile(plat["running"], 0.5) * 1000, percentile(plain["running"], 0.5) * 1000
        res50 = percentile(plat["result"], 0.5) / percentile(plain["result"], 0.5)
        verdict = ""
        if setup.broker != "embedded":
            verdict = f" (target p50 <= 5 ms: {'MET' if pr50 <= 5 else 'NOT MET'})"
        print(f"RESULT latency {setup.broker}: submit->running p50 platform {pr50:.2f} ms vs plain {pl50:.2f} ms "
              f"(ratio {pr50 / pl50:.1f}){verdict}; submit->result p50 ratio {res50:.1f}")
        if drop is not None:
            d50, d95 = percentile(drop["running"], 0.5) * 1000, percentile(drop["running"], 0.95) * 1000
            verdict = "the target is for embedded only"
            if setup.broker == "embedded":
                verdict = f"target p50 <= 20, p95 <= 50: {'MET' if d50 <= 20 and d95 <= 50 else 'NOT MET'}"
            print(f"RESULT file-drop {setup.broker}: drop->running p50 {d50:.1f} ms, p95 {d95:.1f} ms ({verdict})")
    finally:
        setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
