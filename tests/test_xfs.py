"""The XFS reader over a larger filesystem than any guest test needs: thousands of entries, every
directory form (short form, block, leaf, node, B-tree), files with holes and preallocated extents
and one whose extents are a B-tree,
symlinks stored in the inode and in blocks (with the v5 ``XSLM`` header libfsxfs does not skip),
names that are not UTF-8, setuid/setgid modes and owners; v5 and v4. Every path is listed, stat'ed
and hashed against the tree the filesystem was built from."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.guestimage.blockdev import RawFileDevice, SliceDevice
from handlers.guestimage.xfsfs import XfsFilesystem, log_is_dirty
from tests.imagebuild import copy_into
from tests.processes import ROOT
from tests.xfsbuild import add_remote_symlink_headers, as_regular_file, build_xfs, keep_blocks, mark_log_dirty

MiB = 1024 * 1024
OFFSET = MiB  # the filesystem sits one MiB into its disk, as on a partition
SIZE = 256 * MiB
LONG_LINK = "/" + "/".join(f"d{i:03d}" for i in range(72))  # 360 bytes: stored in a block, not the inode
OWNERS = {"/home/alice": (1000, 1000), "/home/alice/notes.txt": (1000, 1000), "/srv/setgid": (12, 34)}
#: of the 4 KiB blocks of /srv/sparse, only these stay mapped; the second of them allocated but unwritten
SPARSE_BLOCKS = [256, 768]
PREALLOCATED = frozenset({768})
#: entries of the test directories: short form, block, leaf, node, B-tree (mkfs.xfs 6.1 runs out of
#: space making a 20000-entry directory on v4, whatever the filesystem's size)
DIR_SIZES = {"v5": (5, 40, 300, 3000, 20000), "v4": (5, 40, 300, 3000)}

pytestmark = pytest.mark.slow


def _tree(root: Path, counts: tuple[int, ...]) -> None:
    def write(path: str, data: bytes, mode: int = 0o644) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)

    write("/etc/hostname", b"xfs-guest\n")
    write("/etc/shadow", b"root:!:19000::::::\n", 0o600)
    write("/empty", b"")
    write("/home/alice/notes.txt", b"alice\n" * 100, 0o640)
    write("/srv/setuid", os.urandom(5000), 0o4755)
    write("/srv/setgid", os.urandom(70000), 0o2750)
    write("/srv/big.bin", os.urandom(3 * MiB + 17), 0o640)
    write("/srv/sparse", os.urandom(4 * MiB))
    (root / "srv" / "short-link").symlink_to("big.bin")
    (root / "srv" / "long-link").symlink_to(LONG_LINK)
    (root / "srv" / "dangling").symlink_to("../nowhere/x")
    os.symlink(b"target-\xff\xfe", os.path.join(os.fsencode(root / "srv"), b"non-utf8-link"))
    os.makedirs(os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9"))
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9", b"inner-\xff"), "wb") as handle:
        handle.write(b"inner\n")
    for count in counts:
        folder = root / f"dir-{count}"
        folder.mkdir()
        for index in range(count):
            (folder / f"entry-with-a-longish-name-{index:06d}").write_bytes(b"%d\n" % index if index % 7 else b"")


def _expected(root: Path) -> Iterator[tuple[str, os.stat_result, bytes | None]]:
    """(guest path, lstat, link target or file bytes) of everything under ``root``."""
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            host = os.path.join(folder, name)
            guest = os.fsdecode(b"/" + os.path.relpath(host, os.fsencode(root)))
            info = os.lstat(host)
            content = os.readlink(host) if stat.S_ISLNK(info.st_mode) else None
            if stat.S_ISREG(info.st_mode):
                with open(host, "rb") as handle:
                    content = handle.read()
            yield guest, info, content


@pytest.fixture(scope="module", params=["v5", "v4"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source tree, disk holding the XFS at OFFSET)."""
    base = tmp_path_factory.mktemp(f"xfs-{request.param}")
    root = base / "root"
    _tree(root, DIR_SIZES[request.param])
    fs = base / "fs.xfs"
    build_xfs(fs, SIZE, root, "6c1b6f3e-2b7e-4c51-9a8f-0d7e2f6b1a11", "bigxfs", owners=OWNERS,
              v4=request.param == "v4")
    if request.param == "v5":
        add_remote_symlink_headers(fs, ["/srv/long-link"])
    keep_blocks(fs, "/srv/sparse", SPARSE_BLOCKS, PREALLOCATED)
    data, sparse = (root / "srv" / "sparse").read_bytes(), bytearray(4 * MiB)
    for block in set(SPARSE_BLOCKS) - PREALLOCATED:
        sparse[block * 4096:(block + 1) * 4096] = data[block * 4096:(block + 1) * 4096]
    (root / "srv" / "sparse").write_bytes(bytes(sparse))  # the ground truth: zeros where the holes are
    disk = base / "disk.raw"
    with open(disk, "wb") as handle:
        handle.truncate(OFFSET + SIZE + MiB)
    copy_into(disk, fs, [(0, SIZE, OFFSET)])
    return root, disk


