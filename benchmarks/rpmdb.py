"""rpm databases: time to read a guest's package list from each format rpm has used (sqlite, ndb,
Berkeley DB hash), against Debian's rpm reading the same database (``rpm -qa``; it has no ndb
backend) in the same run.

    .venv/bin/python -m benchmarks.rpmdb [--quick] [--packages 500] [--runs 20]

The packages are empty ones built with rpmbuild and installed by rpm (their headers are rpm's own,
install tags included), then written in each format as the tests write them (``tests/rpmdb_build.py``).
Timed: ``handlers.guestos.packages.read_packages`` over the guest tree (locate, read, copy for sqlite,
decode every header); warm = median of ``--runs``, cold = the first read in a fresh process.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import ROOT, machine, table

COLD_READ = """
import sys, time
t = time.perf_counter()
from handlers.guestos.packages import read_packages
from handlers.tree import DirectoryTree
found = read_packages(DirectoryTree(sys.argv[1]))
print(time.perf_counter() - t, len(found["packages"]))
"""


def _packages(count: int) -> list[dict]:
    return [{"name": f"bench-package-{n:04d}", "epoch": None if n % 5 else n % 3, "version": f"{n % 17}.{n % 7}.{n}",
             "release": f"{n % 9 + 1}.el8", "arch": ("x86_64", "noarch", "i686")[n % 3]} for n in range(count)]


def build(base: Path, count: int) -> dict[str, Path]:
    """A guest root per format, each holding the same ``count`` packages."""
    sys.path.insert(0, str(ROOT))
    from tests.rpmdb_build import installed_headers, write_bdb, write_ndb
    from tests.rpmdb_tool import rpm_database

    roots = {name: base / name for name in ("sqlite", "ndb", "bdb")}
    rpm_database(_packages(count), roots["sqlite"])
    blobs, _ = installed_headers(_packages(count), base / "headers")
    (roots["ndb"] / "var/lib/rpm").mkdir(parents=True)
    write_ndb(roots["ndb"] / "var/lib/rpm/Packages.db", blobs)
    (roots["bdb"] / "var/lib/rpm").mkdir(parents=True)
    write_bdb(roots["bdb"] / "var/lib/rpm/Packages", blobs)
    return roots


def time_platform(root: Path, runs: int) -> tuple[float, float, int]:
    """(cold ms, warm median ms, packages)."""
    cold = subprocess.run([sys.executable, "-c", COLD_READ, str(root)], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()
    from handlers.guestos.packages import read_packages
    from handlers.tree import DirectoryTree

    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        found = read_packages(DirectoryTree(root))
        warm.append(time.perf_counter() - started)
    return float(cold[0]) * 1000, statistics.median(warm) * 1000, len(found["packages"])


def time_rpm(root: Path, backend: str, runs: int) -> float | None:
    """Median ms of ``rpm -qa`` on the same database; None where Debian's rpm cannot read it."""
    if backend == "ndb" or shutil.which("rpm") is None:
        return None
    command = ["rpm", "--dbpath", str(root / "var/lib/rpm"), "--define",
               f"_db_backend {'bdb_ro' if backend == 'bdb' else 'sqlite'}", "-qa"]
    times = []
    for _ in range(max(3, runs // 4)):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 packages, 5 runs")
    parser.add_argument("--packages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    count, runs = (50, 5) if args.quick else (args.packages, args.runs)
    print(f"# rpm databases | {count} packages | warm = median of {runs} reads in one process; cold = first read "
          "in a fresh one (imports included)")
    print(f"# {machine()}")
    print(f"# {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench-rpmdb-"))
    try:
        started = time.perf_counter()
        roots = build(base, count)
        print(f"built {count} packages in 3 formats in {time.perf_counter() - started:.1f} s")
        rows, worst = [], 0.0
        for backend, root in roots.items():
            cold, warm, found = time_platform(root, runs)
            rpm = time_rpm(root, backend, runs)
            worst = max(worst, warm)
            rows.append([backend, found, cold, warm, rpm if rpm is not None else "no backend",
                         f"{warm / rpm:.2f}" if rpm else "-"])
        table(rows, ["format", "packages", "cold ms", "warm ms", "rpm -qa ms", "warm/rpm"])
        print(f"RESULT rpmdb: {count} packages, slowest format warm {worst:.1f} ms "
              f"({'under' if worst < 30 else 'OVER'} the 30 ms goal)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
