"""Every OS parser against the ground truth of the Debian-, RHEL-, SUSE-, Alpine- and Arch-like trees,
field by field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import handlers.guestos as guestos
from handlers.guestos.storage import read_fstab_entries
from handlers.tree import DirectoryTree
from tests import guestdata, guestdata_alpine_arch

MAKERS = {**guestdata.MAKERS, **guestdata_alpine_arch.MAKERS}


@pytest.fixture(scope="module", params=sorted(MAKERS))
def guest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[DirectoryTree, dict]:
    root = tmp_path_factory.mktemp(request.param)
    truth = MAKERS[request.param](root)
    return DirectoryTree(root), truth


def _security(tree: DirectoryTree) -> dict[str, Any]:
    return guestos.read_security(tree, guestos.read_services(tree))


READERS: dict[str, Callable[[DirectoryTree], Any]] = {
    "os": guestos.detect_os,
    "hostname": guestos.read_hostname,
    "machine_id": guestos.read_machine_id,
    "users": guestos.read_users,
    "groups": guestos.read_groups,
    "packages": lambda tree: guestos.read_packages(tree)["packages"],
    "services": guestos.read_services,
    "network": guestos.read_network,
    "security": _security,
    "kernels": guestos.read_kernels,
    "cloud_init": guestos.read_cloud_init,
    "cron": guestos.read_cron,
    "timezone": guestos.read_timezone,
    "sysctl": lambda tree: {key: s.value for key, s in guestos.read_sysctl(tree).items()},
    "fstab": lambda tree: [(e.spec, e.mountpoint, e.fstype, ",".join(e.options), e.dump, e.passno)
                           for e in read_fstab_entries(tree)],
}


def _compare(got: Any, want: Any, where: str) -> None:
    """Field-by-field comparison, so a failure names the exact field."""
    if isinstance(want, dict) and isinstance(got, dict):
        assert sorted(got) == sorted(want), f"{where}: keys differ"
        for key in want:
            _compare(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), f"{where}: {len(got)} items, want {len(want)}: {got!r}"
        for index, (item_got, item_want) in enumerate(zip(got, want, strict=True)):
            _compare(item_got, item_want, f"{where}[{index}]")
    else:
        assert got == want, f"{where}: got {got!r}, want {want!r}"


@pytest.mark.parametrize("section", sorted(READERS))
def test_parser_matches_ground_truth(guest: tuple[DirectoryTree, dict], section: str) -> None:
    tree, truth = guest
    _compare(READERS[section](tree), truth[section], section)


def test_login_defs(guest: tuple[DirectoryTree, dict]) -> None:
    tree, truth = guest
    settings = guestos.read_login_defs(tree)
    for key, value in truth["login_defs"].items():
        assert settings[key].value == value
        assert settings[key].file == "/etc/login.defs" and settings[key].line >= 1


def test_package_database_source(guest: tuple[DirectoryTree, dict]) -> None:
    tree, truth = guest
    result = guestos.read_packages(tree)
    assert result["format"] == truth["os"]["package_format"]
    assert result["source"] == truth["package_database"]
    assert result["warning"] is None
