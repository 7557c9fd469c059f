"""rpm databases written by the rpm tool itself (rpm 4.18: sqlite, as on RHEL 9), not by the tests.

Each package is an empty one built with ``rpmbuild`` (name, epoch, version, release and arch as
asked), recorded with ``rpm --justdb``; a package without an arch stands for the gpg-pubkey entry
``rpm --import`` makes (of ``tests/data/rpm-test-key.asc``, a test key: only its public part is
kept). The ground truth is what ``rpm -qa`` then says, so it does not come from the tests' own
encoder. Databases are cached per package list for the session (building costs about 20 ms a
package).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

KEY = Path(__file__).with_name("data") / "rpm-test-key.asc"
DBPATH = "/var/lib/rpm"
_SPEC = """\
Name: %{pname}
Version: %{pversion}
Release: %{prelease}
%{?pepoch:Epoch: %{pepoch}}
Summary: empty test package
License: MIT
%description
An empty package for the guestkit tests.
%files
"""
#: rpm query tags -> the package fields ``handlers.guestos.rpmheader.package_from_header`` gives
FIELDS = {"NAME": "name", "EPOCH": "epoch", "VERSION": "version", "RELEASE": "release", "ARCH": "arch",
          "SOURCERPM": "source_rpm", "INSTALLTIME": "install_time", "LONGSIZE": "size", "LICENSE": "license",
          "VENDOR": "vendor", "SUMMARY": "summary"}
#: ``rpm -q --qf`` format printing them, tab-separated
QUERY = "\\t".join(f"%{{{tag}}}" for tag in FIELDS) + "\\n"
_NUMBERS = ("epoch", "install_time", "size")


def parse_query(listing: str) -> list[dict[str, Any]]:
    """The packages of a ``QUERY`` listing (None where rpm prints (none))."""
    found = []
    for line in listing.splitlines():
        values = [None if value == "(none)" else value for value in line.split("\t")]
        package = dict(zip(FIELDS.values(), values, strict=True))
        found.append({k: int(v) if k in _NUMBERS and v is not None else v for k, v in package.items()})
    return found


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stderr[-2000:]}")
    return done.stdout


def _build(packages: list[dict[str, Any]], work: Path) -> None:
    spec = work / "package.spec"
    spec.write_text(_SPEC)
    root = work / "root"
    _run(["rpm", "--root", str(root), "--dbpath", DBPATH, "--initdb"])
    files = []
    for package in packages:
        if package["arch"] is None:  # the entry of an imported signing key
            _run(["rpm", "--root", str(root), "--dbpath", DBPATH, "--import", str(KEY)])
            continue
        defines = {"_topdir": str(work / "top"), "pname": package["name"], "pversion": package["version"],
                   "prelease": package["release"]}
        if package["epoch"] is not None:
            defines["pepoch"] = str(package["epoch"])
        args = [item for key, value in defines.items() for item in ("--define", f"{key} {value}")]
        _run(["rpmbuild", "-bb", "--quiet", *args, "--target", package["arch"], str(spec)])
        arch_dir = work / "top" / "RPMS" / package["arch"]
        files.append(arch_dir / f"{package['name']}-{package['version']}-{package['release']}.{package['arch']}.rpm")
    _run(["rpm", "--root", str(root), "--dbpath", DBPATH, "-i", "--justdb", "--nodeps", "--noscripts",
          "--notriggers", "--ignorearch", "--ignoreos", "--replacepkgs", *map(str, files)])


def rpm_database(packages: list[dict[str, Any]], guest_root: Path) -> list[dict[str, Any]]:
    """Put an rpm-made ``rpmdb.sqlite`` holding ``packages`` into ``guest_root``; return the packages
    as ``rpm -qa`` reads them back (the fields of ``handlers.guestos.rpmheader.package_from_header``;
    None where rpm says (none))."""
    key = hashlib.sha256(json.dumps([packages, QUERY], sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"guestkit-rpmdb-{key}"
    if not (cache / "rpmdb.sqlite").exists():
        work = Path(tempfile.mkdtemp(prefix="rpmdb-"))
        try:
            _build(packages, work)
            done = work / "done"
            done.mkdir()
            shutil.copy(work / "root" / DBPATH.lstrip("/") / "rpmdb.sqlite", done)
            listing = _run(["rpm", "--root", str(work / "root"), "--dbpath", DBPATH, "-qa", "--qf", QUERY])
            (done / "packages.tsv").write_text(listing)
            try:
                done.rename(cache)
            except OSError:  # another process cached it meanwhile
                pass
        finally:
            shutil.rmtree(work, ignore_errors=True)
    target = guest_root / DBPATH.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache / "rpmdb.sqlite", target / "rpmdb.sqlite")
    return parse_query((cache / "packages.tsv").read_text())
