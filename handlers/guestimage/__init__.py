"""The guest-image engine: reads VM disk images offline and unprivileged. Knows nothing about Celery.

    with open_guest("disk.qcow2") as guest:
        tree = guest.root_tree()
        print(read_text(tree, "/etc/os-release"))
"""

from __future__ import annotations

from .checksum import file_sha256, verify_checksum
from .fsprobe import READABLE as READABLE_FILESYSTEMS
from .fstab import FstabEntry, parse_fstab
from .guest import FilesystemInfo, Guest, open_guest
from .imageinfo import SUPPORTED_FORMATS, ImageInfo, image_info
from .partitions import PartitionInfo
from .view import GuestView

__all__ = [
    "READABLE_FILESYSTEMS", "SUPPORTED_FORMATS", "FilesystemInfo", "FstabEntry", "Guest", "GuestView",
    "ImageInfo", "PartitionInfo", "file_sha256", "image_info", "open_guest", "parse_fstab",
    "verify_checksum",
]
