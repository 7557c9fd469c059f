"""Handlers used only by the tests, loaded through GUESTKIT_EXTRA_HANDLERS exactly as a
third-party plugin would be through the entry-point group."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from app.plugin.errors import ErrorCode, JobError
from app.plugin.handler import Handler, HandlerContext, HandlerResult


class SleepPayloadV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    seconds: float = 1.0
    #: how long attempts after the first sleep (default: as long as the first)
    retry_seconds: float | None = None
    #: start a child process that sleeps too (checked gone after timeout or cancel)
    child_pid_file: str | None = None
    #: file touched when the handler starts (tests wait for it instead of sleeping)
    started_file: str | None = None
    #: file appended with one line per execution (counts how often the handler ran)
    runs_file: str | None = None


class SleepHandler(Handler):
    operation = "test.sleep"
    payload_models = {1: SleepPayloadV1}
    features = ("sleep",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, SleepPayloadV1)
        if payload.runs_file:
            with open(payload.runs_file, "a") as handle:
                handle.write(f"{ctx.job_id} {os.getpid()}\n")
        child = None
        if payload.child_pid_file:
            child = subprocess.Popen(["sleep", str(payload.seconds + 60)])
            Path(payload.child_pid_file).write_text(str(child.pid))
        if payload.started_file:
            Path(payload.started_file).touch()
        ctx.report_progress("validation", 0, "sleeping")
        seconds = payload.seconds
        if ctx.attempt > 1 and payload.retry_seconds is not None:
            seconds = payload.retry_seconds
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.02)
        if child:
            child.kill()
            child.wait()
        ctx.report_progress("cleanup", 100, "woke up")
        return HandlerResult(data={"slept": payload.seconds, "pid": os.getpid()})


class FlakyPayloadV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    #: the handler fails (recoverably) until this file holds this many lines
    counter_file: str
    fail_times: int = 1
    recoverable: bool = True


class FlakyHandler(Handler):
    operation = "test.flaky"
    payload_models = {1: FlakyPayloadV1}

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, FlakyPayloadV1)
        with open(payload.counter_file, "a") as handle:
            handle.write(f"attempt {ctx.attempt}\n")
        runs = len(Path(payload.counter_file).read_text().splitlines())
        if runs <= payload.fail_times:
            raise JobError(ErrorCode.EXECUTION_ERROR, f"flaky failure on run {runs}",
                           recoverable=payload.recoverable)
        return HandlerResult(data={"runs": runs, "attempt": ctx.attempt})


class CrashPayloadV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    runs_file: str


class CrashHandler(Handler):
    """Kills its own worker process every time (a poison job)."""

    operation = "test.crash"
    payload_models = {1: CrashPayloadV1}

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, CrashPayloadV1)
        with open(payload.runs_file, "a") as handle:
            handle.write(f"{ctx.attempt}\n")
        os.kill(os.getpid(), 9)
        raise AssertionError("unreachable")


class BoomHandler(Handler):
    """Raises an unexpected exception."""

    operation = "test.boom"
    payload_models = {1: SleepPayloadV1}

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        raise ZeroDivisionError("the handler divided by zero")


TEST_HANDLERS = ",".join(f"tests.plugins:{name}" for name in
                         ("SleepHandler", "FlakyHandler", "CrashHandler", "BoomHandler"))


# --- added for the reliability suite (tests/chaos.py, tests/test_chaos.py, tests/test_poison.py) ---
class CountPayloadV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    #: file appended with one line ``<job_id> <attempt> <pid>`` per execution (one O_APPEND write)
    runs_file: str
    seconds: float = 0.0
    #: fail recoverably on the first attempt (the retry path), then succeed
    fail_first: bool = False
    #: fail unrecoverably every time
    fail: bool = False


class CountHandler(Handler):
    """Counts its executions (with their attempt numbers), sleeps, and can fail on purpose."""

    operation = "test.count"
    payload_models = {1: CountPayloadV1}

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, CountPayloadV1)
        line = f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode()
        fd = os.open(payload.runs_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        end = time.monotonic() + payload.seconds
        while time.monotonic() < end:
            time.sleep(0.01)
        if payload.fail:
            raise JobError(ErrorCode.EXECUTION_ERROR, "test.count asked to fail", recoverable=False)
        if payload.fail_first and ctx.attempt == 1:
            raise JobError(ErrorCode.EXECUTION_ERROR, "test.count fails its first attempt", recoverable=True)
        return HandlerResult(data={"attempt": ctx.attempt, "pid": os.getpid()})


TEST_HANDLERS += ",tests.plugins:CountHandler"


# --- added for the resource limits (tests/test_limits.py) ---
class HogPayloadV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    #: MiB of memory to take (and touch) before answering
    memory_mb: int = 0
    #: bytes of text to return in ``data``
    result_bytes: int = 0


class HogHandler(Handler):
    """Takes memory, or returns a large result, as a job fed a bomb would."""

    operation = "test.hog"
    payload_models = {1: HogPayloadV1}

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, HogPayloadV1)
        held = [bytearray(1024 * 1024) for _ in range(payload.memory_mb)]  # zeroed: every page touched
        return HandlerResult(data={"held_mb": len(held), "text": "x" * payload.result_bytes, "pid": os.getpid()})


TEST_HANDLERS += ",tests.plugins:HogHandler"