@pytest.fixture
def reader(built: tuple[Path, Path]) -> XfsFilesystem:
    _, disk = built
    return XfsFilesystem(SliceDevice(RawFileDevice(str(disk)), OFFSET, SIZE), "xfs", "/dev/sda1")


def test_every_path_reads_back_as_it_was_built(built: tuple[Path, Path], reader: XfsFilesystem) -> None:
    root, _ = built
    checked = 0
    for path, info, content in _expected(root):
        entry = reader.entry(path)
        assert entry is not None, path
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "symlink" if stat.S_ISLNK(info.st_mode) else "file"
        assert entry.info.type == kind, path
        assert (entry.info.uid, entry.info.gid) == OWNERS.get(path, (0, 0)), path
        if kind == "symlink":
            assert entry.link == os.fsdecode(content), path
            continue
        assert entry.info.mode == info.st_mode & 0o6777, path
        if kind == "file":
            assert entry.info.size == len(content), path
            data = reader.read(path, None)
            assert data is not None and hashlib.sha256(data).digest() == hashlib.sha256(content).digest(), path
        else:
            expected = sorted(os.fsdecode(n) for n in os.listdir(os.fsencode(root / path.lstrip("/"))))
            assert reader.listdir(path) == expected, path
        checked += 1
    assert checked > sum(DIR_SIZES["v4"])
    assert reader.listdir("/") == sorted(os.fsdecode(n) for n in os.listdir(os.fsencode(root)))


def test_every_directory_form_is_present(built: tuple[Path, Path], reader: XfsFilesystem) -> None:
    """The tree really holds each form (the inode's data fork format: 1 local, 2 extents, 3 B-tree;
    and among the extent ones, a single block, a leaf and nodes)."""
    forms = {}
    for count in DIR_SIZES["v5"]:
        entry = reader.entry(f"/dir-{count}")
        if entry is None:  # v4
            continue
        assert entry is not None
        raw = reader._raw_inode(entry.inode)  # noqa: SLF001 - the on-disk form is what is under test
        forms[count] = raw[5]
    if 20000 in forms:  # v5 (v4's smaller inodes hold no five long names: its forms start at block)
        assert (forms[5], forms[40], forms[20000]) == (1, 2, 3), forms
    else:
        assert (forms[5], forms[3000]) == (2, 3), forms


def test_limits_and_absent_paths(reader: XfsFilesystem) -> None:
    assert reader.read("/srv/big.bin", 10) is not None and len(reader.read("/srv/big.bin", 10) or b"") == 10
    assert reader.entry("/etc/missing") is None and reader.entry("/etc/hostname/below") is None
    assert reader.read("/srv", None) is None and reader.listdir("/etc/hostname") is None
    assert reader.read("/srv/short-link", None) is None  # a link is never followed here
    assert reader.volume_label() == "bigxfs"


