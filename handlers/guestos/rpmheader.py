"""rpm header blobs: what every rpm database format stores, one per installed package.

A blob is ``il`` (int32 index count), ``dl`` (int32 data length), ``il`` index entries of four
big-endian int32 (tag, type, offset, count), then ``dl`` bytes of data. Every offset and count is
checked against the blob: the blob comes from the guest.
"""

from __future__ import annotations

import struct
from typing import Any

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
TAG_SUMMARY, TAG_INSTALLTIME, TAG_SIZE, TAG_VENDOR, TAG_LICENSE = 1004, 1008, 1009, 1011, 1014
TAG_SOURCERPM, TAG_LONGSIZE = 1044, 5009
_STRING_TYPES = (6, 8, 9)  # STRING, STRING_ARRAY, I18NSTRING
_INT_TYPES = {2: ("b", 1), 3: (">h", 2), 4: (">i", 4), 5: (">q", 8)}
MAX_ENTRIES = 100_000
#: elements of one array tag read at most (file lists of a package stay far below)
MAX_COUNT = 1_000_000


class RpmError(ValueError):
    """A header blob or an rpm database that cannot be read."""


class TooManyPackages(RpmError):
    """The database holds more packages than the job may read."""

    def __init__(self, most: int) -> None:
        super().__init__(f"more than {most} packages")
        self.most = most


class PartialRead(RpmError):
    """Some headers were unreadable; ``packages`` holds the others."""

    def __init__(self, packages: list[dict[str, Any]], message: str) -> None:
        super().__init__(message)
        self.packages = packages


def decode_header(blob: bytes, wanted: frozenset[int] | None = None) -> dict[int, Any]:
    """Tag -> value (str, int, list or bytes) for the tags in ``wanted`` (all when None)."""
    if len(blob) < 8:
        raise RpmError("header shorter than 8 bytes")
    il, dl = struct.unpack_from(">ii", blob, 0)
    data_start = 8 + il * 16
    if il < 0 or dl < 0 or il > MAX_ENTRIES or data_start + dl > len(blob):
        raise RpmError(f"bad header sizes il={il} dl={dl} for {len(blob)} bytes")
    data = blob[data_start:data_start + dl]
    values: dict[int, Any] = {}
    for index in range(il):
        tag, kind, offset, count = struct.unpack_from(">iiii", blob, 8 + index * 16)
        if wanted is not None and tag not in wanted:
            continue
        if not 0 <= offset <= dl or not 0 <= count <= MAX_COUNT:
            raise RpmError(f"tag {tag}: offset {offset} or count {count} outside data of {dl} bytes")
        values[tag] = _decode_value(data, kind, offset, count)
    return values


def _decode_value(data: bytes, kind: int, offset: int, count: int) -> Any:  # noqa: ANN401 - a tag's value
    if kind in _STRING_TYPES:
        strings = []
        position = offset
        for _ in range(max(count, 1) if kind != 6 else 1):
            end = data.find(b"\0", position)
            if end < 0:
                raise RpmError("unterminated string")
            strings.append(data[position:end].decode("utf-8", errors="replace"))
            position = end + 1
        return strings[0] if kind in (6, 9) else strings
    if kind in _INT_TYPES:
        fmt, size = _INT_TYPES[kind]
        if offset + size * count > len(data):
            raise RpmError("integer array past end of data")
        items = [struct.unpack_from(fmt, data, offset + i * size)[0] for i in range(count)]
        return items[0] if count == 1 else items
    return data[offset:offset + count]


_PACKAGE_TAGS = frozenset({TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH, TAG_SUMMARY, TAG_INSTALLTIME,
                           TAG_SIZE, TAG_LONGSIZE, TAG_VENDOR, TAG_LICENSE, TAG_SOURCERPM})


def _text(value: Any) -> str | None:  # noqa: ANN401
    """A string tag; rpm writes ``(none)`` for some it has no value for (a key's source rpm)."""
    return value if isinstance(value, str) and value != "(none)" else None


def _number(value: Any) -> int | None:  # noqa: ANN401
    return value if isinstance(value, int) else None


def package_from_header(blob: bytes) -> dict[str, Any]:
    """The package a header describes: name, epoch, version, release, arch, and where the header
    has them source_rpm, install_time (Unix time), size (bytes installed), license, vendor, summary."""
    tags = decode_header(blob, _PACKAGE_TAGS)
    size = _number(tags.get(TAG_LONGSIZE))
    return {
        "name": _text(tags.get(TAG_NAME)), "epoch": _number(tags.get(TAG_EPOCH)),
        "version": _text(tags.get(TAG_VERSION)), "release": _text(tags.get(TAG_RELEASE)),
        "arch": _text(tags.get(TAG_ARCH)), "source_rpm": _text(tags.get(TAG_SOURCERPM)),
        "install_time": _number(tags.get(TAG_INSTALLTIME)),
        "size": size if size is not None else _number(tags.get(TAG_SIZE)),
        "license": _text(tags.get(TAG_LICENSE)), "vendor": _text(tags.get(TAG_VENDOR)),
        "summary": _text(tags.get(TAG_SUMMARY)),
    }


def packages_from_headers(blobs: list[bytes]) -> list[dict[str, Any]]:
    """The packages of a database's header blobs; raises ``PartialRead`` (holding the readable
    ones) when some cannot be decoded."""
    packages = []
    corrupt = 0
    for blob in blobs:
        try:
            package = package_from_header(blob)
        except RpmError:
            corrupt += 1
            continue
        if package["name"]:
            packages.append(package)
    if corrupt:
        raise PartialRead(packages, f"{corrupt} of {len(blobs)} package headers could not be decoded")
    return packages
