"""The benchmark scripts keep working (tiny counts; no timing is asserted here: the figures are
for benchmarks/README.md, measured by the scripts themselves)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", [["throughput", "-n", "30"], ["latency", "-n", "5"]])
def test_benchmark_script_runs_both_sides_and_prints_the_ratio(script: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{script[0]}", "--broker", "embedded", *script[1:]],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert result, out.stdout[-2000:]
    assert "platform" in result[0] and "plain" in result[0] and "ratio" in result[0]


def test_rpmdb_benchmark_reads_every_format_and_compares_with_rpm() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.rpmdb", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()
            if line.split() and line.split()[0] in ("sqlite", "ndb", "bdb")}
    assert sorted(rows) == ["bdb", "ndb", "sqlite"] and all(row[1] == "50" for row in rows.values())
    assert any(line.startswith("RESULT rpmdb: 50 packages") for line in out.stdout.splitlines())


def test_flood_benchmark_drains_the_flood_and_compares_with_the_api() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.flood", "--broker", "embedded", "-n", "300"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (result,) = [line for line in out.stdout.splitlines() if line.startswith("RESULT flood embedded: 300 files")]
    assert "against the API's" in result and "late file waited" in result
    bridge_row = [line for line in out.stdout.splitlines() if line.startswith("file drop (bridge)")]
    assert bridge_row and bridge_row[0].split()[3] == "300"
