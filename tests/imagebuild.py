"""Builds small disk images from a host directory tree, unprivileged, with their ground truth.

    truth = build_image(root_dir, tmp / "disk.qcow2", layout="gpt-boot-efi", fmt="qcow2")

Layouts:
  plain         MBR, one ext4 root (fstab: LABEL=)
  gpt-boot-efi  GPT: EFI vfat at /boot/efi, ext4 /boot, ext4 root (fstab: UUID=)
  lvm           MBR: ext4 /boot + LVM2 PV holding vg0/root (ext4), vg0/swap, vg0/home (ext4, two
                segments stored out of order); fstab uses /dev/mapper, UUID= and /dev/vg0/home
  rhel-lvm-xfs  GPT as RHEL 8/9 install it: EFI vfat at /boot/efi, XFS /boot, LVM2 PV holding
                rhel/root (XFS) and rhel/swap; fstab uses /dev/mapper/rhel-root and UUID=
  xfs           MBR, one XFS root (fstab: UUID=), as Rocky or Alma cloud images

The LVM2 label and metadata are written here (lvm2 tools need root and block devices), with an
implementation of LVM's CRC independent of the engine's. Tools: sfdisk, mke2fs (+ fakeroot),
mkfs.vfat, mtools, debugfs, qemu-img, mkfs.xfs and xfs_db (``tests/xfsbuild.py``).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.xfsbuild import build_xfs

MiB = 1024 * 1024
SECTOR = 512
EXTENT = 4 * MiB
#: layouts of a Linux root tree (``test_guestimage_read`` reads each in every format)
LAYOUTS = ("plain", "gpt-boot-efi", "lvm", "rhel-lvm-xfs", "xfs")
#: the layout of a Windows tree: NTFS volumes (no symlinks or owners in the tree)
WINDOWS_LAYOUT = "windows"
FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vdi")
#: test variants: name -> (format, build_image keyword arguments)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "raw": ("raw", {}), "qcow2": ("qcow2", {}), "qcow2-compressed": ("qcow2", {"compressed": True}),
    "vmdk": ("vmdk", {}), "vmdk-stream": ("vmdk", {"subformat": "streamOptimized"}),
    "vhdx": ("vhdx", {}), "vdi": ("vdi", {}),
}
GPT_EFI = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(command, capture_output=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc


def _fake(command: list[str]) -> list[str]:
    return (["fakeroot", "--"] + command) if shutil.which("fakeroot") else command


def _uuid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"guestkit-test/{seed}"))


def _tree_bytes(root: Path) -> int:
    total = 0
    for base, dirs, files in os.walk(root):
        total += 4096 * (len(dirs) + 1)
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                total += (os.path.getsize(path) + 4095) // 4096 * 4096 + 256
    return total


def _fs_mib(tree: Path, minimum: int = 16) -> int:
    need = _tree_bytes(tree) * 13 // 10 + 8 * MiB
    return max(minimum, -(-need // MiB))


def _mkext4(image: Path, offset: int, size: int, tree: Path, fs_uuid: str, label: str) -> None:
    _run(_fake(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-E", f"offset={offset}", "-U", fs_uuid,
                "-L", label, "-d", str(tree), str(image), f"{size // 1024}k"]))


def _xfs_mib(tree: Path) -> int:
    """MiB an XFS needs for ``tree``: its log alone takes several."""
    return max(32, -(-(_tree_bytes(tree) * 13 // 10 + 24 * MiB) // MiB))


def _mkxfs(image: Path, offset: int, size: int, tree: Path, fs_uuid: str, label: str,
           owners: dict[str, tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="mkxfs-", dir=image.parent) as scratch:
        fs = Path(scratch) / "fs.xfs"
        build_xfs(fs, size, tree, fs_uuid, label, owners=owners)
        copy_into(image, fs, [(0, size, offset)])


def _mkvfat(image: Path, offset: int, size: int, tree: Path, volume_id: str, label: str) -> None:
    _run(["mkfs.vfat", "-F", "32", "-s", "1", "-S", "512", "--offset", str(offset // SECTOR), "-i", volume_id,
          "-n", label, str(image), str(size // 1024)])
    target = f"{image}@@{offset}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for base, dirs, files in os.walk(tree):
        rel = os.path.relpath(base, tree)
        inner = "::" if rel == "." else "::/" + rel
        for name in sorted(dirs):
            _run(["mmd", "-i", target, f"{inner.rstrip('/')}/{name}"], env=env)
        for name in sorted(files):
            _run(["mcopy", "-i", target, os.path.join(base, name), f"{inner.rstrip('/')}/{name}"], env=env)


def _sfdisk(image: Path, script: str) -> None:
    _run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)], input=script.encode())


def _chown(image: Path, offset: int, owners: dict[str, tuple[int, int]]) -> None:
    if not owners:
        return
    commands = "".join(f'sif "{path}" uid {uid}\nsif "{path}" gid {gid}\n' for path, (uid, gid) in owners.items())
    proc = subprocess.run(["debugfs", "-w", "-f", "-", f"{image}?offset={offset}"], input=commands.encode(),
                          capture_output=True, check=False)
    errors = [line for line in proc.stderr.decode(errors="replace").splitlines() if not line.startswith("debugfs ")]
    if errors:
        raise RuntimeError(f"debugfs sif failed: {errors}")


def _split_owners(owners: dict[str, tuple[int, int]], mountpoint: str) -> dict[str, tuple[int, int]]:
    """Owners of paths under ``mountpoint``, rewritten relative to it (longest mounts handled by caller)."""
    result = {}
    for path, ids in owners.items():
        if mountpoint == "/":
            result[path] = ids
        elif path == mountpoint or path.startswith(mountpoint + "/"):
            result[path[len(mountpoint):] or "/"] = ids
    return result


def _carve(tree: Path, mountpoint: str, dest: Path) -> Path:
    """Move the contents of ``tree/mountpoint`` to ``dest``, leaving an empty mountpoint directory."""
    source = tree / mountpoint.lstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not source.is_symlink():
        for child in list(source.iterdir()):
            shutil.move(str(child), str(dest / child.name))
    else:
        if source.is_symlink() or source.exists():
            source.unlink()
        source.mkdir(parents=True)
    return dest


def _write_fstab(tree: Path, lines: list[str]) -> str:
    path = tree / "etc" / "fstab"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    ours = {line.split()[1] for line in lines}  # mountpoints the layout defines ("none" for swap)
    if path.exists() and not path.is_symlink():
        for line in path.read_text().splitlines():
            fields = line.split()
            if fields and not line.lstrip().startswith("#") and len(fields) > 2 and (
                    fields[1] in ours or (fields[2] == "swap" and "none" in ours)):
                continue  # replaced by the layout's own entry
            kept.append(line)
        path.unlink()
    text = "\n".join(["# /etc/fstab: written by tests/imagebuild.py", *lines, *[k for k in kept if k.strip()]]) + "\n"
    path.write_text(text)
    return text


# -- LVM2 on-disk structures -----------------------------------------------------------------------
_LVM_CRCTAB = (
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
    0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
)


def lvm_calc_crc(data: bytes, crc: int = 0xF597A6CF) -> int:
    """lvm2's calc_crc (lib/misc/crc.c, the small-table variant)."""
    for byte in data:
        crc ^= byte
        crc = (crc >> 4) ^ _LVM_CRCTAB[crc & 0xF]
        crc = (crc >> 4) ^ _LVM_CRCTAB[crc & 0xF]
    return crc


