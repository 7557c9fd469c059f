"""LZO1X decompression, and btrfs's framing of it, for compressed btrfs extents.

Ours because no permissively licensed binding fits: python-lzo is GPL-2.0. The algorithm follows the
Linux kernel's ``lib/lzo/lzo1x_decompress_safe.c`` (bitstream version 0, which btrfs writes): every
length and distance is checked against the input and the output written so far, and the output is
bounded, so a hostile stream ends in ``LzoError``, never a read or write out of bounds.

btrfs frames it (``fs/btrfs/lzo.c``): the total length (4 bytes, little-endian, itself included), then
segments of a 4-byte length and that many bytes of LZO1X, each decompressing to one sector at most; a
segment header never straddles a sector boundary (the bytes left before one are skipped).
"""

from __future__ import annotations

import struct

_M2_MAX_OFFSET = 0x0800


class LzoError(ValueError):
    pass


def _run_length(src: bytes, ip: int, base: int) -> tuple[int, int]:
    """A length whose low part was zero: 255 per zero byte, then ``base`` plus the next byte."""
    start = ip
    while ip < len(src) and src[ip] == 0:
        ip += 1
    if ip >= len(src):
        raise LzoError("input ends inside a length")
    return (ip - start) * 255 + base + src[ip], ip + 1


def decompress(src: bytes, limit: int) -> bytes:
    """Decompress one LZO1X stream into at most ``limit`` bytes."""
    out = bytearray()
    ip, n = 0, len(src)

    def literals(count: int) -> None:
        nonlocal ip
        if ip + count > n:
            raise LzoError("input ends inside a literal run")
        if len(out) + count > limit:
            raise LzoError("output exceeds its bound")
        out.extend(src[ip:ip + count])
        ip += count

    def copy_match(distance_from_end: int, count: int) -> None:
        start = len(out) - distance_from_end
        if start < 0:
            raise LzoError("a match points before the start of the output")
        if len(out) + count > limit:
            raise LzoError("output exceeds its bound")
        for k in range(count):  # may overlap what it writes
            out.append(out[start + k])

    if n == 0:
        raise LzoError("empty input")
    state = 0
    if src[0] > 17:
        t = src[0] - 17
        ip = 1
        literals(t)
        state = t if t < 4 else 4
    while True:
        if ip >= n:
            raise LzoError("input ends without an end marker")
        t = src[ip]
        ip += 1
        if t < 16:
            if state == 0:
                if t == 0:
                    t, ip = _run_length(src, ip, 15)
                literals(t + 3)
                state = 4
                continue
            if ip >= n:
                raise LzoError("input ends inside a match")
            following = t & 3
            if state != 4:  # a 2-byte match just after a short literal run
                copy_match(1 + (t >> 2) + (src[ip] << 2), 2)
            else:  # a 3-byte match past M2's reach, after a longer literal run
                copy_match(1 + _M2_MAX_OFFSET + (t >> 2) + (src[ip] << 2), 3)
            ip += 1
        elif t >= 64:
            if ip >= n:
                raise LzoError("input ends inside a match")
            following = t & 3
            copy_match(1 + ((t >> 2) & 7) + (src[ip] << 3), (t >> 5) + 1)
            ip += 1
        elif t >= 32:
            length = (t & 31) + 2
            if length == 2:
                length, ip = _run_length(src, ip, 31 + 2)
            if ip + 2 > n:
                raise LzoError("input ends inside a match")
            word, = struct.unpack_from("<H", src, ip)
            ip += 2
            following = word & 3
            copy_match(1 + (word >> 2), length)
        else:
            length = (t & 7) + 2
            if length == 2:
                length, ip = _run_length(src, ip, 7 + 2)
            if ip + 2 > n:
                raise LzoError("input ends inside a match")
            word, = struct.unpack_from("<H", src, ip)
            ip += 2
            distance = ((t & 8) << 11) + (word >> 2)
            following = word & 3
            if distance == 0:
                if length != 3:
                    raise LzoError("malformed end marker")
                return bytes(out)
            copy_match(distance + 0x4000, length)
        state = following
        literals(following)


def decompress_btrfs(data: bytes, limit: int, sector_size: int = 4096) -> bytes:
    """A btrfs LZO extent (framed as described above) into at most ``limit`` bytes."""
    if len(data) < 4:
        raise LzoError("compressed extent too short")
    total, = struct.unpack_from("<I", data, 0)
    if not 4 <= total <= len(data):
        raise LzoError(f"compressed length {total} does not fit the extent of {len(data)} bytes")
    out = bytearray()
    at = 4
    while at < total and len(out) < limit:
        left_in_sector = sector_size - at % sector_size
        if left_in_sector < 4:
            at += left_in_sector  # a segment header never straddles a sector boundary
            continue
        if at + 4 > total:
            break
        length, = struct.unpack_from("<I", data, at)
        at += 4
        if length == 0 or at + length > total:
            raise LzoError(f"segment of {length} bytes at byte {at - 4} does not fit the extent")
        out += decompress(data[at:at + length], min(sector_size, limit - len(out)))
        at += length
    return bytes(out)
