"""guestkit.compare between two guests with known differences."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.compare import CompareHandler, compare_trees
from handlers.payloads import CompareOptions, ComparePayloadV1
from handlers.tree import DirectoryTree
from tests.guestdata import FakeContext, encoded_package, make_debian_tree, make_rhel_tree, write_rpmdb
from tests.imagebuild import build_image


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def _make_pair(base: Path) -> tuple[Path, Path]:
    """A Debian baseline and a target changed in known ways."""
    a, b = base / "a", base / "b"
    make_debian_tree(a)
    shutil.copytree(a, b, symlinks=True)
    status = b / "var/lib/dpkg/status"
    text = status.read_text()
    ufw = text.index("Package: ufw\n")
    status.write_text(text[:ufw] + text[text.index("\n\n", ufw) + 2:])
    _edit(status, "Version: 1:9.2p1-2+deb12u2\nDepends: libc6 (>= 2.34)\nConffiles",
          "Version: 1:9.2p1-2+deb12u3\nDepends: libc6 (>= 2.34)\nConffiles")
    with status.open("a") as out:
        out.write("Package: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22.1-9\n\n")
    _edit(b / "etc/passwd", "carol:x:1002:1002:Carol,,,:/home/carol:/usr/bin/zsh\n",
          "dave:x:1003:1003::/home/dave:/bin/bash\n")
    _edit(b / "etc/passwd", "bob:x:1001:1001:Bob,,,:/home/bob:/bin/bash", "bob:x:1001:1001:Bob,,,:/home/bob:/bin/zsh")
    _edit(b / "etc/shadow", "bob::", "bob:$6$new$hash:")
    _edit(b / "etc/group", "sudo:x:27:alice", "sudo:x:27:alice,dave")
    (b / "etc/systemd/system/multi-user.target.wants/cron.service").unlink()
    os.symlink("/usr/lib/systemd/system/nginx.service", b / "etc/systemd/system/multi-user.target.wants/nginx.service")
    os.symlink("/dev/null", b / "etc/systemd/system/ctrl-alt-del.target")
    _edit(b / "etc/ssh/sshd_config", "PasswordAuthentication no\n", "PasswordAuthentication no\nPermitRootLogin no\n")
    (b / "etc/nginx").mkdir()
    (b / "etc/nginx/nginx.conf").write_text("worker_processes auto;\n")
    (b / "etc/timezone").unlink()
    (b / "etc/localtime").unlink()
    os.symlink("/usr/share/zoneinfo/UTC", b / "etc/localtime")
    (a / "etc/ld.so.cache").write_bytes(b"ld.so-1.7.0\0\0\x01")
    (b / "etc/ld.so.cache").write_bytes(b"ld.so-1.7.0\0\0\x02")
    (b / "opt/app/bin").mkdir(parents=True)
    (b / "opt/app/bin/tool").write_bytes(b"#!/bin/sh\n")
    (b / "boot/config-6.1.0-18-amd64").unlink()
    return a, b


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return _make_pair(tmp_path)


def test_compare_packages(pair: tuple[Path, Path]) -> None:
    report = compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]))
    packages = report["packages"]
    assert [p["name"] for p in packages["added"]] == ["nginx"]
    assert packages["added"][0] == {"name": "nginx", "epoch": None, "version": "1.22.1", "release": "9",
                                    "arch": "amd64"}
    assert [(p["name"], p["arch"]) for p in packages["removed"]] == [("ufw", "all")]
    assert packages["changed"] == [{"name": "openssh-server", "arch": "amd64", "from": "1:9.2p1-2+deb12u2",
                                    "to": "1:9.2p1-2+deb12u3"}]


def test_compare_users_groups_services(pair: tuple[Path, Path]) -> None:
    report = compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]))
    users = report["users"]
    assert users["added"] == ["dave"] and users["removed"] == ["carol"]
    assert users["changed"] == [{"name": "bob", "changes": {"shell": {"from": "/bin/bash", "to": "/bin/zsh"},
                                                            "password": {"from": "empty", "to": "set"}}}]
    assert report["groups"]["changed"] == [{"name": "sudo", "changes": {
        "members": {"from": ["alice"], "to": ["alice", "dave"]}}}]
    services = report["services"]
    assert services["enabled"] == ["nginx.service"] and services["disabled"] == ["cron.service"]
    assert services["masked"] == ["ctrl-alt-del.target"] and services["default_target"] is None


def test_compare_config_files_with_diffs(pair: tuple[Path, Path]) -> None:
    report = compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]))
    config = report["config"]
    assert config["added"] == ["/etc/nginx", "/etc/nginx/nginx.conf",
                               "/etc/systemd/system/ctrl-alt-del.target",
                               "/etc/systemd/system/multi-user.target.wants/nginx.service"]
    assert config["removed"] == ["/etc/systemd/system/multi-user.target.wants/cron.service", "/etc/timezone"]
    modified = {entry["path"]: entry for entry in config["modified"]}
    assert sorted(modified) == ["/etc/group", "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/shadow",
                                "/etc/ssh/sshd_config"]
    assert modified["/etc/ssh/sshd_config"]["diff"] == (
        "--- a/etc/ssh/sshd_config\n+++ b/etc/ssh/sshd_config\n@@ -4,6 +4,7 @@\n #PermitRootLogin prohibit-password\n"
        " #MaxAuthTries 6\n PasswordAuthentication no\n+PermitRootLogin no\n KbdInteractiveAuthentication no\n"
        " UsePAM yes\n X11Forwarding yes\n")
    assert "+dave:x:1003" in modified["/etc/passwd"]["diff"]
    assert modified["/etc/shadow"]["redacted"] is True and modified["/etc/shadow"]["diff"] is None
    assert modified["/etc/ld.so.cache"]["binary"] is True
    assert modified["/etc/localtime"]["link"] == {"from": "/usr/share/zoneinfo/Europe/Berlin",
                                                   "to": "/usr/share/zoneinfo/UTC"}


def test_compare_file_listings(pair: tuple[Path, Path]) -> None:
    report = compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]))
    files = report["files"]
    assert files["/opt"]["added"] == ["/opt/app", "/opt/app/bin", "/opt/app/bin/tool"]
    assert files["/boot"]["removed"] == ["/boot/config-6.1.0-18-amd64"]
    assert all("diff" not in entry for part in files.values() for entry in part["modified"])
    assert report["summary"]["packages_added"] == 1 and report["summary"]["total"] > 10


def test_identical_trees_and_timestamps(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_debian_tree(a)
    shutil.copytree(a, b, symlinks=True)
    os.utime(b / "etc/hostname", (1_000_000, 1_000_000))
    quiet = compare_trees(DirectoryTree(a), DirectoryTree(b))
    assert quiet["summary"]["total"] == 0
    strict = compare_trees(DirectoryTree(a), DirectoryTree(b), CompareOptions(ignore_timestamps=False))
    (entry,) = [e for e in strict["config"]["modified"] if e["path"] == "/etc/hostname"]
    assert entry["content_changed"] is False and entry["metadata"]["mtime"]["to"] == 1_000_000


def test_options_switch_sections(pair: tuple[Path, Path]) -> None:
    options = CompareOptions(compare_packages=False, compare_config=False, compare_files=False)
    assert compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]), options) == {
        "os": {"baseline": "linux", "target": "linux"}, "summary": {"total": 0}, "truncated": []}
    only = compare_trees(DirectoryTree(pair[0]), DirectoryTree(pair[1]), CompareOptions(compare_config=False,
                                                                                       compare_files=False))
    assert sorted(only) == ["os", "packages", "summary", "truncated"]


def test_rpm_installonly_kernels_compare_as_sets(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    truth = make_rhel_tree(a)
    make_rhel_tree(b)
    packages: list[dict[str, Any]] = [p for p in truth["packages"] if p["version"] != "fd431d51"]
    newer = {"name": "kernel-core", "epoch": None, "version": "5.14.0", "release": "427.13.1.el9_4", "arch": "x86_64"}
    write_rpmdb(b, [*packages, newer])
    report = compare_trees(DirectoryTree(a), DirectoryTree(b), CompareOptions(compare_config=False,
                                                                              compare_files=False))
    assert report["packages"]["added"] == [encoded_package(newer)]
    assert [p["name"] for p in report["packages"]["removed"]] == ["gpg-pubkey"]
    assert report["packages"]["changed"] == []


def test_secrets_are_never_diffed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_rhel_tree(a)
    shutil.copytree(a, b, symlinks=True)
    keyfile = b / "etc/NetworkManager/system-connections/eth0.nmconnection"
    keyfile.write_text(keyfile.read_text() + "[wifi-security]\npsk=hunter2\n")
    (b / "etc/ssh/ssh_host_ed25519_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    report = compare_trees(DirectoryTree(a), DirectoryTree(b), CompareOptions(compare_files=False))
    (entry,) = report["config"]["modified"]
    assert entry["redacted"] is True and entry["diff"] is None
    assert "hunter2" not in repr(report) and report["config"]["added"] == ["/etc/ssh/ssh_host_ed25519_key"]


def _images(tmp_path: Path, a: Path, b: Path, layout: str) -> tuple[Path, dict[str, Any]]:
    """The two trees as a qcow2 baseline and a raw target, and a payload comparing them into diff.json."""
    images = tmp_path / "images"
    images.mkdir()
    build_image(a, images / "a.qcow2", layout=layout, fmt="qcow2")
    build_image(b, images / "b.raw", layout=layout, fmt="raw")
    return images, {"baseline": {"path": str(images / "a.qcow2")}, "target": {"path": str(images / "b.raw")},
                    "output": {"destination": str(images / "diff.json")}}


def test_handler_compares_images(tmp_path: Path) -> None:
    images, data = _images(tmp_path, *_make_pair(tmp_path), "plain")
    ctx = FakeContext(work_dir=tmp_path, allowed_dirs=[images])
    payload = ComparePayloadV1.model_validate(data)
    result = CompareHandler().execute(ctx, payload)
    report = result.data
    assert [p["name"] for p in report["packages"]["added"]] == ["nginx"]
    assert report["users"]["added"] == ["dave"]
    assert "/etc/nginx/nginx.conf" in report["config"]["added"]
    assert report["baseline"]["format"] == "qcow2" and report["target"]["format"] == "raw"
    assert (images / "diff.json").exists() and ctx.progress[-1][:2] == ("cleanup", 100)

    outside = FakeContext(work_dir=tmp_path, allowed_dirs=[images / "nothing"])
    with pytest.raises(JobError) as caught:
        CompareHandler().execute(outside, payload)
    assert caught.value.code == ErrorCode.PATH_NOT_ALLOWED and outside.progress == []


def test_compare_openrc_runlevels_and_the_init_system(tmp_path: Path) -> None:
    from tests.guestdata_alpine_arch import make_alpine_tree

    before, after = tmp_path / "before", tmp_path / "after"
    make_alpine_tree(before)
    make_alpine_tree(after)
    (after / "etc/runlevels/default/crond").unlink()  # rc-update del crond
    (after / "etc/runlevels/boot/sshd").symlink_to("/etc/init.d/sshd")  # rc-update add sshd boot
    (after / "etc/runlevels/default/nginx").symlink_to("/etc/init.d/nginx")
    for openrc in ("sbin/openrc", "sbin/openrc-run"):  # and OpenRC gone: busybox init runs its rc scripts alone
        (after / openrc).unlink()
    services = compare_trees(DirectoryTree(before), DirectoryTree(after))["services"]
    assert services["init"] == {"from": "openrc", "to": "sysvinit"}
    assert services["openrc"] == {"enabled": ["nginx"], "disabled": ["crond"],
                                  "changed": [{"name": "sshd", "from": ["default"], "to": ["boot", "default"]}]}
    assert services["sysv"] == {"enabled": [], "disabled": [], "changed": []} and services["enabled"] == []


# --- Windows guests ------------------------------------------------------------------------------------
HOSTS = "Windows/System32/drivers/etc/hosts"
WINDOWS_DRIFT = {
    "SOFTWARE": {"WOW6432Node/Microsoft/Windows/CurrentVersion/Uninstall/Notepad++": {"DisplayVersion": "8.6.4"},
                 "Microsoft/Windows/CurrentVersion/Uninstall/7-Zip": {"DisplayName": "7-Zip 24.07 (x64)",
                                                                      "DisplayVersion": "24.07"},
                 "Microsoft/Windows/CurrentVersion/Uninstall/Git_is1": {"DisplayName": "Git",
                                                                         "DisplayVersion": "2.43.0"}},
    "SYSTEM": {"ControlSet001/Services/RemoteRegistry": {"Start": 2},
               "ControlSet001/Services/Updater": {"DisplayName": "Updater", "Start": 2, "Type": 0x10,
                                                   "ImagePath": "C:\\Users\\Public\\updater.exe",
                                                   "ObjectName": "LocalSystem"}},
}


def _windows_pair(base: Path) -> tuple[Path, Path]:
    """A Windows Server baseline and a drifted copy: two applications upgraded and one installed, a service
    turned on and one added, the Guest account enabled, the hosts file changed."""
    from tests.guestdata_windows import make_windows_tree

    a, b = base / "win-a", base / "win-b"
    make_windows_tree(a)
    make_windows_tree(b, registry=WINDOWS_DRIFT, guest_enabled=True)
    for root, extra in ((a, ""), (b, "10.9.9.9\tupdates.example.net\n")):
        (root / HOSTS).parent.mkdir(parents=True)
        (root / HOSTS).write_text("127.0.0.1\tlocalhost\n" + extra)
    return a, b


def test_compare_windows_guests_applications_services_users(tmp_path: Path) -> None:
    a, b = _windows_pair(tmp_path)
    report = compare_trees(DirectoryTree(a), DirectoryTree(b))
    assert report["os"] == {"baseline": "windows", "target": "windows"}
    packages = report["packages"]
    assert [(p["name"], p["version"], p["arch"]) for p in packages["added"]] == [("Git", "2.43.0", "x64")]
    assert packages["removed"] == []
    assert packages["changed"] == [  # by uninstall key: an upgrade that renames the application is a change
        {"name": "7-Zip 24.07 (x64)", "arch": "x64", "from": "23.01", "to": "24.07", "key": "7-Zip",
         "from_name": "7-Zip 23.01 (x64)"},
        {"name": "Notepad++ (32-bit x86)", "arch": "x86", "from": "8.6.2", "to": "8.6.4", "key": "Notepad++"}]
    services = report["services"]
    assert services["added"] == ["Updater"] and services["removed"] == []
    assert services["changed"] == [{"name": "RemoteRegistry",
                                    "changes": {"start_type": {"from": "disabled", "to": "automatic"}}}]
    assert report["users"] == {"added": [], "removed": [], "changed": [
        {"name": "Guest", "changes": {"disabled": {"from": True, "to": False}}}]}
    assert report["groups"] == {"added": [], "removed": [], "changed": []}
    hosts = report["config"]["modified"]
    assert [entry["path"] for entry in hosts] == ["/" + HOSTS]
    assert "+10.9.9.9\tupdates.example.net" in hosts[0]["diff"]
    assert report["summary"]["packages_added"] == 1 and report["summary"]["services_changed"] == 2
    assert report["summary"]["users_changed"] == 1


def test_compare_a_linux_guest_with_a_windows_one_by_name(tmp_path: Path) -> None:
    from tests.guestdata_windows import make_windows_tree

    make_debian_tree(tmp_path / "linux")
    make_windows_tree(tmp_path / "windows")
    report = compare_trees(DirectoryTree(tmp_path / "linux"), DirectoryTree(tmp_path / "windows"))
    assert report["os"] == {"baseline": "linux", "target": "windows"}
    assert "Administrator" in report["users"]["added"] and "root" in report["users"]["removed"]
    assert "WinDefend" in report["services"]["added"] and report["users"]["changed"] == []
    assert any(p["name"] == "7-Zip 23.01 (x64)" for p in report["packages"]["added"])


def test_handler_compares_windows_images(tmp_path: Path) -> None:
    images, data = _images(tmp_path, *_windows_pair(tmp_path), "windows")
    report = CompareHandler().execute(FakeContext(work_dir=tmp_path, allowed_dirs=[images]),
                                      ComparePayloadV1.model_validate(data)).data
    assert report["os"] == {"baseline": "windows", "target": "windows"}
    assert [p["name"] for p in report["packages"]["added"]] == ["Git"]
    assert report["services"]["added"] == ["Updater"] and report["users"]["changed"][0]["name"] == "Guest"
    assert [entry["path"] for entry in report["config"]["modified"]] == ["/" + HOSTS]
