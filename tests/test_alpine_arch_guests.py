"""Alpine (apk, OpenRC, busybox, musl) and Arch (pacman, systemd) guests on ext4, in raw and qcow2:
inspected through real jobs and compared field by field with the ground truth of the tree each image
was built from, and profiled: each check applies, or not, as the guest it runs on says; a root file
system with no init and no kernel (a container's) gets every init- and kernel-bound check not
applicable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from handlers.guestos.checks import CATALOGUE
from tests.conftest import WorkerProcess, make_job, routed, serve_pool, session_scratch
from tests.guestdata import assert_report_matches
from tests.guestdata_alpine_arch import ALPINE_KERNEL, MAKERS
from tests.imagebuild import build_image

POOL = f"alparch-{uuid.uuid4().hex[:6]}"
GUESTS = {"alpine-raw": ("alpine", "raw"), "alpine-qcow2": ("alpine", "qcow2"), "arch-qcow2": ("arch", "qcow2"),
          "arch-raw": ("arch", "raw")}
NO_SYSTEMD = "the guest boots openrc, not systemd (/sbin/init -> /bin/busybox; /sbin/openrc)"
#: guest -> check id -> "finding", "passed", or the not-applicable reason
PROFILE_TRUTH: dict[str, dict[str, str]] = {
    "alpine": {
        "SVC-004": NO_SYSTEMD, "PERF-005": NO_SYSTEMD,
        "SVC-002": "passed",  # busybox crond in the default runlevel
        "SVC-003": "finding",  # auditd installed, in no runlevel
        "FW-001": "passed",  # iptables rules saved, the service in the default runlevel
        "KRN-006": "passed",  # /etc/sysctl.d/00-alpine.conf turns SYN cookies on
        "KRN-008": "finding",  # the lts kernel is built without CONFIG_SECURITY_DMESG_RESTRICT
        "PERF-004": "passed",
        "ACCT-005": "sudo is not on this guest (no /etc/sudoers)",
        "PASS-001": "login.defs is not on this guest (no /etc/login.defs)",
        "PAM-001": "a PAM password stack is not on this guest (no /etc/pam.d/system-auth / "
                   "/etc/pam.d/common-password)",
        "PERF-003": "tuned is not installed",
        "SSH-001": "passed",
    },
    "arch": {
        "SVC-004": "finding",  # systemd, ctrl-alt-del.target not masked
        "PERF-005": "no /etc/systemd/journald.conf",
        "SVC-002": "passed", "SVC-003": "finding", "FW-001": "passed",
        "KRN-008": "passed",  # linux's configuration (kept by linux-headers) restricts dmesg
        "ACCT-005": "passed", "PASS-001": "finding", "PASS-004": "passed",
        "SSH-001": "passed", "SSH-003": "passed",
        "PERF-003": "tuned is not installed",
    },
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from serve_pool(tmp_path_factory, POOL)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("alparch-guests")


def _run(operation: str, image: Path) -> dict[str, Any]:
    result = api.submit(routed(make_job(operation, {"image": {"path": str(image)}}), POOL)).result(timeout=120)
    assert result["status"] == "completed", result
    return result["data"]


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_inspect_and_profile_read_the_guest(worker: WorkerProcess, base: Path, name: str) -> None:
    distro, fmt = GUESTS[name]
    truth = MAKERS[distro](base / f"{name}-root")
    image = base / f"{name}.{fmt}"
    built = build_image(base / f"{name}-root", image, layout="plain", fmt=fmt)
    report = _run("guestkit.inspect", image)
    assert_report_matches(report, truth)
    assert report["packages"]["source"] == truth["package_database"] and report["packages"]["warning"] is None
    assert report["storage"]["mountpoints"] == built["mountpoints"] and report["errors"] == []

    profile = _run("guestkit.profile", image)
    outcome = {f["id"]: "finding" for f in profile["findings"]}
    outcome |= dict.fromkeys(profile["passed"], "passed")
    outcome |= {n["id"]: n["reason"] for n in profile["not_applicable"]}
    assert {check: outcome.get(check) for check in PROFILE_TRUTH[distro]} == PROFILE_TRUTH[distro]
    assert profile["errors"] == []
    if distro == "alpine":
        (dmesg,) = [f for f in profile["findings"] if f["id"] == "KRN-008"]
        assert dmesg["evidence"]["text"] == ("kernel.dmesg_restrict not set (kernel default with "
                                             f"CONFIG_SECURITY_DMESG_RESTRICT=n in /boot/config-{ALPINE_KERNEL}: 0)")


def test_a_guest_with_no_init_and_no_kernel_is_profiled_as_such(worker: WorkerProcess, base: Path) -> None:
    root = base / "container-root"
    for path, text in {"etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n", "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
                       "lib/apk/db/installed": "P:musl\nV:1.2.4-r4\nA:x86_64\n\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    image = base / "container.qcow2"
    build_image(root, image, layout="plain", fmt="qcow2")
    profile = _run("guestkit.profile", image)
    reasons = {n["id"]: n["reason"] for n in profile["not_applicable"]}
    bound = {item.id: item.subject.kind for item in CATALOGUE if item.subject.kind in ("init", "kernel")}
    assert {check: reasons.get(check, "applied")[:28] for check in bound} == {
        check: "the guest boots no init syst" if kind == "init" else "no kernel is installed (no /"
        for check, kind in bound.items()}
    assert _run("guestkit.inspect", image)["services"]["init"]["name"] is None