def _lvm_id(seed: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = uuid.uuid5(uuid.NAMESPACE_URL, seed).bytes + uuid.uuid5(uuid.NAMESPACE_DNS, seed).bytes
    return "".join(alphabet[b % len(alphabet)] for b in digest[:32])


def _dashed(raw: str) -> str:
    cuts = (6, 4, 4, 4, 4, 4, 6)
    out, pos = [], 0
    for cut in cuts:
        out.append(raw[pos:pos + cut])
        pos += cut
    return "-".join(out)


def _lvm_metadata(vg: str, vg_id: str, pv_id: str, pv_size: int, pe_count: int,
                  lvs: list[tuple[str, str, list[tuple[int, int, int]]]]) -> str:
    """lvs: (name, id, [(start_extent, extent_count, pv_extent)])."""
    blocks = []
    for name, lv_id, segments in lvs:
        segs = "".join(
            f"\n\t\t\tsegment{n} {{\n\t\t\t\tstart_extent = {start}\n\t\t\t\textent_count = {count}\n\n"
            f"\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\t# linear\n\n"
            f"\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {pv_extent}\n\t\t\t\t]\n\t\t\t}}\n"
            for n, (start, count, pv_extent) in enumerate(segments, start=1))
        blocks.append(
            f"\t\t{name} {{\n\t\t\tid = \"{_dashed(lv_id)}\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n"
            f"\t\t\tflags = []\n\t\t\tcreation_time = 1700000000\n\t\t\tcreation_host = \"build\"\n"
            f"\t\t\tsegment_count = {len(segments)}\n{segs}\t\t}}\n")
    return (
        f"{vg} {{\nid = \"{_dashed(vg_id)}\"\nseqno = 3\nformat = \"lvm2\"\n"
        f"status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\nextent_size = {EXTENT // SECTOR}\n"
        f"max_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\nphysical_volumes {{\n\n\tpv0 {{\n"
        f"\t\tid = \"{_dashed(pv_id)}\"\n\t\tdevice = \"/dev/sda2\"\n\n\t\tstatus = [\"ALLOCATABLE\"]\n"
        f"\t\tflags = []\n\t\tdev_size = {pv_size // SECTOR}\n\t\tpe_start = {MiB // SECTOR}\n"
        f"\t\tpe_count = {pe_count}\n\t}}\n}}\n\nlogical_volumes {{\n\n" + "\n".join(blocks) + "}\n\n}\n"
        "# Generated by LVM2 version 2.03.16(2) (2022-05-18): tests/imagebuild.py\n\n"
        "contents = \"Text Format Volume Group\"\nversion = 1\n\ndescription = \"\"\n\n"
        "creation_host = \"build\"\ncreation_time = 1700000000\n\0"
    )


def _write_pv(image: Path, pv_offset: int, pv_size: int, pv_id: str, text: str) -> None:
    mda_start, mda_size = 4096, MiB - 4096
    body = text.encode()
    label = bytearray(SECTOR)
    label[0:8] = b"LABELONE"
    struct.pack_into("<QII", label, 8, 1, 0, 32)
    label[24:32] = b"LVM2 001"
    pv_header = pv_id.encode() + struct.pack("<Q", pv_size)
    pv_header += struct.pack("<QQQQ", MiB, 0, 0, 0)  # one data area from pe_start, then terminator
    pv_header += struct.pack("<QQQQ", mda_start, mda_size, 0, 0)  # one metadata area, then terminator
    label[32:32 + len(pv_header)] = pv_header
    struct.pack_into("<I", label, 16, lvm_calc_crc(bytes(label[20:])))
    mda = bytearray(SECTOR)
    mda[4:20] = b" LVM2 x[5A%r0N*>"
    struct.pack_into("<IQQ", mda, 20, 1, mda_start, mda_size)
    struct.pack_into("<QQII", mda, 40, SECTOR, len(body), lvm_calc_crc(body), 0)
    struct.pack_into("<I", mda, 0, lvm_calc_crc(bytes(mda[4:])))
    with open(image, "r+b") as handle:
        handle.seek(pv_offset + SECTOR)
        handle.write(label)
        handle.seek(pv_offset + mda_start)
        handle.write(mda)
        handle.seek(pv_offset + mda_start + SECTOR)
        handle.write(body)


def _write_swap(image: Path, offset: int, size: int, swap_uuid: str, label: str) -> None:
    header = bytearray(4096)
    struct.pack_into("<III", header, 1024, 1, size // 4096 - 1, 0)
    header[1024 + 12:1024 + 28] = uuid.UUID(swap_uuid).bytes
    header[1024 + 28:1024 + 28 + len(label)] = label.encode()
    header[4086:4096] = b"SWAPSPACE2"
    with open(image, "r+b") as handle:
        handle.seek(offset)
        handle.write(header)


def copy_into(image: Path, source: Path, pieces: list[tuple[int, int, int]]) -> None:
    """Copy (source_offset, length, image_offset) pieces, skipping all-zero blocks."""
    with open(source, "rb") as src, open(image, "r+b") as dst:
        for src_offset, length, dst_offset in pieces:
            done = 0
            while done < length:
                src.seek(src_offset + done)
                block = src.read(min(MiB, length - done))
                if block.strip(b"\0"):
                    dst.seek(dst_offset + done)
                    dst.write(block)
                done += len(block)


# -- layouts -----------------------------------------------------------------------------------------
def _part(device: str, number: int, start: int, size: int, table: str, type_id: str,
          name: str | None = None) -> dict[str, Any]:
    return {"device": device, "number": number, "start_bytes": start, "size_bytes": size, "table": table,
            "type_id": type_id, "name": name}


def _fs(device: str, kind: str, fs_uuid: str | None, label: str | None, size: int) -> dict[str, Any]:
    return {"device": device, "type": kind, "uuid": fs_uuid, "label": label, "size_bytes": size}


def _mkntfs(image: Path, offset: int, size: int, files: dict[str, bytes], work: Path, label: str) -> str:
    """Build NTFS aside (mkntfs/ntfscp write whole files) and copy it in; returns its UUID (serial)."""
    part = work / "ntfs.img"
    with open(part, "wb") as handle:
        handle.truncate(size)
    _run(["mkntfs", "-F", "-Q", "-q", "-L", label, "-s", "512", "-p", str(offset // SECTOR), "-H", "255",
          "-S", "63", str(part)])
    for name, content in files.items():
        if "/" in name:
            raise ValueError("NTFS test files live in the volume root (ntfscp cannot create directories)")
        host = work / "ntfs-file"
        host.write_bytes(content)
        _run(["ntfscp", "-f", str(part), str(host), name])
    serial = struct.unpack("<Q", part.read_bytes()[72:80])[0]
    copy_into(image, part, [(0, size, offset)])
    return f"{serial:016X}"


def _plain(tree: Path, raw: Path, seed: str, work: Path, owners: dict[str, tuple[int, int]],
           ntfs_files: dict[str, bytes] | None) -> dict[str, Any]:
    root_size = _fs_mib(tree) * MiB
    root_uuid = _uuid(seed + "/root")
    ntfs_size = 16 * MiB if ntfs_files else 0
    ntfs_at = MiB + root_size
    lines = ["LABEL=rootfs\t/\text4\terrors=remount-ro\t0\t1"]
    ntfs_uuid = None
    with open(raw, "wb") as handle:
        handle.truncate(root_size + ntfs_size + 2 * MiB)
    script = f"label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, size={root_size // SECTOR}, type=83, bootable\n"
    if ntfs_files:
        script += f"start={ntfs_at // SECTOR}, size={ntfs_size // SECTOR}, type=7\n"
        ntfs_uuid = _mkntfs(raw, ntfs_at, ntfs_size, ntfs_files, work, "WINDATA")
        lines.append(f"UUID={ntfs_uuid}\t/srv/windows\tntfs-3g\tro\t0\t0")
        (tree / "srv/windows").mkdir(parents=True, exist_ok=True)
    fstab = _write_fstab(tree, lines)
    _sfdisk(raw, script)
    _mkext4(raw, MiB, root_size, tree, root_uuid, "rootfs")
    _chown(raw, MiB, owners)
    truth: dict[str, Any] = {
        "partitions": [_part("/dev/sda1", 1, MiB, root_size, "mbr", "0x83")],
        "filesystems": [_fs("/dev/sda1", "ext4", root_uuid, "rootfs", root_size)],
        "mountpoints": {"/": "/dev/sda1"}, "fstab": fstab, "lvm": [],
        "fs_offsets": {"/dev/sda1": MiB},
    }
    if ntfs_files:
        truth["partitions"].append(_part("/dev/sda2", 2, ntfs_at, ntfs_size, "mbr", "0x07"))
        truth["filesystems"].append(_fs("/dev/sda2", "ntfs", ntfs_uuid, "WINDATA", ntfs_size - SECTOR))
        truth["mountpoints"]["/srv/windows"] = "/dev/sda2"
        truth["fs_offsets"]["/dev/sda2"] = ntfs_at
    return truth


#: the windows layout's MBR disk: its signature, and each drive's (start, size, label); the system
#: volume C: holds the tree, D: is an empty data volume. Windows' MountedDevices names a volume of
#: an MBR disk by this signature and the volume's start in bytes.
WINDOWS_DISK_SIGNATURE = 0x1A2B3C4D
WINDOWS_VOLUMES = {"C:": (MiB, 64 * MiB, "Windows"), "D:": (65 * MiB, 16 * MiB, "Data")}


def _windows(tree: Path, raw: Path, work: Path) -> dict[str, Any]:
    from tests.ntfsbuild import build_ntfs

    with open(raw, "wb") as handle:
        handle.truncate(82 * MiB)
    _sfdisk(raw, f"label: dos\nlabel-id: {WINDOWS_DISK_SIGNATURE:#010x}\n" + "".join(
        f"start={start // SECTOR}, size={size // SECTOR}, type=7{', bootable' if letter == 'C:' else ''}\n"
        for letter, (start, size, _) in WINDOWS_VOLUMES.items()))
    truth: dict[str, Any] = {"partitions": [], "filesystems": [], "mountpoints": {"/": "/dev/sda1"}, "fstab": None,
                             "lvm": [], "fs_offsets": {}}
    for number, (letter, (start, size, label)) in enumerate(WINDOWS_VOLUMES.items(), start=1):
        part = work / f"ntfs{number}.img"
        serial = build_ntfs(part, size, label, tree if letter == "C:" else None, start_sector=start // SECTOR)
        copy_into(raw, part, [(0, size, start)])
        device = f"/dev/sda{number}"
        truth["partitions"].append(_part(device, number, start, size, "mbr", "0x07"))
        truth["filesystems"].append(_fs(device, "ntfs", serial, label, size - SECTOR))
        truth["fs_offsets"][device] = start
    return truth


def _gpt_table(raw: Path, seed: str, rows: list[tuple[int, int, str, str]]) -> list[str]:
    """A GPT of (start, size, type, name) partitions; returns their (seeded) partition UUIDs."""
    part_uuids = [_uuid(seed + f"/part{n}") for n in range(1, len(rows) + 1)]
    _sfdisk(raw, f"label: gpt\nlabel-id: {_uuid(seed + '/disk')}\n" + "".join(
        f"start={at // SECTOR}, size={size // SECTOR}, type={kind}, uuid={part_uuid}, name=\"{name}\"\n"
        for (at, size, kind, name), part_uuid in zip(rows, part_uuids, strict=True)))
    return part_uuids


def _gpt(tree: Path, raw: Path, seed: str, work: Path, owners: dict[str, tuple[int, int]]) -> dict[str, Any]:
    efi_tree = _carve(tree, "/boot/efi", work / "efi")
    boot_tree = _carve(tree, "/boot", work / "boot")
    (boot_tree / "efi").mkdir(exist_ok=True)
    efi_size, boot_size = 40 * MiB, _fs_mib(boot_tree, 32) * MiB
    root_size = _fs_mib(tree) * MiB
    efi_id = uuid.uuid5(uuid.NAMESPACE_URL, seed + "/efi").hex[:8].upper()
    efi_uuid = f"{efi_id[:4]}-{efi_id[4:]}"
    boot_uuid, root_uuid = _uuid(seed + "/boot"), _uuid(seed + "/root")
    fstab = _write_fstab(tree, [
        f"UUID={root_uuid}\t/\text4\terrors=remount-ro\t0\t1",
        f"UUID={boot_uuid}\t/boot\text4\tdefaults\t0\t2",
        f"UUID={efi_uuid}\t/boot/efi\tvfat\tumask=0077\t0\t1",
    ])
    efi_at, boot_at = MiB, MiB + efi_size
    root_at = boot_at + boot_size
    with open(raw, "wb") as handle:
        handle.truncate(root_at + root_size + MiB)
    part_uuids = _gpt_table(raw, seed, [(efi_at, efi_size, GPT_EFI, "EFI"), (boot_at, boot_size, GPT_LINUX, "boot"),
                                        (root_at, root_size, GPT_LINUX, "root")])
    _mkvfat(raw, efi_at, efi_size, efi_tree, efi_id, "EFI")
    _mkext4(raw, boot_at, boot_size, boot_tree, boot_uuid, "boot")
    _mkext4(raw, root_at, root_size, tree, root_uuid, "root")
    _chown(raw, boot_at, {k: v for k, v in _split_owners(owners, "/boot").items()})
    _chown(raw, root_at, {k: v for k, v in owners.items() if not k.startswith("/boot/") and k != "/boot"})
    return {
        "partitions": [
            _part("/dev/sda1", 1, efi_at, efi_size, "gpt", GPT_EFI.lower(), "EFI"),
            _part("/dev/sda2", 2, boot_at, boot_size, "gpt", GPT_LINUX.lower(), "boot"),
            _part("/dev/sda3", 3, root_at, root_size, "gpt", GPT_LINUX.lower(), "root"),
        ],
        "partition_uuids": part_uuids,
        "filesystems": [
            _fs("/dev/sda1", "vfat", efi_uuid, "EFI", efi_size),
            _fs("/dev/sda2", "ext4", boot_uuid, "boot", boot_size),
            _fs("/dev/sda3", "ext4", root_uuid, "root", root_size),
        ],
        "mountpoints": {"/": "/dev/sda3", "/boot": "/dev/sda2", "/boot/efi": "/dev/sda1"},
        "fstab": fstab, "lvm": [],
        "fs_offsets": {"/dev/sda1": efi_at, "/dev/sda2": boot_at, "/dev/sda3": root_at},
    }


def _lvm(tree: Path, raw: Path, seed: str, work: Path, owners: dict[str, tuple[int, int]]) -> dict[str, Any]:
    boot_tree = _carve(tree, "/boot", work / "boot")
    home_tree = _carve(tree, "/home", work / "home")
    boot_size = _fs_mib(boot_tree, 32) * MiB
    root_extents = -(-_fs_mib(tree) * MiB // EXTENT)
    home_extents = max(4, -(-_fs_mib(home_tree) * MiB // EXTENT))
    home_extents += home_extents % 2
    swap_extents = 2
    pe_count = root_extents + swap_extents + home_extents + 1
    pv_at = MiB + boot_size
    pv_size = MiB + pe_count * EXTENT
    boot_uuid, root_uuid = _uuid(seed + "/boot"), _uuid(seed + "/root")
    home_uuid, swap_uuid = _uuid(seed + "/home"), _uuid(seed + "/swap")
    fstab = _write_fstab(tree, [
        "/dev/mapper/vg0-root\t/\text4\terrors=remount-ro\t0\t1",
        f"UUID={boot_uuid}\t/boot\text4\tdefaults\t0\t2",
        "/dev/vg0/home\t/home\text4\tdefaults\t0\t2",
        f"UUID={swap_uuid}\tnone\tswap\tsw\t0\t0",
    ])
    with open(raw, "wb") as handle:
        handle.truncate(pv_at + pv_size + MiB)
    _sfdisk(raw, "label: dos\nlabel-id: 0x0badcafe\n"
            f"start=2048, size={boot_size // SECTOR}, type=83\n"
            f"start={pv_at // SECTOR}, size={pv_size // SECTOR}, type=8e\n")
    _mkext4(raw, MiB, boot_size, boot_tree, boot_uuid, "boot")
    pe_start = pv_at + MiB
    root_at = pe_start
    root_size = root_extents * EXTENT
    _mkext4(raw, root_at, root_size, tree, root_uuid, "root")
    swap_at = pe_start + root_extents * EXTENT
    _write_swap(raw, swap_at, swap_extents * EXTENT, swap_uuid, "swap0")
    # home: built aside, then stored as two segments in reverse order, with one free extent between
    half = home_extents // 2
    second_pv = root_extents + swap_extents           # holds LV extents [half, home)
    first_pv = second_pv + half + 1                   # holds LV extents [0, half)
    home_file = work / "home.ext4"
    with open(home_file, "wb") as handle:
        handle.truncate(home_extents * EXTENT)
    _mkext4(home_file, 0, home_extents * EXTENT, home_tree, home_uuid, "home")
    _chown(home_file, 0, _split_owners(owners, "/home"))
    copy_into(raw, home_file, [(0, half * EXTENT, pe_start + first_pv * EXTENT),
                                (half * EXTENT, half * EXTENT, pe_start + second_pv * EXTENT)])
    _chown(raw, MiB, _split_owners(owners, "/boot"))
    _chown(raw, root_at, {k: v for k, v in owners.items()
                          if not any(k == m or k.startswith(m + "/") for m in ("/boot", "/home"))})
    vg_id, pv_id = _lvm_id(seed + "/vg"), _lvm_id(seed + "/pv")
    lvs = [
        ("root", _lvm_id(seed + "/lvroot"), [(0, root_extents, 0)]),
        ("swap", _lvm_id(seed + "/lvswap"), [(0, swap_extents, root_extents)]),
        ("home", _lvm_id(seed + "/lvhome"), [(0, half, first_pv), (half, half, second_pv)]),
    ]
    _write_pv(raw, pv_at, pv_size, pv_id, _lvm_metadata("vg0", vg_id, pv_id, pv_size, pe_count, lvs))
    swap_size = swap_extents * EXTENT
    return {
        "partitions": [_part("/dev/sda1", 1, MiB, boot_size, "mbr", "0x83"),
                       _part("/dev/sda2", 2, pv_at, pv_size, "mbr", "0x8e")],
        "filesystems": [
            _fs("/dev/sda1", "ext4", boot_uuid, "boot", boot_size),
            _fs("/dev/vg0/root", "ext4", root_uuid, "root", root_size),
            _fs("/dev/vg0/swap", "swap", swap_uuid, "swap0", swap_size),
            _fs("/dev/vg0/home", "ext4", home_uuid, "home", home_extents * EXTENT),
        ],
        "mountpoints": {"/": "/dev/vg0/root", "/boot": "/dev/sda1", "/home": "/dev/vg0/home"},
        "fstab": fstab,
        "lvm": [{"vg": "vg0", "lvs": {"root": root_size, "swap": swap_size, "home": home_extents * EXTENT},
                 "pv_uuid": pv_id, "vg_uuid": _dashed(vg_id)}],
        "fs_offsets": {"/dev/sda1": MiB, "/dev/vg0/root": root_at, "/dev/vg0/swap": swap_at},
    }


def _rhel_lvm_xfs(tree: Path, raw: Path, seed: str, work: Path, owners: dict[str, tuple[int, int]]) -> dict[str, Any]:
    efi_tree = _carve(tree, "/boot/efi", work / "efi")
    boot_tree = _carve(tree, "/boot", work / "boot")
    (boot_tree / "efi").mkdir(exist_ok=True)
    efi_size, boot_size = 40 * MiB, _xfs_mib(boot_tree) * MiB
    root_extents, swap_extents = -(-_xfs_mib(tree) * MiB // EXTENT), 2
    pe_count = root_extents + swap_extents
    efi_at, boot_at = MiB, MiB + efi_size
    pv_at = boot_at + boot_size
    pv_size = MiB + pe_count * EXTENT
    efi_id = uuid.uuid5(uuid.NAMESPACE_URL, seed + "/efi").hex[:8].upper()
    efi_uuid = f"{efi_id[:4]}-{efi_id[4:]}"
    boot_uuid, root_uuid, swap_uuid = _uuid(seed + "/boot"), _uuid(seed + "/root"), _uuid(seed + "/swap")
    fstab = _write_fstab(tree, [
        "/dev/mapper/rhel-root\t/\txfs\tdefaults\t0\t0",
        f"UUID={boot_uuid}\t/boot\txfs\tdefaults\t0\t0",
        f"UUID={efi_uuid}\t/boot/efi\tvfat\tumask=0077,shortname=winnt\t0\t2",
        "/dev/mapper/rhel-swap\tnone\tswap\tdefaults\t0\t0",
    ])
    with open(raw, "wb") as handle:
        handle.truncate(pv_at + pv_size + MiB)
    part_uuids = _gpt_table(raw, seed, [(efi_at, efi_size, GPT_EFI, "EFI"), (boot_at, boot_size, GPT_LINUX, "boot"),
                                        (pv_at, pv_size, GPT_LVM, "lvm")])
    _mkvfat(raw, efi_at, efi_size, efi_tree, efi_id, "EFI")
    _mkxfs(raw, boot_at, boot_size, boot_tree, boot_uuid, "boot", _split_owners(owners, "/boot"))
    root_at, root_size = pv_at + MiB, root_extents * EXTENT
    _mkxfs(raw, root_at, root_size, tree, root_uuid, "root",
           {k: v for k, v in owners.items() if not (k == "/boot" or k.startswith("/boot/"))})
    swap_at, swap_size = root_at + root_size, swap_extents * EXTENT
    _write_swap(raw, swap_at, swap_size, swap_uuid, "swap")
    vg_id, pv_id = _lvm_id(seed + "/vg"), _lvm_id(seed + "/pv")
    lvs = [("root", _lvm_id(seed + "/lvroot"), [(0, root_extents, 0)]),
           ("swap", _lvm_id(seed + "/lvswap"), [(0, swap_extents, root_extents)])]
    _write_pv(raw, pv_at, pv_size, pv_id, _lvm_metadata("rhel", vg_id, pv_id, pv_size, pe_count, lvs))
    return {
        "partitions": [
            _part("/dev/sda1", 1, efi_at, efi_size, "gpt", GPT_EFI.lower(), "EFI"),
            _part("/dev/sda2", 2, boot_at, boot_size, "gpt", GPT_LINUX.lower(), "boot"),
            _part("/dev/sda3", 3, pv_at, pv_size, "gpt", GPT_LVM.lower(), "lvm"),
        ],
        "partition_uuids": part_uuids,
        "filesystems": [
            _fs("/dev/sda1", "vfat", efi_uuid, "EFI", efi_size),
            _fs("/dev/sda2", "xfs", boot_uuid, "boot", boot_size),
            _fs("/dev/rhel/root", "xfs", root_uuid, "root", root_size),
            _fs("/dev/rhel/swap", "swap", swap_uuid, "swap", swap_size),
        ],
        "mountpoints": {"/": "/dev/rhel/root", "/boot": "/dev/sda2", "/boot/efi": "/dev/sda1"},
        "fstab": fstab,
        "lvm": [{"vg": "rhel", "lvs": {"root": root_size, "swap": swap_size}, "pv_uuid": pv_id,
                 "vg_uuid": _dashed(vg_id)}],
        "fs_offsets": {"/dev/sda1": efi_at, "/dev/sda2": boot_at, "/dev/rhel/root": root_at,
                       "/dev/rhel/swap": swap_at},
    }


def _xfs(tree: Path, raw: Path, seed: str, owners: dict[str, tuple[int, int]]) -> dict[str, Any]:
    root_size = _xfs_mib(tree) * MiB
    root_uuid = _uuid(seed + "/root")
    fstab = _write_fstab(tree, [f"UUID={root_uuid}\t/\txfs\tdefaults\t0\t0"])
    with open(raw, "wb") as handle:
        handle.truncate(root_size + 2 * MiB)
    _sfdisk(raw, f"label: dos\nlabel-id: 0x5eed0001\nstart=2048, size={root_size // SECTOR}, type=83, bootable\n")
    _mkxfs(raw, MiB, root_size, tree, root_uuid, "root", owners)
    return {
        "partitions": [_part("/dev/sda1", 1, MiB, root_size, "mbr", "0x83")],
        "filesystems": [_fs("/dev/sda1", "xfs", root_uuid, "root", root_size)],
        "mountpoints": {"/": "/dev/sda1"}, "fstab": fstab, "lvm": [], "fs_offsets": {"/dev/sda1": MiB},
    }


def convert_raw(raw: Path, out: Path, fmt: str, *, compressed: bool = False, subformat: str | None = None) -> None:
    """qemu-img convert a raw image to ``fmt`` (``compressed`` → qcow2 -c; vmdk subformat option)."""
    if fmt == "raw":
        if raw != out:
            shutil.copyfile(raw, out)
        return
    command = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
    if compressed:
        command.append("-c")
    if subformat:
        command += ["-o", f"subformat={subformat}"]
    _run(command + [str(raw), str(out)])


def build_image(root_dir: Path, out: Path, layout: str = "plain", fmt: str = "raw", *,
                compressed: bool = False, subformat: str | None = None,
                owners: dict[str, tuple[int, int]] | None = None, seed: str | None = None,
                ntfs_files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Pack ``root_dir`` (a guest root tree) into a disk image at ``out``; return the ground truth.

    ``owners`` maps guest paths to (uid, gid) set after packing (everything else is root-owned).
    ``ntfs_files`` (plain layout only) adds an NTFS partition holding those root-level files,
    mounted at /srv/windows by UUID.
    The ground truth holds partitions, filesystems (device, type, uuid, label, size_bytes),
    mountpoints, the fstab text written into the image, lvm facts, and fs_offsets (byte offset of
    each contiguous filesystem in the raw disk).
    """
    if layout not in (*LAYOUTS, WINDOWS_LAYOUT):
        raise ValueError(f"unknown layout {layout!r}; choose from {(*LAYOUTS, WINDOWS_LAYOUT)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    out = Path(out)
    seed = seed or f"{layout}/{Path(root_dir).name}"
    with tempfile.TemporaryDirectory(prefix="imagebuild-", dir=out.parent) as scratch:
        work = Path(scratch)
        tree = work / "root"
        shutil.copytree(root_dir, tree, symlinks=True)
        raw = out if fmt == "raw" else work / "disk.raw"
        builders = {"plain": lambda: _plain(tree, raw, seed, work, owners or {}, ntfs_files),
                    "gpt-boot-efi": lambda: _gpt(tree, raw, seed, work, owners or {}),
                    "lvm": lambda: _lvm(tree, raw, seed, work, owners or {}),
                    "rhel-lvm-xfs": lambda: _rhel_lvm_xfs(tree, raw, seed, work, owners or {}),
                    "xfs": lambda: _xfs(tree, raw, seed, owners or {}),
                    "windows": lambda: _windows(tree, raw, work)}
        truth = builders[layout]()
        convert_raw(raw, out, fmt, compressed=compressed, subformat=subformat)
    truth.update(layout=layout, format=fmt, path=str(out), compressed=compressed or subformat == "streamOptimized")
    return truth


def sample_root(dest: Path) -> dict[str, bytes]:
    """A small Debian-ish root tree for engine tests; returns {guest path: content} of its files."""
    files: dict[str, bytes] = {
        "/usr/lib/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
        "/etc/hostname": b"testvm\n",
        "/etc/hosts": b"127.0.0.1\tlocalhost\n127.0.1.1\ttestvm\n",
        "/etc/passwd": b"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
        "/etc/shadow": b"root:$6$salt$hash:19000:0:99999:7:::\nalice:$6$salt$alicehash:19000:0:99999:7:::\n",
        "/etc/selinux/config": b"SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        "/lib/systemd/system/ssh.service": b"[Unit]\nDescription=OpenBSD Secure Shell server\n",
        "/usr/bin/big": bytes((i * 7919 + i // 251) & 0xFF for i in range(300_000)),
        "/boot/vmlinuz-6.1.0-13-amd64": b"\x7fkernel" * 1000,
        "/boot/efi/EFI/debian/grubx64.efi": b"MZ-efi-binary" * 100,
        "/home/alice/notes.txt": "caf\u00e9 notes\n".encode(),
        "/var/lib/\u00fcnicode-name.txt": b"unicode\n",
    }
    for path, content in files.items():
        target = dest / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (dest / "var/log").mkdir(parents=True, exist_ok=True)
    wants = dest / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    (dest / "etc/os-release").symlink_to("../usr/lib/os-release")
    (dest / "sbin").symlink_to("usr/bin")
    (dest / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-13-amd64")  # resolves across the /boot mount
    (dest / "root").mkdir(exist_ok=True)
    (dest / "etc/fstab").write_text("proc\t/proc\tproc\tdefaults\t0\t0\n")
    return files


class FakeContext:
    """A HandlerContext for handler tests (the real one comes from the Celery adapter)."""

    def __init__(self, allowed_dirs: list[Path], work_dir: Path, *, job_id: str = "job-test",
                 max_disk_size_gb: int | None = None, cancel_after: int | None = None,
                 max_chain_depth: int = 0, limits: Any = None) -> None:  # noqa: ANN401 - app.plugin.limits.Limits
        import logging

        from app.plugin.limits import Limits

        self.job_id = job_id
        self.attempt = 1
        self.logger = logging.LoggerAdapter(logging.getLogger("test.handler"), {})
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.allowed_dirs = allowed_dirs
        self.max_disk_size_gb = max_disk_size_gb
        self.max_chain_depth = max_chain_depth
        self.limits = limits or Limits()
        self.events: list[tuple[str, int, str, dict[str, Any]]] = []
        self._cancel_after = cancel_after

    def report_progress(self, phase: str, percent: int, message: str, details: dict[str, Any] | None = None) -> None:
        self.events.append((phase, int(percent), message, details or {}))

    def cancel_requested(self) -> bool:
        return self._cancel_after is not None and len(self.events) >= self._cancel_after

    def allowed_path(self, path: str | Path, *, must_exist: bool = True) -> Path:
        from app.plugin.paths import resolve_allowed

        return resolve_allowed(path, self.allowed_dirs, must_exist=must_exist)


def sample_guest(base: Path, name: str, fmt: str = "qcow2") -> Path:
    """``base/name``: the sample guest (``sample_root``, plain layout) as an image, built in a new ``base``."""
    base.mkdir(parents=True)
    sample_root(base / "root")
    build_image(base / "root", base / name, fmt=fmt)
    return base / name
