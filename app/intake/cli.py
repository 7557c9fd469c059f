"""Command line: Celery sub-commands registered through the ``celery.commands`` entry point.

    celery -A app submit FILE... [--wait] [--timeout S] [--json]
    celery -A app status JOB_ID [--json]        (without JOB_ID: Celery's own worker status)
    celery -A app result JOB_ID [--json]
    celery -A app cancel JOB_ID [--json]
    celery -A app jobs [--state S] [--json]
    celery -A app validate FILE... [--json]
    celery -A app workers [--json]
    celery -A app schema
    celery -A app bridge [--jobs-dir DIR] [--interval S]

Plain text for people, ``--json`` for scripts; errors go to stderr. Exit codes: 0 success;
1 a job failed (or was cancelled, or timed out), a file is invalid (``validate``), a cancel was
refused; 2 bad usage, or an invalid file given to ``submit``; 3 no such job, or no result yet;
4 ``--wait`` ran out of time.

Celery adds its own ``status`` and ``result`` commands after the plugins, so those two are
extended in place rather than registered anew: ``status`` without a JOB_ID still pings workers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click
from celery.bin.base import CeleryCommand
from celery.bin.control import status as celery_status
from celery.bin.result import result as celery_result

from app.intake import api
from app.intake.bridge import Bridge, BridgeConfig, run
from app.plugin.errors import ValidationFailed
from app.plugin.registry import HandlerRegistry, installed
from app.protocol.states import JobState, JobStatus
from app.run.privileges import warn_if_root

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
_POLL = 0.05

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class Exit(click.ClickException):
    """An error for the user: message on stderr, the given exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _platform() -> tuple[Any, HandlerRegistry]:
    from app.celery import app

    return app, installed(app.conf.guestkit_extra_handlers)


