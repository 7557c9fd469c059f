"""The btrfs reader (handlers/guestimage/btrfsfs.py) reads back, file by file (sha256), what was written:
a tree packed by ``mkfs.btrfs --rootdir``, and filesystems the kernel wrote on a loop mount with
subvolumes (nested, a default one), compressed extents (zlib, lzo, zstd), inline files, holes and
preallocated ranges; ``btrfs restore`` agrees. A metadata block whose checksum fails is read from its
other copy (DUP) or is an error naming it; mutated trees end in the reader's own error."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.plugin.errors import JobError
from handlers.guestimage.blockdev import RawFileDevice
from handlers.guestimage.btrfsfs import EXTENT_DATA, BtrfsError, BtrfsFilesystem, BtrfsVolume
from tests.btrfsbuild import (
    MiB,
    digests,
    file_bytes,
    mkfs_rootdir,
    mounted,
    need_loop_mounts,
    restore,
    set_default,
    subvolume,
    subvolume_id,
)
from tests.conftest import session_scratch

SIZES = {"empty": 0, "inline": 700, "two-sectors": 8192 + 5, "extents": 3 * MiB + 123}


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    yield from session_scratch("btrfs")


def read_all(fs: BtrfsFilesystem, path: str = "/", found: dict[str, str] | None = None) -> dict[str, str]:
    """The digests of every file below ``path`` as the reader gives them (the same form as ``digests``)."""
    found = {} if found is None else found
    for name in fs.listdir(path) or []:
        child = f"{path.rstrip('/')}/{name}"
        entry = fs.entry(child)
        assert entry is not None, child
        if entry.info.type == "symlink":
            found[child] = f"link:{entry.link}"
        elif entry.info.type == "dir":
            read_all(fs, child, found)
        elif entry.info.type == "file":
            data = fs.read(child, 64 * MiB)
            assert data is not None and len(data) == min(entry.info.size, 64 * MiB), child
            found[child] = hashlib.sha256(data).hexdigest()
    return found


def _tree(root: Path) -> None:
    """Every form a packed tree takes: inline, multi-sector and multi-extent files, sparse ones, links,
    a big directory, long and non-ASCII names."""
    for kind in ("text", "random"):
        for name, size in SIZES.items():
            path = root / kind / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(file_bytes(kind, size, seed=size))
    with open(root / "sparse", "wb") as handle:
        handle.seek(5 * MiB)
        handle.write(b"end")
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("packed\n")
    os.symlink("../etc/hostname", root / "text" / "link")
    os.symlink("/" + "a" * 3000, root / "long-link")
    os.link(root / "etc" / "hostname", root / "hardlink")
    many = root / "many"
    many.mkdir()
    for n in range(3000):
        (many / f"entry-{n:05d}").write_text(str(n))
    (root / ("n" * 255)).write_text("longest name")
    (root / "übergrößen-日本").write_text("utf-8 name")


def test_a_packed_tree_reads_back_file_by_file(base: Path) -> None:
    tree = base / "packed-tree"
    _tree(tree)
    image = base / "packed.btrfs"
    mkfs_rootdir(image, tree)
    volume = BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1")
    assert volume.default_subvolume() == 5 and volume.sb.label == "packed"
    fs = BtrfsFilesystem(volume, 5, "/dev/sda1")
    truth = digests(tree)
    assert read_all(fs) == truth
    restored = restore(image, 5, base / "packed-restored")
    assert {k: v for k, v in restored.items() if k in truth} == truth  # the independent reader agrees
    entry = fs.entry("/etc/hostname")
    assert entry is not None and (entry.info.type, entry.info.size) == ("file", 7)


@pytest.mark.parametrize("compression", ["zlib", "lzo", "zstd"])
def test_subvolumes_and_compressed_extents_read_as_the_kernel_wrote_them(base: Path, compression: str) -> None:
    need_loop_mounts()
    image = base / f"{compression}.btrfs"
    with mounted(image, options=f"compress-force={compression}") as point:
        root = subvolume(point, "@")
        home = subvolume(point, "@/home")
        for name, size in SIZES.items():
            (root / f"{name}.txt").write_bytes(file_bytes("text", size, seed=size))
            (home / f"{name}.bin").write_bytes(file_bytes("random", size, seed=size))
        with open(root / "holes", "wb") as handle:  # a hole between two written ranges
            handle.write(b"start")
            handle.seek(3 * MiB)
            handle.write(b"after the hole")
        with open(root / "prealloc", "wb") as handle:  # preallocated, partly written: the rest reads as zeros
            os.posix_fallocate(handle.fileno(), 0, 2 * MiB)
            handle.write(b"written part")
        os.symlink("holes", root / "link")
        truth_root, truth_home = digests(root), digests(home)
        ids = {"@": subvolume_id(point, "@"), "@/home": subvolume_id(point, "@/home")}
        set_default(point, "@")
    volume = BtrfsVolume(RawFileDevice(str(image)), "/dev/sda2")
    assert volume.default_subvolume() == ids["@"]
    paths = volume.subvolume_paths()
    assert paths[ids["@"]] == "@" and paths[ids["@/home"]] == "@/home"
    assert read_all(BtrfsFilesystem(volume, ids["@/home"], "/dev/sda2")) == truth_home
    assert read_all(BtrfsFilesystem(volume, ids["@"], "/dev/sda2")) == truth_root  # home's files, through it
    assert restore(image, ids["@/home"], base / f"{compression}-restored") == truth_home
    # the extents really are compressed with what was asked (compress-force: even the random ones)
    root_block, level = volume.tree_root(ids["@"])
    kinds = {data[16] for key, data in volume.items(root_block, level, (0, 0, 0), (2**64 - 1, 255, 2**64 - 1))
             if key[1] == EXTENT_DATA and len(data) > 20}
    assert {"zlib": 1, "lzo": 2, "zstd": 3}[compression] in kinds


def _tree_blocks(volume: BtrfsVolume) -> list[int]:
    """Physical offsets of the first copy of each block of the root tree (leaves and nodes)."""
    found = []
    root = volume.sb.root
    node = volume.node(root)
    found.append(volume.physical(root, volume.sb.node_size)[0])
    if node.level:
        found += [volume.physical(child, volume.sb.node_size)[0] for child in node.values]  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize("metadata", ["single", "dup"])
def test_a_metadata_block_whose_checksum_fails(base: Path, metadata: str) -> None:
    tree = base / f"checksum-{metadata}"
    tree.mkdir()
    (tree / "file").write_text("content\n")
    image = base / f"checksum-{metadata}.btrfs"
    with open(image, "wb") as handle:
        handle.truncate(128 * MiB)
    subprocess.run(["mkfs.btrfs", "-q", "-f", "-m", metadata, "--rootdir", str(tree), str(image)], check=True,
                   capture_output=True)
    volume = BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1")
    fs_root, _level = volume.tree_root(5)
    first_copy = volume.physical(fs_root, volume.sb.node_size)[0]
    with open(image, "r+b") as handle:
        handle.seek(first_copy + 200)
        handle.write(b"\xff\xfe")
    fs = BtrfsFilesystem(BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1"), 5, "/dev/sda1")
    if metadata == "dup":
        assert fs.read("/file", None) == b"content\n"  # from the second copy
        return
    with pytest.raises(JobError) as caught:
        fs.listdir("/")
    assert f"tree block at logical {fs_root} (byte {first_copy}) fails its checksum" in caught.value.message
    assert caught.value.details["device"] == "/dev/sda1"


# --- hostile trees ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_image(base: Path) -> tuple[bytes, list[int], int]:
    tree = base / "fuzz-tree"
    _tree(tree)
    shutil.rmtree(tree / "many")
    for big in ("text/extents", "random/extents", "sparse"):  # metadata is what is fuzzed: keep reads short
        (tree / big).unlink()
    image = base / "fuzz.btrfs"
    mkfs_rootdir(image, tree, shrink=True)
    volume = BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1")
    fs_root, _ = volume.tree_root(5)
    blocks = [*_tree_blocks(volume), volume.physical(fs_root, volume.sb.node_size)[0]]
    return image.read_bytes(), blocks, volume.sb.node_size


class _Patched:
    """The image's bytes with some blocks replaced, read as a device (no copy of the whole image)."""

    def __init__(self, data: bytes, blocks: dict[int, bytes]) -> None:
        self.data, self.blocks, self.size = data, blocks, len(data)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(self.data[offset:offset + length])
        for start, block in self.blocks.items():
            lo, hi = max(start, offset), min(start + len(block), offset + len(out))
            if lo < hi:
                out[lo - offset:hi - offset] = block[lo - start:hi - start]
        return bytes(out)

    def close(self) -> None:
        pass


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_mutated_tree_blocks_end_in_the_readers_error(small_image: tuple[bytes, list[int], int],
                                                       data: st.DataObject) -> None:
    """Bytes of tree blocks changed and their checksums made right again, so that the parsing itself is
    fuzzed: keys, item offsets and sizes, levels, pointers, extent fields."""
    raw, blocks, node_size = small_image
    patched: dict[int, bytes] = {}
    for block in data.draw(st.lists(st.sampled_from(blocks), min_size=1, max_size=3)):
        node = bytearray(patched.get(block, raw[block:block + node_size]))
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(st.integers(48, node_size - 4))
            node[at:at + 4] = data.draw(st.binary(min_size=1, max_size=4)).ljust(4, b"\0")
        node[:4] = google_crc32c.value(bytes(node[32:])).to_bytes(4, "little")
        patched[block] = bytes(node)
    try:
        read_all(BtrfsFilesystem(BtrfsVolume(_Patched(raw, patched), "/dev/sda1"), 5, "/dev/sda1"))
    except (BtrfsError, JobError, AssertionError):
        pass  # the reader's own errors, and read_all's checks (an entry listed but absent): a broken tree


