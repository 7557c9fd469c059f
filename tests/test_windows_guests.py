"""Windows guests read from their registry, through real jobs: a Windows Server 2022 image the tests
build (MBR, NTFS, hives written as Windows writes them) inspected in raw and qcow2 and compared field
by field with its ground truth; a guest whose hive has unapplied transaction logs is read as it
stands and said to be."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from tests.conftest import WorkerProcess, make_job, routed, serve_pool, session_scratch
from tests.guestdata_windows import make_windows_tree
from tests.imagebuild import build_image

POOL = f"windows-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    yield from serve_pool(tmp_path_factory, POOL)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("windows-guests")


def _inspect(base: Path, name: str, fmt: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    truth = make_windows_tree(base / f"{name}-root", **options)
    image = base / f"{name}.{fmt}"
    build_image(base / f"{name}-root", image, "windows", fmt)
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert result["status"] == "completed", result
    return result["data"], truth


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_windows_guest_is_read_field_by_field(worker: WorkerProcess, base: Path, fmt: str) -> None:
    report, truth = _inspect(base, f"win2022-{fmt}", fmt)
    assert report["os"] == truth["os"]
    assert report["timezone"] == truth["timezone"]
    assert report["packages"]["installed"] == truth["packages"]
    assert report["packages"]["count"] == len(truth["packages"]) and report["packages"]["format"] == "windows"
    assert report["services"] == truth["services"]
    assert report["users"] == truth["users"] and report["groups"] == truth["groups"]
    assert report["network"] == truth["network"]
    windows = report["windows"]
    assert {key: windows[key] for key in truth["windows"]} == truth["windows"]
    assert report["image"]["warnings"] == [] and windows["warnings"] == [] and report["errors"] == []
    assert report["storage"]["root_device"] == "/dev/sda1"


def test_a_hive_with_unapplied_logs_is_read_and_said(worker: WorkerProcess, base: Path) -> None:
    report, truth = _inspect(base, "win2022-dirty", "qcow2", dirty="SYSTEM")
    assert report["services"] == truth["services"]  # read as it stands
    (warning,) = report["image"]["warnings"]
    assert "/Windows/System32/config/SYSTEM" in warning and "most recent changes may be missing" in warning
    assert report["windows"]["warnings"] == [warning]


# --- hostile hives, read from a tree ------------------------------------------------------------
def _tree(tmp_path: Path, **limits: int):  # noqa: ANN202 - a DirectoryTree
    from app.plugin.limits import Limits
    from handlers.tree import DirectoryTree

    make_windows_tree(tmp_path)
    return DirectoryTree(tmp_path, Limits(**limits))


def test_a_hive_that_is_not_one_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    from handlers.guestos.windows import read_windows

    tree = _tree(tmp_path)
    (tmp_path / "Windows/System32/config/SOFTWARE").write_bytes(b"regf" + bytes(60) + b"\xff" * 5000)
    found = read_windows(tree)
    assert found["packages"]["installed"] == [] and found["os"]["name"] is None
    assert found["services"]  # SYSTEM is read all the same
    (warning,) = found["warnings"]
    assert warning.startswith("the registry hive /Windows/System32/config/SOFTWARE cannot be read")


def test_a_value_claiming_a_huge_size_reads_only_its_cell(tmp_path: Path) -> None:
    """A value node claiming a gigabyte of data in a cell of 40 bytes: libregf reads the cell, no more."""
    from handlers.guestos.windows import read_windows

    tree = _tree(tmp_path)
    hive = tmp_path / "Windows/System32/config/SOFTWARE"
    data = bytearray(hive.read_bytes())
    name = "Λογιστικό Πρόγραμμα".encode("utf-16-le") + b"\0\0"
    at = data.index(name) - 4  # the cell holding the display name; its value node points at it
    vk = data.index(b"vk" + len(b"DisplayName").to_bytes(2, "little") + (len(name)).to_bytes(4, "little")
                    + (at - 4096).to_bytes(4, "little"))
    data[vk + 4:vk + 8] = (1 << 30).to_bytes(4, "little")
    hive.write_bytes(bytes(data))
    found = read_windows(tree)
    assert "Λογιστικό Πρόγραμμα" in [app["name"] for app in found["packages"]["installed"]]


def test_value_data_larger_than_the_bound_is_never_read() -> None:
    """What libregf would hand over whole (big data cells) is refused by size before it is read."""
    from handlers.guestos.windows.hives import MAX_VALUE_BYTES, REG_SZ, decode

    class Huge:
        data_size, type = MAX_VALUE_BYTES + 1, REG_SZ

        @property
        def data(self) -> bytes:
            raise AssertionError("read")

    assert decode(Huge()) is None


def test_subkeys_beyond_max_entries_are_cut_and_said(tmp_path: Path) -> None:
    from handlers.guestos.windows import read_windows

    tree = _tree(tmp_path, max_entries=3)
    found = read_windows(tree)
    assert len(found["packages"]["installed"]) <= 3 + 2  # three keys of each Uninstall list looked at
    assert {"file": "/Windows/System32/config/SOFTWARE\\Uninstall", "limit": "GUESTKIT_MAX_ENTRIES", "value": 3,
            "found": 4} in tree.truncated


def test_a_windows_image_is_profiled_from_its_registry(worker: WorkerProcess, base: Path) -> None:
    """A real profile job on an NTFS image: the Windows checks read its hives, the Linux ones do not apply."""
    make_windows_tree(base / "win-profile-root", guest_enabled=True,
                      registry={"SYSTEM": {"ControlSet001/Control/Lsa": {"NoLMHash": 0}}})
    image = base / "win-profile.qcow2"
    build_image(base / "win-profile-root", image, "windows", "qcow2")
    result = api.submit(routed(make_job("guestkit.profile", {"image": {"path": str(image)}}), POOL)).result(
        timeout=120)
    assert result["status"] == "completed", result
    report = result["data"]
    found = {f["id"]: f["evidence"] for f in report["findings"]}
    assert {"WIN-001", "WIN-002", "WIN-004", "WIN-006", "WIN-007", "WIN-009", "WIN-013"} == set(found)
    assert found["WIN-007"] == {"file": "/Windows/System32/config/SYSTEM", "line": None, "hive": "SYSTEM",
                                "key": "ControlSet001\\Control\\Lsa", "value": "NoLMHash", "data": 0,
                                "text": "SYSTEM\\ControlSet001\\Control\\Lsa\\NoLMHash = 0 (0 stores them; the "
                                        "default is 1)"}
    assert {"WIN-003", "WIN-005", "WIN-008", "WIN-010", "WIN-011", "WIN-012"} <= set(report["passed"])
    assert not any(n["id"].startswith("WIN-") for n in report["not_applicable"])
    assert report["errors"] == [] and report["summary"]["not_applicable"] == len(report["not_applicable"]) > 40
