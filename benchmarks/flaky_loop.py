"""Run the tests that once lost a job under load (issue 27) again and again, on a machine kept busy,
and count how often each fails. Not part of the test command: a run takes tens of minutes.

    .venv/bin/python -m benchmarks.flaky_loop [--runs 20] [--busy 2] [--minutes 30] [TEST_ID ...]

``--busy N`` keeps N processes spinning on the CPU meanwhile (as ``stress-ng --cpu N`` would);
``--load TESTS`` also runs those test files again and again beside (forks, disk images, loop devices and
workers of their own: the rest of the suite, as CI's other test processes are). The
output of every failing run is kept under ``.bench/flaky-<time>/`` (pytest's output, with the chaos
report's dossiers or the drop file's whereabouts that the tests print when an invariant breaks).
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import ROOT

DEFAULT_TESTS = ("tests/test_chaos.py::test_chaos_quick[embedded]",
                 "tests/test_hostile.py::test_fuzz_bridge_every_file_is_accounted_for")


def _spin() -> None:
    while True:
        pass


class _Load:
    """Test files run again and again in a thread until ``stop()`` (their own failures do not count)."""

    def __init__(self, tests: list[str], log: Path) -> None:
        self.tests, self.log, self.rounds = tests, log, 0
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with self.log.open("ab") as out:
            while not self.stopping.is_set():
                self.proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                              *self.tests], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
                self.proc.wait()
                self.rounds += 1

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None:
            self.proc.terminate()
        self.thread.join(120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=list(DEFAULT_TESTS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--busy", type=int, default=2, help="processes spinning on the CPU meanwhile")
    parser.add_argument("--minutes", type=float, default=30, help="stop starting runs after this long")
    parser.add_argument("--load", nargs="*", default=[], metavar="TESTS",
                        help="test files run again and again meanwhile (e.g. tests/test_inspect.py)")
    args = parser.parse_args(argv)
    out = ROOT / ".bench" / f"flaky-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    load = _Load(args.load, out / "load.txt") if args.load else None
    deadline = time.monotonic() + args.minutes * 60
    failures: dict[str, int] = dict.fromkeys(args.tests, 0)
    runs: dict[str, int] = dict.fromkeys(args.tests, 0)
    try:
        for run in range(1, args.runs + 1):
            for test in args.tests:
                if time.monotonic() > deadline:
                    break
                done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                                      cwd=ROOT, capture_output=True, text=True)
                runs[test] += 1
                if done.returncode != 0:
                    failures[test] += 1
                    log = out / f"run{run:02d}-{Path(test.split('::')[0]).stem}.txt"
                    log.write_text(done.stdout + done.stderr)
                    print(f"run {run}: {test} FAILED (output in {log})", flush=True)
                else:
                    print(f"run {run}: {test} passed", flush=True)
    finally:
        for spinner in spinners:
            spinner.terminate()
        if load is not None:
            load.stop()
    beside = f" and {load.rounds} runs of {' '.join(args.load)}" if load is not None else ""
    for test in args.tests:
        print(f"RESULT {test}: {failures[test]} failed of {runs[test]} runs under {args.busy} busy processes{beside}")
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