# --- submit ---------------------------------------------------------------------------------
class ProgressDisplay:
    """Shows a job's progress events: a redrawn bar on a terminal, one line per event otherwise."""

    WIDTH = 30

    def __init__(self, job_id: str, stream: TextIO) -> None:
        self.job_id = job_id
        self.stream = stream
        self.live = stream.isatty()
        self.drawn = False

    def show(self, event: dict[str, Any]) -> None:
        percent = int(event.get("progress_percent", 0))
        what = f"{event.get('phase', '')}: {event.get('message', '')}"
        if self.live:
            filled = self.WIDTH * percent // 100
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r\x1b[K{self.job_id} [{bar}] {percent:3d}% {what}")
            self.drawn = True
        else:
            self.stream.write(f"{self.job_id} {percent:3d}% {what}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def follow(handle: api.JobHandle, timeout: float | None, display: ProgressDisplay) -> dict[str, Any]:
    """Wait for the job's result, showing each of its progress events as it arrives."""
    deadline = None if timeout is None else time.monotonic() + timeout
    backend = _platform()[0].backend
    seen = 0
    try:
        while True:
            result = backend.read_result(handle.job_id)
            events = handle.progress()
            for event in events[seen:]:
                display.show(event)
            seen = len(events)
            if result is not None:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {handle.job_id} has not ended after {timeout} s")
            time.sleep(_POLL)
    finally:
        display.close()


def _result_line(result: dict[str, Any]) -> str:
    summary = result.get("execution_summary") or {}
    if result.get("status") == "completed":
        return f"{result['job_id']}: completed in {summary.get('duration_seconds', 0):.3f} s"
    error = result.get("error") or {}
    return f"{result['job_id']}: {result.get('status')}: {error.get('code')}: {error.get('message')}"


@click.command(cls=CeleryCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--wait", is_flag=True, help="Wait for each job to end, showing its progress.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@json_option
def submit(files: tuple[Path, ...], wait: bool, timeout: float | None, as_json: bool) -> None:
    """Validate job files and queue them; with --wait, follow them to the end."""
    outcomes: list[dict[str, Any]] = []
    handles: list[api.JobHandle] = []
    code = 0
    for path in files:
        try:
            handle = api.submit(path)
        except ValidationFailed as exc:
            code = EXIT_INVALID
            outcomes.append({"file": str(path), "submitted": False, "code": exc.code.value, "problems": exc.problems})
            click.echo(f"error: {path}: not submitted ({exc.code.value})", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            continue
        except api.SubmitFailed as exc:
            raise Exit(f"{path}: {exc}", EXIT_FAILED) from None
        handles.append(handle)
        current = handle.status()
        outcomes.append({"file": str(path), "submitted": True, "job_id": handle.job_id,
                         "state": current.state.value if current else None})
        if not as_json and not wait:
            click.echo(f"{handle.job_id}: {current.state if current else 'submitted'} ({path})")
    if wait:
        by_job = {o.get("job_id"): o for o in outcomes if o["submitted"]}
        deadline = None if timeout is None else time.monotonic() + timeout  # for all the jobs together
        for handle in handles:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                result = follow(handle, left, ProgressDisplay(handle.job_id, sys.stderr))
            except TimeoutError:
                current = handle.status()
                click.echo(f"error: job {handle.job_id} has not ended after {timeout} s "
                           f"(state: {current.state if current else 'unknown'})", err=True)
                by_job[handle.job_id]["state"] = current.state.value if current else None
                code = max(code, EXIT_TIMEOUT)
                continue
            by_job[handle.job_id].update(state=result["status"], result=result)
            if result["status"] != "completed":
                code = code or EXIT_FAILED
            if not as_json:
                click.echo(_result_line(result))
    if as_json:
        _print_json(outcomes)
    sys.exit(code)


# --- status, result, cancel, jobs -------------------------------------------------------------
def _status_text(status: JobStatus) -> str:
    lines = [
        f"job_id:     {status.job_id}",
        f"state:      {status.state}",
        f"operation:  {status.operation}",
        f"attempt:    {status.attempt} of {status.max_attempts}",
    ]
    if status.worker_id:
        lines.append(f"worker:     {status.worker_id}")
    if status.idempotency_key:
        lines.append(f"key:        {status.idempotency_key}")
    if status.progress:
        p = status.progress
        lines.append(f"progress:   {p.get('progress_percent')}% {p.get('phase')}: {p.get('message')}")
    if status.error:
        lines.append(f"error:      {status.error.get('code')}: {status.error.get('message')}")
    lines.append("history:")
    lines += [f"  {t.at.isoformat(timespec='milliseconds')}  {t.state:<10} attempt {t.attempt}"
              + (f"  {t.reason}" if t.reason else "") for t in status.history]
    return "\n".join(lines)


def _job_status(job_id: str, as_json: bool) -> None:
    current = api.status(job_id)
    if current is None:
        raise Exit(f"no job {job_id}", EXIT_NOT_FOUND)
    if as_json:
        _print_json(current.model_dump(mode="json"))
    else:
        click.echo(_status_text(current))


def _job_result(job_id: str, as_json: bool) -> None:
    result = _platform()[0].backend.read_result(job_id)
    if result is None:
        current = api.status(job_id)
        raise Exit(f"no job {job_id}" if current is None else f"job {job_id} has no result yet ({current.state})",
                   EXIT_NOT_FOUND)
    if as_json:
        _print_json(result)
    else:
        click.echo(_result_line(result))
        click.echo(json.dumps(result, indent=2))
    if result.get("status") != "completed":
        sys.exit(EXIT_FAILED)


def _extend_status(command: click.Command) -> click.Command:
    """Celery's ``status`` with an optional JOB_ID: with it, the job's status; without, the workers'."""
    original = command.callback
    assert original is not None
    if any(p.name == "job_id" for p in command.params):
        return command

    def callback(job_id: str | None = None, **kwargs: Any) -> Any:
        if job_id is None:
            return original(**kwargs)
        return _job_status(job_id, bool(kwargs.get("json")))

    command.params.insert(0, click.Argument(["job_id"], required=False))
    command.callback = callback
    command.help = ("Show a job's state, history and progress (status JOB_ID [--json]); "
                    "without JOB_ID, list the workers that are online.")
    command.short_help = "Show a job's status, or the workers online."
    return command


def _replace_result(command: click.Command) -> click.Command:
    """Celery's ``result``, for jobs: prints the job's result document."""
    command.params = [click.Argument(["job_id"]),
                      click.Option(["--json", "as_json"], is_flag=True, help="Print JSON for scripts.")]
    command.callback = _job_result
    command.help = "Print a job's result document (exit 1 when the job did not complete)."
    command.short_help = "Print a job's result."
    return command


status = _extend_status(celery_status)
result = _replace_result(celery_result)


@click.command(cls=CeleryCommand)
@click.argument("job_id")
@json_option
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: a queued one never starts, a running one is asked to stop."""
    try:
        current = api.cancel(job_id)
    except KeyError:
        raise Exit(f"no job {job_id}", EXIT_NOT_FOUND) from None
    except api.CancelRefused as exc:
        raise Exit(str(exc), EXIT_FAILED) from None
    if as_json:
        _print_json(current.model_dump(mode="json"))
    else:
        click.echo(f"{job_id}: {current.state}" + ("" if current.terminal else " (cancel requested)"))


@click.command(cls=CeleryCommand)
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None,
              help="Only jobs in this state.")
@json_option
def jobs(state: str | None, as_json: bool) -> None:
    """List jobs as a table."""
    found = sorted(api.list_jobs(state), key=lambda s: s.created_at)
    if as_json:
        _print_json([s.model_dump(mode="json", exclude={"history"}) for s in found])
        return
    rows = [("JOB_ID", "STATE", "OPERATION", "ATTEMPT", "UPDATED")]
    rows += [(s.job_id, s.state.value, s.operation, f"{s.attempt}/{s.max_attempts}",
              s.updated_at.isoformat(timespec="seconds")) for s in found]
    _print_table(rows)
    click.echo(f"{len(found)} job{'s' if len(found) != 1 else ''}")


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- validate, schema -----------------------------------------------------------------------
@click.command(cls=CeleryCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check job files against the v1 contract; print every problem with its field path."""
    from app.protocol.validation import validate as check

    app, registry = _platform()
    reports: list[dict[str, Any]] = []
    for path in files:
        try:
            job = check(path, timeout_ceiling=app.backend.settings.timeout_ceiling,
                        payload_models=registry.payload_models)
        except ValidationFailed as exc:
            reports.append({"file": str(path), "valid": False, "code": exc.code.value, "problems": exc.problems})
            if not as_json:
                click.echo(f"{path}: invalid ({exc.code.value})")
                for problem in exc.problems:
                    click.echo(f"  {problem}")
            continue
        reports.append({"file": str(path), "valid": True, "job_id": job.job_id, "operation": job.operation})
        if not as_json:
            click.echo(f"{path}: ok (job {job.job_id}, {job.operation})")
    if as_json:
        _print_json(reports)
    if not all(r["valid"] for r in reports):
        sys.exit(EXIT_FAILED)


@click.command(cls=CeleryCommand)
@json_option
def workers(as_json: bool) -> None:
    """List the live workers as they advertise themselves (pools, operations, load)."""
    adverts = _platform()[0].backend.store.workers()
    if as_json:
        _print_json(adverts)
        return
    if not adverts:
        click.echo("no live workers")
        return
    rows = [("WORKER", "POOLS", "JOBS", "VERSION", "LAST HEARTBEAT", "OPERATIONS")]
    for advert in adverts:
        rows.append((advert["worker_id"], ",".join(advert["configuration"]["pools"]),
                     f"{advert['status']['current_jobs']}/{advert['resources']['max_concurrent_jobs']}",
                     advert["version"], advert["status"]["last_heartbeat"],
                     ",".join(advert["capabilities"]["operations"])))
    _print_table(rows)


@click.command(cls=CeleryCommand)
def schema() -> None:
    """Print the JSON Schema of v1 job documents (every registered payload type included)."""
    from app.protocol.schema import job_schema, render

    click.echo(render(job_schema(_platform()[1].payload_models)), nl=False)


# --- bridge ---------------------------------------------------------------------------------
@click.command(cls=CeleryCommand)
@click.option("--jobs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory to watch (default: the guestkit_jobs_dir setting, ./jobs).")
@click.option("--interval", type=float, default=None, help="Seconds between looks when idle.")
@click.option("--settle", type=float, default=None,
              help="Seconds a file that does not parse must stay unchanged before it is judged bad.")
@click.option("-l", "--loglevel", default="INFO", help="Logging level.")
def bridge(jobs_dir: Path | None, interval: float | None, settle: float | None, loglevel: str) -> None:
    """Run the file-drop bridge as its own process (no worker needed in this process)."""
    app, _ = _platform()
    logging.basicConfig(level=loglevel.upper(), stream=sys.stderr,
                        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
    config = BridgeConfig(jobs_dir=jobs_dir or Path(app.conf.guestkit_jobs_dir),
                          settle=settle if settle is not None else app.conf.guestkit_bridge_settle)
    interval = interval if interval is not None else float(app.conf.guestkit_bridge_interval)
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    runner = Bridge(config, app)
    logging.getLogger("guestkit.bridge").info("bridge: watching %s (pid %s)", runner.jobs_dir, os.getpid())
    warn_if_root("bridge")
    try:
        run(runner, interval, should_stop=lambda: bool(stopping))
    finally:
        runner.close()
    logging.getLogger("guestkit.bridge").info("bridge: stopped")