def test_a_dirty_log_is_told_from_a_clean_one(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, disk = built
    device = SliceDevice(RawFileDevice(str(disk)), OFFSET, SIZE)
    assert log_is_dirty(device) is False
    fs = tmp_path / "fs.xfs"
    with open(disk, "rb") as source, open(fs, "wb") as out:
        source.seek(OFFSET)
        out.write(source.read(SIZE))
    mark_log_dirty(fs)
    assert log_is_dirty(RawFileDevice(str(fs))) is True


_FUZZ_CHILD = """
import random, sys
from pathlib import Path
from app.plugin.errors import JobError
from handlers.guestimage.blockdev import RawFileDevice
from handlers.guestimage.xfsfs import XfsFilesystem, log_is_dirty

def walk(fs, path, budget):
    for name in fs.listdir(path) or []:
        budget[0] -= 1
        if budget[0] < 0:
            return
        child = path.rstrip("/") + "/" + name
        entry = fs.entry(child)
        if entry is not None and entry.info.type == "dir":
            walk(fs, child, budget)
        elif entry is not None and entry.info.type == "file":
            fs.read(child, 65536)

source, work = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2])
for seed in range(int(sys.argv[3])):
    rng, data = random.Random(seed), bytearray(source)
    for _ in range(rng.randint(1, 40)):  # the superblock, AG headers, the first inodes and directories
        low, high = rng.choice([(0, 512), (512, 16384), (16384, 262144), (262144, 4194304)])
        data[rng.randrange(low, high)] = rng.randrange(256)
    work.write_bytes(data)
    try:
        log_is_dirty(RawFileDevice(str(work)))
        walk(XfsFilesystem(RawFileDevice(str(work)), "xfs", "/dev/sda1"), "/", [20000])
        print(seed, "read")
    except JobError as exc:
        print(seed, "refused", exc.code.value)
"""


def test_damaged_xfs_metadata_is_read_or_refused_never_a_crash(tmp_path: Path) -> None:
    """Bytes of the superblock, AG headers, inodes and directories changed at random (a hostile or
    damaged image): every variant is walked whole or refused with UNSUPPORTED_IMAGE; no other
    exception, no crash of the C library (the walk runs in a child process), no hang."""
    root = tmp_path / "root"
    _tree(root, (5, 40, 300, 3000))
    (root / "srv" / "big.bin").unlink()
    fs = tmp_path / "fs.xfs"
    build_xfs(fs, 32 * MiB, root, "6c1b6f3e-2b7e-4c51-9a8f-0d7e2f6b1a12", "fuzz")
    done = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, str(fs), str(tmp_path / "variant.xfs"), "60"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [line.split()[1:] for line in done.stdout.splitlines()]
    assert len(outcomes) == 60
    assert all(o == ["read"] or o == ["refused", "UNSUPPORTED_IMAGE"] for o in outcomes), outcomes
    assert ["read"] in outcomes and ["refused", "UNSUPPORTED_IMAGE"] in outcomes


def test_a_file_whose_extents_are_a_b_tree_reads_whole(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "big").mkdir(parents=True)
    for index in range(20000):
        (root / "big" / f"entry-with-a-longish-name-{index:06d}").write_bytes(b"")
    fs = tmp_path / "fs.xfs"
    build_xfs(fs, 64 * MiB, root, "6c1b6f3e-2b7e-4c51-9a8f-0d7e2f6b1a13", "btree")
    expected = as_regular_file(fs, "/big")
    reader = XfsFilesystem(RawFileDevice(str(fs)), "xfs", "/dev/sda1")
    entry = reader.entry("/big")
    assert entry is not None and (entry.info.type, entry.info.size) == ("file", len(expected))
    assert hashlib.sha256(reader.read("/big", None) or b"").digest() == hashlib.sha256(expected).digest()
