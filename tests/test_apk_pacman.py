"""Alpine's apk and Arch's pacman package databases, read from files in their real formats."""

from __future__ import annotations

from pathlib import Path

from handlers.guestos.apkdb import parse_apk_installed, split_apk_version
from handlers.guestos.common import split_epoch_version
from handlers.guestos.packages import format_version, read_packages
from handlers.guestos.pacmandb import package_from_desc
from handlers.tree import DirectoryTree

# two packages as apk-tools 2 writes them (Alpine 3.19), file lines included
APK_INSTALLED = """\
C:Q1Rn4ke3mCEcx8ZxOiNyqtIQZtgTc=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1697712355
c:7ba6f5a3d3f2d6ed61d5f3f8a7a92b0bd61d31a1
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Yx2cK6Rn4ke3mCEcx8ZxOiNyqtI=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1cZD2R2+yV6tWYRWqpx/jR6a7aH8=
P:busybox
V:1.36.1-r15
A:x86_64
S:509854
I:950272
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1700233020
c:0ea2a8b5fa0f2f0bc8bf4bd15b1d2d1da8e3bc1d
D:so:libc.musl-x86_64.so.1
F:bin
R:busybox
a:0:0:755
Z:Q1d6F9H4KY8D4ZLoabU4TJo2VLNSs=

"""

DESC = """\
%NAME%
bash

%VERSION%
1:5.2.026-2

%BASE%
bash

%DESC%
The GNU Bourne Again shell

%URL%
https://www.gnu.org/software/bash/bash.html

%ARCH%
x86_64

%BUILDDATE%
1712345678

%INSTALLDATE%
1712349999

%PACKAGER%
Tobias Powalowski <tpowa@archlinux.org>

%SIZE%
9437184

%REASON%
1

%LICENSE%
GPL-3.0-or-later
custom

%VALIDATION%
pgp

%DEPENDS%
readline
glibc

"""


def test_apk_database_gives_every_field_of_each_package() -> None:
    (musl, busybox), listed = parse_apk_installed(APK_INSTALLED)
    assert listed == 2
    assert musl == {"name": "musl", "epoch": None, "version": "1.2.4_git20230717", "release": "r4",
                    "arch": "x86_64", "origin": "musl", "license": "MIT", "size": 663552, "install_time": None,
                    "build_time": 1697712355, "maintainer": "Timo Teräs <timo.teras@iki.fi>",
                    "summary": "the musl c library (libc) implementation"}
    assert (busybox["name"], format_version(busybox), busybox["license"]) == ("busybox", "1.36.1-r15", "GPL-2.0-only")


def test_apk_versions_keep_what_apk_prints() -> None:
    assert split_apk_version("1.36.1-r15") == ("1.36.1", "r15")
    assert split_apk_version("2.0_rc1") == ("2.0_rc1", None)  # no -r<n>: all version
    assert split_apk_version("-r1") == ("-r1", None)


def test_a_broken_apk_database_gives_what_it_can_and_no_error() -> None:
    text = "P:good\nV:1-r0\nI:not-a-number\n\nV:2-r0\nA:x86_64\n\n\x00\xff garbage\nP\n::::\n\nP:last\nV:3-r1"
    packages, _ = parse_apk_installed(text)
    assert [(p["name"], p["version"], p["size"]) for p in packages] == [("good", "1", None), ("last", "3", None)]


def test_pacman_desc_gives_every_field() -> None:
    assert package_from_desc(DESC) == {
        "name": "bash", "epoch": 1, "version": "5.2.026", "release": "2", "arch": "x86_64", "origin": "bash",
        "license": "GPL-3.0-or-later AND custom", "size": 9437184, "install_time": 1712349999,
        "build_time": 1712345678, "packager": "Tobias Powalowski <tpowa@archlinux.org>", "explicit": False,
        "summary": "The GNU Bourne Again shell"}


def test_pacman_reason_says_whether_a_package_was_asked_for() -> None:
    explicit = DESC.replace("%REASON%\n1\n\n", "")
    assert package_from_desc(explicit)["explicit"] is True  # type: ignore[index]
    assert package_from_desc(DESC.replace("%REASON%\n1\n", "%REASON%\n0\n"))["explicit"] is True  # type: ignore[index]


def test_pacman_versions() -> None:
    assert split_epoch_version("1:5.2.026-2") == (1, "5.2.026", "2")
    assert split_epoch_version("2024.1-1") == (None, "2024.1", "1")
    assert split_epoch_version("nodash") == (None, "nodash", None)


def test_a_desc_without_a_name_is_no_package() -> None:
    assert package_from_desc("%VERSION%\n1-1\n") is None
    assert package_from_desc("\x00\xff%%\n%NAME%\n\n") is None


def test_read_packages_finds_each_database(tmp_path: Path) -> None:
    alpine = tmp_path / "alpine"
    (alpine / "lib/apk/db").mkdir(parents=True)
    (alpine / "lib/apk/db/installed").write_text(APK_INSTALLED)
    found = read_packages(DirectoryTree(alpine))
    assert (found["format"], found["source"], [p["name"] for p in found["packages"]], found["warning"]) == (
        "apk", "/lib/apk/db/installed", ["busybox", "musl"], None)

    arch = tmp_path / "arch"
    (arch / "var/lib/pacman/local/bash-1:5.2.026-2").mkdir(parents=True)
    (arch / "var/lib/pacman/local/bash-1:5.2.026-2/desc").write_text(DESC)
    (arch / "var/lib/pacman/local/ALPM_DB_VERSION").write_text("9\n")
    (arch / "var/lib/pacman/local/broken-1-1").mkdir()
    found = read_packages(DirectoryTree(arch))
    assert (found["format"], found["source"], [p["name"] for p in found["packages"]]) == (
        "pacman", "/var/lib/pacman/local", ["bash"])
    assert found["warning"] == ("/var/lib/pacman/local: 1 package folders without a readable desc file "
                                "(first: 'broken-1-1')")


def test_os_of_guests_without_os_release(tmp_path: Path) -> None:
    from handlers.guestos.osrelease import detect_os

    alpine = tmp_path / "alpine"
    (alpine / "etc").mkdir(parents=True)
    (alpine / "etc/alpine-release").write_text("3.19.1\n")
    (alpine / "sbin").mkdir()
    (alpine / "sbin/apk").write_bytes(b"\x7fELF")
    found = detect_os(DirectoryTree(alpine))
    assert (found["distribution"], found["version"], found["version_major"], found["version_minor"], found["family"],
            found["package_format"], found["package_manager"]) == ("alpine", "3.19.1", 3, 19, "alpine", "apk", "apk")

    arch = tmp_path / "arch"
    (arch / "etc").mkdir(parents=True)
    (arch / "etc/arch-release").write_text("")
    found = detect_os(DirectoryTree(arch))
    assert (found["distribution"], found["version"], found["family"], found["package_format"]) == (
        "arch", None, "arch", "pacman")
