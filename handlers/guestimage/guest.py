"""Opening a disk image: format, partitions, LVM, filesystems, root and mountpoints."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.plugin.errors import JobError
from app.plugin.limits import Limits
from handlers.tree import read_text, record_truncation

from . import lvm
from .bitlocker import read_bitlocker
from .blockdev import BlockDevice, CachedDevice, LinearDevice, RawFileDevice, SliceDevice
from .btrfsfs import FS_TREE, BtrfsError, BtrfsFilesystem, BtrfsVolume
from .encrypted import EncryptedVolume, read_luks
from .errors import encrypted, unsupported
from .fsentry import Filesystem
from .fsprobe import ENCRYPTED, READABLE, probe
from .fstab import FstabEntry, parse_fstab
from .nbd import NbdDevice
from .partitions import PartitionInfo, check_overlaps, has_gpt, has_mbr_signature, parse_gpt, parse_mbr
from .trust import ImageInfo, ImagePolicy, PinnedImage, pinned_image
from .tskfs import TskFilesystem
from .view import GuestView
from .xfsfs import XfsFilesystem, log_is_dirty

Progress = Callable[[int, str], None]
DISK = "/dev/sda"
_PART_NAME = re.compile(r"^/dev/(?:[shv]da|xvda|nvme0n1p|mmcblk0p)(\d+)$")
_WHOLE_DISK = re.compile(r"^/dev/(?:[shv]da|xvda|nvme0n1|mmcblk0)$")
#: the header reader of each kind of encrypted volume ``fsprobe.ENCRYPTED`` names
_HEADER_READERS: dict[str, Callable[[BlockDevice], EncryptedVolume]] = {"crypto_LUKS": read_luks,
                                                                         "BitLocker": read_bitlocker}
_VIRTUAL_FS = {"swap", "none", "proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "cgroup", "cgroup2",
               "securityfs", "debugfs", "nfs", "nfs4", "cifs", "bind", "overlay", "auto"}


@dataclass
class FilesystemInfo:
    device: str
    type: str
    uuid: str | None
    label: str | None
    size_bytes: int | None
    partition: int | None = None
    #: where the filesystem starts in the disk image when it is one contiguous run (else None)
    offset_bytes: int | None = None
    #: what the reader could not vouch for (an XFS whose log is dirty is read as it stands)
    warning: str | None = None
    #: an encrypted volume's header facts (``encrypted.EncryptedVolume``); None for anything else
    encryption: dict[str, Any] | None = None
    #: btrfs: every subvolume {id, path, default, mountpoints}; None for other filesystems
    subvolumes: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Guest:
    """A disk image opened read-only. Use through ``open_guest``."""

    def __init__(self, image: ImageInfo, dev: BlockDevice, progress: Progress | None = None,
                 limits: Limits | None = None) -> None:
        self.image = image
        #: what reads through this guest's trees may take (``app.plugin.limits``), and what was cut:
        #: partitions and volumes here, files by its trees, which share the list
        self.limits = limits or Limits()
        self.truncated: list[dict[str, Any]] = []
        self.partitions: list[PartitionInfo] = []
        self.filesystems: list[FilesystemInfo] = []
        self.lvm: list[dict[str, Any]] = []
        self.mountpoints: dict[str, str] = {}
        self.fstab: list[FstabEntry] = []
        self.unplaced_mounts: list[dict[str, str]] = []
        self.root_device: str | None = None
        #: an MBR disk's signature (Windows names its volumes by it and their offsets)
        self.disk_signature: int | None = None
        self._dev = dev
        self._progress = progress
        self._devices: dict[str, BlockDevice] = {}
        #: device (and btrfs subvolume id) -> its open filesystem
        self._open_fs: dict[tuple[str, int | None], Filesystem] = {}
        self._btrfs: dict[str, BtrfsVolume] = {}
        #: device -> the btrfs subvolume that holds the guest's root, when it is not the default one
        self._root_subvolume: dict[str, int] = {}
        #: device -> why its filesystem could not be opened (when looking for the root)
        self._unopened: dict[str, str] = {}
        #: device -> the header facts of each encrypted volume found
        self._encrypted: dict[str, EncryptedVolume] = {}
        #: mountpoint -> (device, subvolume id) of each btrfs subvolume the guest mounts
        self._mounted_subvolumes: dict[str, tuple[str, int]] = {}
        self._root_fs: Filesystem | None = None
        self._root_view: GuestView | None = None
        self._scan()

    def _report(self, percent: int, message: str) -> None:
        if self._progress is not None:
            self._progress(percent, message)

    # -- scanning -------------------------------------------------------------------------
    def _scan(self) -> None:
        if self._dev.size < 1024:
            raise unsupported("the image is too small to hold a disk", virtual_size=self._dev.size)
        self._report(40, "reading partition table")
        sector0 = self._dev.read(0, 512)
        whole = probe(self._dev)
        if has_gpt(self._dev):
            self.partitions = parse_gpt(self._dev, DISK)
        elif has_mbr_signature(sector0) and whole.type not in ("vfat", "ntfs"):
            self.partitions = parse_mbr(self._dev, DISK)
            self.disk_signature = int.from_bytes(sector0[440:444], "little")
        check_overlaps(self.partitions)
        budget = self.limits.max_volumes  # partitions and logical volumes looked at
        if len(self.partitions) > budget:
            record_truncation(self.truncated, f"partition table of {DISK}", "max_volumes", budget,
                              len(self.partitions))
            self.partitions = self.partitions[:budget]
        looked = len(self.partitions)
        pvs: list[lvm.PhysicalVolume] = []
        found: list[tuple[str, BlockDevice, int | None, int | None]] = []
        if self.partitions:
            for part in self.partitions:
                dev = SliceDevice(self._dev, part.start_bytes, part.size_bytes)
                found.append((part.device, dev, part.number, part.start_bytes))
        else:
            found.append((DISK, self._dev, None, 0))
        self._report(55, "identifying filesystems")
        for name, dev, number, offset in found:
            kind = probe(dev)
            if kind.type == "LVM2_member":
                pv = lvm.read_pv(name, dev)
                if pv is not None:
                    pvs.append(pv)
                continue
            if kind.type == "unknown":
                continue  # the partition is listed; an unrecognised filesystem is not
            self._add_fs(name, dev, kind, number, offset)
        for vg in lvm.assemble(pvs):
            self.lvm.append(vg.as_dict())
            for lv in vg.lvs:
                if lv.device is None:
                    continue
                if looked >= budget:
                    record_truncation(self.truncated, f"volume group {vg.name}", "max_volumes", budget, None)
                    break
                looked += 1
                self._devices[lv.device_name] = self._devices[lv.mapper_name] = lv.device
                kind = probe(lv.device)
                if kind.type != "unknown":
                    self._add_fs(lv.device_name, lv.device, kind, None, self._lv_offset(lv.device))
        for fs in self.filesystems:
            if fs.type == "ntfs":  # its label lives in a file, not in the boot sector
                try:
                    fs.label = self._fs(fs.device).volume_label()
                except JobError:
                    pass
        if not any(fs.type in READABLE for fs in self.filesystems):
            self._refuse_if_encrypted("no filesystem outside")
            raise unsupported(
                "no readable filesystem found in the image: "
                + (", ".join(f"{fs.type} on {fs.device}" for fs in self.filesystems)
                   or ("no partition table or filesystem" if not self.partitions else "unrecognised partitions")),
                format=self.image.format,
                partitions=[asdict(p) for p in self.partitions],
                filesystems=[fs.as_dict() for fs in self.filesystems],
                lvm=self.lvm,
                first_bytes=sector0[:16].hex(),
            )
        self._report(70, "image opened")

    def _lv_offset(self, dev: LinearDevice) -> int | None:
        where = dev.contiguous_offset()
        if where is None or not isinstance(where[0], SliceDevice):
            return None
        return where[0].start + where[1]

    def _add_fs(self, name: str, dev: BlockDevice, kind: Any, number: int | None, offset: int | None) -> None:
        self._devices[name] = dev
        warning = None
        if kind.type == "xfs" and log_is_dirty(dev):
            warning = (f"the XFS log of {name} is dirty (the image was taken while it was mounted, as of a running "
                       "VM): it is read as it stands, without replaying the log; its most recent changes may be "
                       "missing")
        volume = _HEADER_READERS[kind.type](dev) if kind.type in ENCRYPTED else None
        if volume is not None:
            self._encrypted[name] = volume
        fs_uuid = kind.uuid or (volume.uuid if volume else None)  # BitLocker's volume GUID is in its metadata
        self.filesystems.append(FilesystemInfo(name, kind.type, fs_uuid, kind.label, kind.size_bytes, number, offset,
                                               warning, volume.as_dict() if volume else None))

    def _refuse_if_encrypted(self, what: str) -> None:
        """ENCRYPTED_VOLUME naming the encrypted volumes, when there are any: what was looked for is
        likely inside one of them."""
        if not self._encrypted:
            return
        named = "; ".join(f"{device}: {volume.summary()}" for device, volume in self._encrypted.items())
        raise encrypted(f"{what} the encrypted volume{'s' if len(self._encrypted) > 1 else ''} of this image, "
                        f"which cannot be read without a key: {named}",
                        [fs.as_dict() for fs in self.filesystems if fs.device in self._encrypted],
                        filesystems=[fs.as_dict() for fs in self.filesystems])

    @property
    def warnings(self) -> list[str]:
        """What the report must say it could not read as the guest would see it."""
        return [fs.warning for fs in self.filesystems if fs.warning]

    # -- filesystems and trees ----------------------------------------------------------------
    def filesystem(self, device: str) -> FilesystemInfo | None:
        for fs in self.filesystems:
            if fs.device == device:
                return fs
        return None

    def _fs(self, device: str, subvolume: int | None = None) -> Filesystem:
        """The filesystem on ``device``; on btrfs, subvolume ``subvolume`` (default: the default one)."""
        info = self.filesystem(device)
        if info is None or info.type not in READABLE:
            kind = info.type if info else "nothing"
            raise unsupported(f"{device} holds {kind}, which the engine cannot read", device=device, type=kind)
        if info.type == "btrfs" and subvolume is None:
            try:
                subvolume = self._btrfs_volume(device).default_subvolume()
            except BtrfsError as exc:
                raise unsupported(f"cannot read btrfs on {device}: {exc}", device=device, type="btrfs") from exc
        key = (device, subvolume)
        if key not in self._open_fs:
            if info.type == "btrfs":
                assert subvolume is not None
                self._open_fs[key] = BtrfsFilesystem(self._btrfs_volume(device), subvolume, device)
            else:
                reader = XfsFilesystem if info.type == "xfs" else TskFilesystem
                self._open_fs[key] = reader(self._devices[device], info.type, device)
        return self._open_fs[key]

    @property
    def root_subvolume(self) -> str | None:
        """The path of the btrfs subvolume the root is (``@/.snapshots/1/snapshot``); None off btrfs."""
        mounted = self._mounted_subvolumes.get("/")
        if mounted is None:
            return None
        try:
            return self._btrfs[mounted[0]].subvolume_paths().get(mounted[1])
        except BtrfsError:
            return None

    def _btrfs_volume(self, device: str) -> BtrfsVolume:
        if device not in self._btrfs:
            try:
                self._btrfs[device] = BtrfsVolume(self._devices[device], device)
            except BtrfsError as exc:
                raise unsupported(f"cannot open btrfs on {device}: {exc}", device=device, type="btrfs") from exc
        return self._btrfs[device]

    def _subvolume_named(self, device: str, options: tuple[str, ...]) -> int | None:
        """The subvolume an fstab entry's ``subvol=`` or ``subvolid=`` names (None: the default one)."""
        volume = self._btrfs_volume(device)
        for option in options:
            name, _, value = option.partition("=")
            if name == "subvolid" and value.isdigit():
                return int(value)
            if name == "subvol":
                wanted = value.strip("/")
                if not wanted:
                    return FS_TREE
                try:
                    paths = volume.subvolume_paths()
                except BtrfsError as exc:
                    raise unsupported(f"cannot list the subvolumes of {device}: {exc}", device=device) from exc
                for tree, path in paths.items():
                    if path == wanted:
                        return tree
                raise unsupported(f"no subvolume {value} on {device}", device=device, subvolume=value)
        return None

    def _list_subvolumes(self) -> None:
        """The ``subvolumes`` of each btrfs filesystem, with where the guest mounts them."""
        for info in self.filesystems:
            if info.type != "btrfs" or info.device not in self._btrfs:
                continue
            volume = self._btrfs[info.device]
            mounted: dict[int, list[str]] = {}
            for point, (device, tree) in self._mounted_subvolumes.items():
                if device == info.device:
                    mounted.setdefault(tree, []).append(point)
            try:
                default, paths = volume.default_subvolume(), volume.subvolume_paths()
            except BtrfsError as exc:
                info.warning = f"the subvolumes of {info.device} could not be listed: {exc}"
                continue
            budget = self.limits.max_volumes
            if len(paths) > budget:
                record_truncation(self.truncated, f"subvolumes of {info.device}", "max_volumes", budget, len(paths))
            info.subvolumes = [{"id": tree, "path": path or "/", "default": tree == default,
                                "mountpoints": sorted(mounted.get(tree, []))}
                               for tree, path in sorted(paths.items())[:budget]]

    def filesystem_tree(self, device: str) -> GuestView:
        """One filesystem on its own, as a guest tree rooted at its top directory."""
        return GuestView({"/": self._fs(device)}, self.limits, self.truncated)

    def _looks_like_root(self, device: str) -> bool:
        try:
            if self._holds_a_root(self._fs(device)):
                return True
            info = self.filesystem(device)
            if info is None or info.type != "btrfs":
                return False
            # Fedora mounts subvol=root, its default being the top level: look in each subvolume
            volume = self._btrfs_volume(device)
            for tree in sorted(volume.subvolume_paths())[:self.limits.max_volumes]:
                if tree != volume.default_subvolume() and self._holds_a_root(self._fs(device, tree)):
                    self._root_subvolume[device] = tree
                    return True
        except JobError as exc:
            self._unopened[device] = exc.message
        except BtrfsError as exc:
            self._unopened[device] = f"cannot read btrfs on {device}: {exc}"
        return False  # a broken non-root filesystem must not hide the root

    @staticmethod
    def _holds_a_root(fs: Filesystem) -> bool:
        for marker in ("/etc/fstab", "/etc/os-release", "/usr/lib/os-release", "/etc/passwd"):
            if fs.entry(marker) is not None:
                return True
        entry = fs.entry("/Windows/System32/config")
        return entry is not None and entry.info.type == "dir"

    def find_device(self, spec: str) -> str | None:
        """The device an fstab spec (UUID=, LABEL=, PARTUUID=, /dev/…) names in this image."""
        entry = FstabEntry(spec, "", "", (), 0, 0, 0)
        kind, value = entry.spec_kind, entry.spec_value
        if value.startswith("/dev/disk/by-"):
            sub, _, tail = value[len("/dev/disk/by-"):].partition("/")
            kind, value = {"uuid": "uuid", "label": "label", "partuuid": "partuuid",
                           "partlabel": "partlabel"}.get(sub, "other"), tail
        for fs in self.filesystems:
            if kind == "uuid" and fs.uuid and fs.uuid.lower() == value.lower():
                return fs.device
            if kind == "label" and fs.label == value:
                return fs.device
        for part in self.partitions:
            if kind == "partuuid" and part.uuid and part.uuid.lower() == value.lower():
                return part.device
            if kind == "partlabel" and part.name == value:
                return part.device
        if kind != "device":
            return None
        if value in self._devices:
            return value
        match = _PART_NAME.match(value)
        if match:
            name = f"{DISK}{match.group(1)}"
            return name if name in self._devices else None
        if _WHOLE_DISK.match(value) and DISK in self._devices:
            return DISK
        return None

    def _crypttab_source(self, spec: str) -> str | None:
        """The encrypted volume behind ``/dev/mapper/NAME``, as the guest's /etc/crypttab names it."""
        name = spec.removeprefix("/dev/mapper/")
        if name == spec or not self._encrypted or self._root_fs is None:
            return None
        text = read_text(GuestView({"/": self._root_fs}, self.limits, self.truncated), "/etc/crypttab") or ""
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("#") and fields[0] == name:
                device = self.find_device(fields[1])
                return device if device in self._encrypted else None
        return None

    def root_tree(self) -> GuestView:
        """The guest's root filesystem with the others placed at their fstab mountpoints."""
        if self._root_view is not None:
            return self._root_view
        self._report(75, "looking for the root filesystem")
        readable = [fs.device for fs in self.filesystems if fs.type in READABLE]
        roots = [device for device in readable if self._looks_like_root(device)]
        if not roots:
            self._refuse_if_encrypted("no root filesystem (with /etc or /Windows) found outside")
            unopened = "".join(f"; {message}" for message in self._unopened.values())
            raise unsupported("no root filesystem (with /etc or /Windows) found" + unopened,
                              filesystems=[fs.as_dict() for fs in self.filesystems], unopened=self._unopened)
        roots.sort(key=lambda d: 0 if self._fs(d, self._root_subvolume.get(d)).entry("/etc/fstab") else 1)
        root = roots[0]
        self.root_device = root
        self._root_fs = self._fs(root, self._root_subvolume.get(root))
        mounts: dict[str, Filesystem] = {"/": self._root_fs}
        self.mountpoints = {"/": root}
        if isinstance(self._root_fs, BtrfsFilesystem):
            self._mounted_subvolumes["/"] = (root, self._root_fs.subvolume)
        text = read_text(GuestView(mounts, self.limits, self.truncated), "/etc/fstab")
        self.fstab = parse_fstab(text or "")
        for entry in self.fstab:
            point = os.path.normpath(entry.mountpoint) if entry.mountpoint.startswith("/") else ""
            if not point or point == "/" or entry.fstype in _VIRTUAL_FS:
                continue
            device = self.find_device(entry.spec) or self._crypttab_source(entry.spec)
            info = self.filesystem(device) if device else None
            if device is None or info is None or info.type not in READABLE:
                reason = ("not found in the image" if info is None
                          else f"encrypted: {self._encrypted[device].summary()}" if device in self._encrypted
                          else f"{info.type} is not readable")
                self.unplaced_mounts.append({"mountpoint": point, "spec": entry.spec, "reason": reason})
                continue
            subvolume = None
            if info.type == "btrfs":
                try:
                    subvolume = self._subvolume_named(device, entry.options)
                except JobError as exc:
                    self.unplaced_mounts.append({"mountpoint": point, "spec": entry.spec, "reason": exc.message})
                    continue
            fs = self._fs(device, subvolume)
            mounts[point] = fs
            self.mountpoints[point] = device
            if isinstance(fs, BtrfsFilesystem):
                self._mounted_subvolumes[point] = (device, fs.subvolume)
        self._root_view = GuestView(mounts, self.limits, self.truncated)
        self._list_subvolumes()
        self._report(90, "root filesystem found")
        return self._root_view

    def close(self) -> None:
        self._open_fs.clear()
        self._btrfs.clear()
        self._dev.close()