def test_each_device_of_a_raid1_filesystem_reads_alone_and_striped_profiles_are_named(base: Path) -> None:
    """A VM disk that is one half of a RAID1 mirror holds a copy of everything: it is read on its own.
    RAID0 (and 10, 5, 6) spread blocks over the devices: refused, saying so."""
    mirrors = [base / "raid1-a.img", base / "raid1-b.img"]
    stripes = [base / "raid0-a.img", base / "raid0-b.img"]
    for path in mirrors + stripes:
        with open(path, "wb") as handle:
            handle.truncate(128 * MiB)
    for profile, devices in (("raid1", mirrors), ("raid0", stripes)):
        subprocess.run(["mkfs.btrfs", "-q", "-f", "-L", profile, "-m", profile, "-d", profile,
                        *map(str, devices)], check=True, capture_output=True)
    for devid, path in enumerate(mirrors, start=1):
        volume = BtrfsVolume(RawFileDevice(str(path)), "/dev/sda1")
        assert (volume.sb.devid, volume.sb.label) == (devid, "raid1")
        assert BtrfsFilesystem(volume, 5, "/dev/sda1").listdir("/") == []
    with pytest.raises(BtrfsError, match=r"is striped over 2 devices \(RAID0/10/5/6\)"):
        BtrfsVolume(RawFileDevice(str(stripes[0])), "/dev/sda1")


def test_a_directory_entry_whose_name_holds_a_slash_is_not_listed(base: Path) -> None:
    """A name no directory can hold ("host/ame") would point elsewhere once joined into a path: left out."""
    tree = base / "slash-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("guest\n")
    (tree / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    image = base / "slash.btrfs"
    mkfs_rootdir(image, tree)
    volume = BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1")
    node_size = volume.sb.node_size
    raw = bytearray(image.read_bytes())
    changed = set()
    at = raw.find(b"hostname")
    while at != -1:  # every copy of the name (DIR_ITEM, DIR_INDEX, INODE_REF), in each copy of each block
        raw[at:at + 8] = b"host/ame"
        changed.add(at - at % node_size)
        at = raw.find(b"hostname", at + 8)
    for block in changed:
        if raw[block + 32:block + 48] == volume.sb.metadata_uuid:
            raw[block:block + 4] = google_crc32c.value(bytes(raw[block + 32:block + node_size])).to_bytes(4, "little")
    image.write_bytes(raw)
    fs = BtrfsFilesystem(BtrfsVolume(RawFileDevice(str(image)), "/dev/sda1"), 5, "/dev/sda1")
    assert changed and fs.listdir("/etc") == ["hosts"]
