"""The guest-image engine: reads VM disk images offline and unprivileged. Knows nothing about Celery.

    with open_guest("disk.qcow2") as guest:
        tree = guest.root_tree()
        print(read_text(tree, "/etc/os-release"))
"""

from __future__ import annotations

from .checksum import file_sha256, verify_checksum
from .fsprobe import READABLE as READABLE_FILESYSTEMS
from .fstab import FstabEntry, parse_fstab
from .guest import FilesystemInfo, Guest, open_guest, open_pinned
from .partitions import PartitionInfo
from .trust import SUPPORTED_FORMATS, ImageInfo, ImagePolicy, PinnedImage, pinned_image
from .view import GuestView

__all__ = [
    "READABLE_FILESYSTEMS", "SUPPORTED_FORMATS", "FilesystemInfo", "FstabEntry", "Guest", "GuestView",
    "ImageInfo", "ImagePolicy", "PartitionInfo", "PinnedImage", "file_sha256", "open_guest", "open_pinned",
    "parse_fstab", "pinned_image", "verify_checksum",
]
