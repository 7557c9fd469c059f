"""XFS filesystems for the test images, built unprivileged from a directory tree with ``mkfs.xfs -p``.

xfsprogs 6.1 (Debian 12) takes only the classic protofile: one line per entry, depth first, ``$``
closing a directory. It keeps modes (without the sticky bit), owners, file contents and symlink
targets; it stamps every time "now" and allocates every block (no holes). Names with spaces cannot
be written in a protofile: they are written with ``_`` instead, then renamed in place through
``xfs_db`` (only in a directory small enough to live in its inode, where no hash index names
them). Two more flaws are mended after the fact, for the tests that need the real on-disk form:
v5 symlinks whose target is stored out of the inode are written without their ``XSLM`` block
header, and holes are filled.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import tempfile
from pathlib import Path

#: mkfs.xfs refuses filesystems under 300 MB unless it believes it runs under fstests
_SMALL_FS_ENV = {"TEST_DIR": "/tmp", "TEST_DEV": "/dev/null", "QA_CHECK_FS": "1"}
MIN_BYTES = 16 * 1024 * 1024


def protofile(tree: Path, owners: dict[str, tuple[int, int]] | None = None,
              renames: list[tuple[str, str, str]] | None = None, scratch: Path | None = None) -> bytes:
    """The protofile that makes ``tree`` (owned by root unless ``owners`` maps a path "/a/b" to
    (uid, gid)) the filesystem's content; a name with spaces is written with ``_`` instead and
    (directory, written name, real name) appended to ``renames`` (its content copied to ``scratch``
    first: the protofile cannot name a source path with spaces either)."""
    owners = owners or {}
    lines = [b"guestkit-test", b"0 0", b"d--755 0 0"]

    def mode_text(kind: bytes, mode: int) -> bytes:
        return kind + (b"u" if mode & 0o4000 else b"-") + (b"g" if mode & 0o2000 else b"-") + b"%03o" % (mode & 0o777)

    def emit(folder: Path, guest: str, depth: int) -> None:
        indent = b"  " * depth
        for entry in sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name)):
            name = os.fsencode(entry.name)
            if b" " in name and renames is not None:
                name = name.replace(b" ", b"_")
                if (folder / os.fsdecode(name)).exists():
                    raise ValueError(f"{entry.name!r} and {os.fsdecode(name)!r} cannot both be written")
                renames.append((guest, os.fsdecode(name), entry.name))
            if any(c in name for c in b" \t\n:") or b" " in os.fsencode(guest):
                raise ValueError(f"mkfs.xfs cannot write the name {entry.name!r} in {guest}")
            path = f"{guest.rstrip('/')}/{entry.name}"
            info = entry.stat(follow_symlinks=False)
            uid, gid = owners.get(path, (0, 0))
            head = indent + name + b" %s %d %d"
            if stat.S_ISDIR(info.st_mode):
                lines.append(head % (mode_text(b"d", info.st_mode), uid, gid))
                emit(Path(entry.path), path, depth + 1)
                lines.append(indent + b"  $")
            elif stat.S_ISLNK(info.st_mode):
                lines.append(head % (b"l--777", uid, gid) + b" " + os.readlink(os.fsencode(entry.path)))
            elif stat.S_ISREG(info.st_mode):
                source = os.fsencode(entry.path)
                if b" " in source and scratch is not None:
                    source = os.fsencode(scratch / f"source-{len(lines)}")
                    shutil.copyfile(entry.path, source)
                lines.append(head % (mode_text(b"-", info.st_mode), uid, gid) + b" " + source)

    emit(tree, "/", 1)
    lines.append(b"$")
    return b"\n".join(lines) + b"\n"


def build_xfs(fs: Path, size: int, tree: Path, fs_uuid: str, label: str, *,
              owners: dict[str, tuple[int, int]] | None = None, v4: bool = False) -> None:
    """Make ``fs`` a file of ``size`` bytes holding an XFS with ``tree`` in it."""
    with tempfile.TemporaryDirectory(prefix="mkxfs-", dir=fs.parent) as scratch:
        proto = Path(scratch) / "proto"
        renames: list[tuple[str, str, str]] = []
        proto.write_bytes(protofile(tree, owners, renames, Path(scratch)))
        with open(fs, "wb") as handle:
            handle.truncate(size)
        metadata = f"crc=0,uuid={fs_uuid}" if v4 else f"uuid={fs_uuid}"  # v4: deprecated, still in the field
        command = ["mkfs.xfs", "-q", "-f", "-m", metadata, "-L", label, "-p", str(proto), str(fs)]
        _run(command, env={**os.environ, **_SMALL_FS_ENV})
    for folder, written, real in renames:
        _rename_short_form(fs, folder, written, real)


def _rename_short_form(fs: Path, folder: str, written: str, real: str) -> None:
    """Rename an entry of a short-form directory (its entries live in the inode, without a hash
    index: only the name and the inode's checksum change, which xfs_db recomputes)."""
    listing = _xfs_db(fs, f"path {folder}", "print")
    for line in listing.splitlines():
        field, _, value = line.partition(" = ")
        if ".sfdir" in field and field.endswith(".name") and value == f'"{written}"':
            _xfs_db(fs, f"path {folder}", f'write {field} "{real}"', write=True)
            return
    raise ValueError(f"{folder} is not a short-form directory holding {written!r}: {real!r} cannot be written")


def _xfs_db(image: Path, *commands: str, write: bool = False) -> str:
    args = ["xfs_db", "-x" if write else "-r"]
    for command in commands:
        args += ["-c", command]
    return _run([*args, str(image)]).decode()


def _run(command: list[str], env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(command, capture_output=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout


def _field(text: str, name: str) -> int:
    return int(text.split(f"{name} = ")[1].split()[0])


def add_remote_symlink_headers(fs: Path, paths: list[str]) -> None:
    """Give the v5 symlinks at ``paths`` (targets too long for the inode, one block each) the
    56-byte ``XSLM`` header the kernel writes and mkfs.xfs 6.1 forgets."""
    with open(fs, "rb") as handle:
        sb = handle.read(512)
    block_size, = struct.unpack_from(">I", sb, 4)
    ag_blocks, = struct.unpack_from(">I", sb, 84)
    for path in paths:
        out = _xfs_db(fs, f"path {path}", "print core.size v3.inumber", "bmap")
        size, inode = _field(out, "core.size"), _field(out, "v3.inumber")
        ag, block = map(int, out.split("startblock ")[1].split("(")[1].split(")")[0].split("/"))
        daddr = (ag * ag_blocks + block) * block_size // 512
        with open(fs, "r+b") as handle:
            handle.seek(daddr * 512)
            target = handle.read(size)
            header = struct.pack(">4sIII", b"XSLM", 0, size, 0) + sb[32:48] + struct.pack(">QQQ", inode, daddr, 0)
            handle.seek(daddr * 512)
            handle.write((header + target).ljust(block_size, b"\0"))
        _xfs_db(fs, f"path {path}", "dblock 0", "type symlink", "write offset 0", write=True)  # its crc


def keep_blocks(fs: Path, path: str, blocks: list[int], unwritten: frozenset[int] = frozenset()) -> None:
    """Make the file at ``path`` sparse: only its blocks numbered in ``blocks`` stay mapped (each
    where it was), the rest become holes that read as zeros; those also in ``unwritten`` become
    preallocated extents (allocated, never written: they read as zeros too)."""
    out = _xfs_db(fs, f"path {path}", "bmap")
    first = int(out.split("startblock ")[1].split()[0])
    with open(fs, "rb") as handle:
        fork = "u3" if struct.unpack_from(">H", handle.read(512), 100)[0] & 0xF == 5 else "u"  # v5 inodes: u3
    commands = [f"path {path}", f"write core.nextents {len(blocks)}"]
    for index, block in enumerate(blocks):
        bmx = f"{fork}.bmx[{index}]"
        commands += [f"write {bmx}.startoff {block}", f"write {bmx}.startblock {first + block}",
                     f"write {bmx}.blockcount 1", f"write {bmx}.extentflag {int(block in unwritten)}"]
    _xfs_db(fs, *commands, write=True)


def mark_log_dirty(fs: Path) -> None:
    """Make the log look like that of a filesystem still mounted: the unmount record's flag cleared
    (what a crash, or a snapshot of a running VM, leaves)."""
    with open(fs, "rb") as handle:
        sb = handle.read(512)
    block_size, = struct.unpack_from(">I", sb, 4)
    log_start, = struct.unpack_from(">Q", sb, 48)
    ag_blocks, = struct.unpack_from(">I", sb, 84)
    ag_log = sb[124]
    log_at = ((log_start >> ag_log) * ag_blocks + (log_start & ((1 << ag_log) - 1))) * block_size
    with open(fs, "r+b") as handle:
        handle.seek(log_at)
        header = handle.read(512)
        assert struct.unpack_from(">I", header, 0)[0] == 0xFEEDBABE, "no log record at the log's start"
        version, = struct.unpack_from(">I", header, 8)
        header_size, = struct.unpack_from(">I", header, 320) if version & 2 else (32768,)
        op_at = log_at + max(1, -(-header_size // 32768)) * 512
        handle.seek(op_at + 9)
        flags = handle.read(1)[0]
        handle.seek(op_at + 9)
        handle.write(bytes([flags & ~0x20]))


def as_regular_file(fs: Path, path: str) -> bytes:
    """Turn the directory at ``path`` into a regular file of the same data fork (a large directory's
    fork is a B-tree of extents: the form a very fragmented file takes, which mkfs never writes for a
    file), and return the bytes that file holds, read block by block through xfs_db's bmap."""
    listing = _xfs_db(fs, f"path {path}", "print core.size core.format", "bmap")
    assert "(btree)" in listing, listing[:200]
    size = _field(listing, "core.size")
    with open(fs, "rb") as handle:
        sb = handle.read(512)
        block_size, = struct.unpack_from(">I", sb, 4)
        ag_blocks, = struct.unpack_from(">I", sb, 84)
        content = bytearray(size)
        for line in listing.splitlines():
            if not line.startswith("data offset "):
                continue
            words = line.split()
            first, count = int(words[2]), int(words[-3])
            ag, block = map(int, words[5].strip("()").split("/"))
            for index in range(count):
                at = (first + index) * block_size
                if at < size:
                    handle.seek((ag * ag_blocks + block + index) * block_size)
                    content[at:at + block_size] = handle.read(block_size)[:size - at]
    _xfs_db(fs, f"path {path}", "write core.mode 0100644", write=True)
    return bytes(content)