@contextmanager
def open_guest(path: str | Path, fmt: str | None = None, *, progress: Progress | None = None,
               max_size_bytes: int | None = None, policy: ImagePolicy | None = None,
               limits: Limits | None = None) -> Iterator[Guest]:
    """Open a disk image read-only. Raises JobError (IMAGE_NOT_FOUND, UNSUPPORTED_IMAGE, IMAGE_NOT_ALLOWED).

    What the image may make qemu open is decided by ``policy`` (``trust.pinned_image``); without
    one, the image's own directory is the only allowed one and no backing file is opened.
    """
    if policy is None:
        policy = ImagePolicy((Path(os.path.realpath(path)).parent,))
    if progress is not None:
        progress(5, "reading image format")
    with pinned_image(path, fmt, policy) as image:
        with open_pinned(image, progress=progress, max_size_bytes=max_size_bytes, limits=limits) as guest:
            yield guest


@contextmanager
def open_pinned(image: PinnedImage, *, progress: Progress | None = None,
                max_size_bytes: int | None = None, limits: Limits | None = None) -> Iterator[Guest]:
    """A guest over an image already checked and opened by ``trust.pinned_image``."""
    info = image.info
    assert info is not None
    if max_size_bytes is not None and info.virtual_size > max_size_bytes:
        raise unsupported(f"image virtual size {info.virtual_size} exceeds the limit of {max_size_bytes} bytes",
                          virtual_size=info.virtual_size, max_size_bytes=max_size_bytes)
    if progress is not None:
        progress(20, f"attaching {info.format} image")
    dev: BlockDevice
    only_file = info.format == "raw" and len(info.chain) == 1
    dev = RawFileDevice(image.raw_path) if only_file else CachedDevice(NbdDevice(image.qemu_name, info.format))
    try:
        guest = Guest(info, dev, progress, limits)
    except BaseException:
        dev.close()
        raise
    try:
        yield guest
    finally:
        guest.close()
