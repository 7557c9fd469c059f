"""guestkit.inspect: the pure report over directory trees, and the handler over real disk images."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.inspect import InspectHandler, inspect_tree
from handlers.payloads import InspectOptions, InspectPayloadV1
from handlers.tree import DirectoryTree
from tests.guestdata import MAKERS, FakeContext, assert_report_matches, make_debian_tree, make_rhel_tree
from tests.imagebuild import build_image

SECTIONS = {"include_packages": ["packages"], "include_services": ["services", "scheduled_tasks"],
            "include_users": ["users", "groups"], "include_network": ["network"],
            "include_security": ["security"], "include_storage": ["storage"], "include_databases": ["databases"],
            "deep_scan": ["sysctl"]}
PHASES = ["validation", "disk_attach", "disk_inspection", "os_detection", "package_scan", "service_scan",
          "security_scan", "result_generation", "cleanup"]


@pytest.mark.parametrize("distro", sorted(MAKERS))
def test_inspect_tree_matches_ground_truth(tmp_path: Path, distro: str) -> None:
    truth = MAKERS[distro](tmp_path)
    report = inspect_tree(DirectoryTree(tmp_path))
    assert_report_matches(report, truth)
    assert [(e["spec"], e["mountpoint"], e["fstype"], ",".join(e["options"]), e["dump"], e["passno"])
            for e in report["storage"]["fstab"]] == truth["fstab"]
    assert report["databases"] == [] and report["errors"] == []
    for key, value in truth["sysctl"].items():
        assert report["sysctl"][key] == value
    json.dumps(report)  # the report is JSON as it is


@pytest.mark.parametrize("option", sorted(SECTIONS))
def test_each_include_option_switches_its_section(tmp_path: Path, option: str) -> None:
    make_rhel_tree(tmp_path)
    tree = DirectoryTree(tmp_path)
    full = inspect_tree(tree)
    reduced = inspect_tree(tree, InspectOptions(**{option: False}))
    assert set(full) - set(reduced) == set(SECTIONS[option])
    for key in reduced:
        assert reduced[key] == full[key]


def test_all_options_off_keeps_core_facts(tmp_path: Path) -> None:
    truth = make_debian_tree(tmp_path)
    report = inspect_tree(DirectoryTree(tmp_path), InspectOptions(**{name: False for name in SECTIONS}))
    assert sorted(report) == ["cloud_init", "errors", "kernels", "machine_id", "os", "timezone", "truncated"]
    assert report["os"]["hostname"] == truth["hostname"]


def test_a_failing_parser_loses_only_its_section(tmp_path: Path) -> None:
    truth = make_debian_tree(tmp_path)

    class BrokenPasswd(DirectoryTree):
        def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
            if path == "/etc/passwd":
                raise OSError("I/O error reading /etc/passwd")
            return super().read_bytes(path, limit)

    report = inspect_tree(BrokenPasswd(tmp_path))
    assert report["users"] is None
    assert report["errors"] == [{"section": "users", "error": "OSError: I/O error reading /etc/passwd"}]
    assert report["groups"] == truth["groups"] and report["packages"]["installed"] == truth["packages"]


def test_databases_detected_from_packages(tmp_path: Path) -> None:
    make_debian_tree(tmp_path)
    status = tmp_path / "var/lib/dpkg/status"
    status.write_text(status.read_text() + "Package: postgresql-15\nStatus: install ok installed\n"
                      "Architecture: amd64\nVersion: 15.6-0+deb12u1\n\n")
    (tmp_path / "var/lib/postgresql/15/main").mkdir(parents=True)
    report = inspect_tree(DirectoryTree(tmp_path))
    assert report["databases"] == [{"engine": "postgresql", "packages": ["postgresql-15"],
                                     "data_dir": "/var/lib/postgresql"}]


# ---------------------------------------------------------------------- the handler over real images


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict, dict]]:
    """name -> (image path, tree truth, image truth): Debian on a plain MBR qcow2, RHEL on GPT with
    separate /boot and EFI partitions as vmdk, RHEL on LVM as vdi."""
    base = tmp_path_factory.mktemp("inspect-images")
    built = {}
    for name, layout, fmt in (("debian", "plain", "qcow2"), ("rhel", "gpt-boot-efi", "vmdk"),
                              ("rhel-lvm", "lvm", "vdi")):
        root = base / f"{name}-root"
        root.mkdir()
        truth = MAKERS[name.split("-")[0]](root)
        image = base / f"{name}.{fmt}"
        built[name] = (image, truth, build_image(root, image, layout=layout, fmt=fmt))
    return built


def _ctx(tmp_path: Path, allowed: Path) -> FakeContext:
    return FakeContext(work_dir=tmp_path, allowed_dirs=[allowed])


@pytest.mark.parametrize("distro", ["debian", "rhel", "rhel-lvm"])
def test_handler_inspects_image(images: dict, tmp_path: Path, distro: str) -> None:
    image, truth, image_truth = images[distro]
    ctx = _ctx(tmp_path, image.parent)
    checksum = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    payload = InspectPayloadV1.model_validate({"image": {"path": str(image), "checksum": checksum}})
    started = time.perf_counter()
    result = InspectHandler().execute(ctx, payload)
    elapsed = time.perf_counter() - started
    report = result.data
    assert_report_matches(report, truth)
    storage = report["storage"]
    assert storage["mountpoints"] == image_truth["mountpoints"]
    assert [(p["device"], p["start_bytes"], p["size_bytes"]) for p in storage["partitions"]] == [
        (p["device"], p["start_bytes"], p["size_bytes"]) for p in image_truth["partitions"]]
    for found, want in zip(storage["filesystems"], image_truth["filesystems"], strict=True):
        assert {k: found[k] for k in ("device", "type", "uuid", "label")} == {
            k: want[k] for k in ("device", "type", "uuid", "label")}
    assert {e["mountpoint"] for e in storage["fstab"]} >= set(image_truth["mountpoints"])
    if image_truth.get("lvm"):
        assert storage["lvm"]
    assert report["image"]["format"] == image.suffix[1:]
    phases = [phase for phase, _, _ in ctx.progress]
    assert [p for p in PHASES if p in phases] == PHASES
    assert sorted(phases, key=PHASES.index) == phases, "phases out of order"
    percents = [percent for _, percent, _ in ctx.progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert elapsed < 10, elapsed


def test_handler_writes_destination(images: dict, tmp_path: Path) -> None:
    image, truth, _ = images["debian"]
    ctx = FakeContext(work_dir=tmp_path, allowed_dirs=[image.parent, tmp_path])
    destination = tmp_path / "out" / "report.json"
    payload = InspectPayloadV1.model_validate({
        "image": {"path": str(image)}, "options": {"include_packages": False},
        "output": {"destination": str(destination)}})
    result = InspectHandler().execute(ctx, payload)
    assert result.primary == str(destination) and result.artifacts == [str(destination)]
    written = json.loads(destination.read_text())
    assert written == json.loads(json.dumps(result.data))
    assert "packages" not in written and written["os"]["hostname"] == truth["hostname"]


def test_handler_refuses_paths_outside_allowed_dirs(images: dict, tmp_path: Path) -> None:
    image, _, _ = images["debian"]
    ctx = _ctx(tmp_path, tmp_path)
    with pytest.raises(JobError) as caught:
        InspectHandler().execute(ctx, InspectPayloadV1.model_validate({"image": {"path": str(image)}}))
    assert caught.value.code == ErrorCode.PATH_NOT_ALLOWED
    ctx = _ctx(tmp_path, image.parent)
    payload = InspectPayloadV1.model_validate({"image": {"path": str(image)},
                                               "output": {"destination": "/etc/guestkit-report.json"}})
    with pytest.raises(JobError) as caught:
        InspectHandler().execute(ctx, payload)
    assert caught.value.code == ErrorCode.PATH_NOT_ALLOWED
    assert ctx.progress == []  # refused before any work started


def test_handler_checksum_mismatch(images: dict, tmp_path: Path) -> None:
    image, _, _ = images["debian"]
    payload = InspectPayloadV1.model_validate({"image": {"path": str(image), "checksum": "sha256:" + "0" * 64}})
    with pytest.raises(JobError) as caught:
        InspectHandler().execute(_ctx(tmp_path, image.parent), payload)
    assert caught.value.code == ErrorCode.IMAGE_CHECKSUM_MISMATCH


def test_handler_honours_cancellation(images: dict, tmp_path: Path) -> None:
    image, _, _ = images["debian"]
    ctx = _ctx(tmp_path, image.parent)
    ctx.cancelled = True
    with pytest.raises(JobError) as caught:
        InspectHandler().execute(ctx, InspectPayloadV1.model_validate({"image": {"path": str(image)}}))
    assert caught.value.code == ErrorCode.CANCELLED


def test_handler_size_limit(images: dict, tmp_path: Path) -> None:
    image, truth, _ = images["debian"]
    ctx = _ctx(tmp_path, image.parent)
    ctx.max_disk_size_gb = 1
    report = InspectHandler().execute(ctx, InspectPayloadV1.model_validate({"image": {"path": str(image)}})).data
    assert report["os"]["hostname"] == truth["hostname"]
    big = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "2G"], check=True)
    ctx = _ctx(tmp_path, tmp_path)
    ctx.max_disk_size_gb = 1
    with pytest.raises(JobError) as caught:
        InspectHandler().execute(ctx, InspectPayloadV1.model_validate({"image": {"path": str(big)}}))
    assert caught.value.code == ErrorCode.UNSUPPORTED_IMAGE


def test_handler_class_attributes() -> None:
    assert InspectHandler.operation == "guestkit.inspect" and InspectHandler.features == ("inspect",)
    assert InspectHandler.payload_models == {1: InspectPayloadV1}
