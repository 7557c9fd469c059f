"""LVM2: physical volume labels, the metadata area, and linear logical volumes."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .blockdev import BlockDevice, Extent, LinearDevice
from .errors import unsupported
from .lvmmeta import parse_lvm_text

SECTOR = 512
INITIAL_CRC = 0xF597A6CF
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
MAX_METADATA = 16 * 1024 * 1024


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """LVM2's calc_crc: the CRC-32 update without the initial and final inversion."""
    return (~zlib.crc32(data, (~initial) & 0xFFFFFFFF)) & 0xFFFFFFFF


@dataclass
class PhysicalVolume:
    device_name: str
    device: BlockDevice
    uuid: str  # 32 characters, no dashes
    metadata_text: str | None


@dataclass
class LogicalVolume:
    vg: str
    name: str
    device_name: str  # /dev/vg/lv
    mapper_name: str  # /dev/mapper/vg-lv
    size_bytes: int
    segments: list[dict[str, Any]]
    device: LinearDevice | None = None
    reason: str | None = None


@dataclass
class VolumeGroup:
    name: str
    uuid: str
    seqno: int
    extent_size_bytes: int
    pvs: dict[str, PhysicalVolume] = field(default_factory=dict)
    lvs: list[LogicalVolume] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vg": self.name, "uuid": self.uuid, "seqno": self.seqno,
            "extent_size_bytes": self.extent_size_bytes,
            "pvs": [{"name": k, "device": v.device_name, "uuid": v.uuid} for k, v in self.pvs.items()],
            "lvs": [{"name": lv.name, "device": lv.device_name, "mapper": lv.mapper_name,
                     "size_bytes": lv.size_bytes, "segments": lv.segments,
                     "supported": lv.device is not None, "reason": lv.reason} for lv in self.lvs],
        }


def _read_label(dev: BlockDevice) -> tuple[int, bytes] | None:
    for sector in range(4):
        raw = dev.read(sector * SECTOR, SECTOR)
        if raw[:8] == b"LABELONE" and raw[24:32] == b"LVM2 001":
            return sector * SECTOR, raw
    return None


def read_pv(device_name: str, dev: BlockDevice) -> PhysicalVolume | None:
    """The PV on ``dev`` with its newest metadata text, or None if ``dev`` has no LVM2 label."""
    found = _read_label(dev)
    if found is None:
        return None
    _label_at, raw = found
    crc, = struct.unpack_from("<I", raw, 16)
    if lvm_crc(raw[20:SECTOR]) != crc:
        raise unsupported("LVM2 label checksum mismatch", device=device_name)
    offset, = struct.unpack_from("<I", raw, 20)
    if not 32 <= offset <= SECTOR - 48:
        raise unsupported("LVM2 label has an invalid header offset", device=device_name)
    header = raw[offset:]
    pv_uuid = header[:32].decode("ascii", errors="replace")
    areas: list[list[tuple[int, int]]] = [[], []]
    pos, which = 40, 0
    while which < 2 and pos + 16 <= len(header):
        area_offset, area_size = struct.unpack_from("<QQ", header, pos)
        pos += 16
        if area_offset == 0 and area_size == 0:
            which += 1
            continue
        areas[which].append((area_offset, area_size))
    text = None
    for mda_offset, mda_size in areas[1]:
        text = _read_mda(device_name, dev, mda_offset, mda_size) or text
    return PhysicalVolume(device_name, dev, pv_uuid, text)


def _read_mda(device_name: str, dev: BlockDevice, start: int, size: int) -> str | None:
    if size < MDA_HEADER_SIZE or start + size > dev.size:
        raise unsupported("LVM2 metadata area lies outside the volume", device=device_name,
                          start=start, size=size)
    header = dev.read(start, MDA_HEADER_SIZE)
    crc, = struct.unpack_from("<I", header, 0)
    if header[4:20] != MDA_MAGIC:
        raise unsupported("LVM2 metadata area header has a bad magic", device=device_name)
    if lvm_crc(header[4:MDA_HEADER_SIZE]) != crc:
        raise unsupported("LVM2 metadata area header checksum mismatch", device=device_name)
    text_offset, text_size, text_crc, _flags = struct.unpack_from("<QQII", header, 40)
    if text_size == 0:
        return None
    if text_size > min(MAX_METADATA, size - MDA_HEADER_SIZE) or text_offset >= size \
            or text_offset < MDA_HEADER_SIZE:
        raise unsupported("LVM2 metadata location is out of range", device=device_name,
                          offset=text_offset, size=text_size)
    first = min(text_size, size - text_offset)
    data = dev.read(start + text_offset, first)
    if first < text_size:  # the circular buffer wraps after its header
        data += dev.read(start + MDA_HEADER_SIZE, text_size - first)
    if lvm_crc(data) != text_crc:
        raise unsupported("LVM2 metadata checksum mismatch", device=device_name)
    return data.decode("utf-8", errors="replace")


def _strip(value: str) -> str:
    return value.replace("-", "")


def assemble(pvs: list[PhysicalVolume]) -> list[VolumeGroup]:
    """Volume groups from the newest metadata found on the PVs, with linear LVs mapped."""
    newest: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for pv in pvs:
        if not pv.metadata_text:
            continue
        parsed = parse_lvm_text(pv.metadata_text)
        for name, body in parsed.items():
            if not isinstance(body, dict) or "physical_volumes" not in body:
                continue
            vg_id = str(body.get("id", name))
            seqno = int(body.get("seqno", 0))
            if vg_id not in newest or newest[vg_id][0] < seqno:
                newest[vg_id] = (seqno, name, body)
    by_uuid = {pv.uuid: pv for pv in pvs}
    groups = []
    for vg_id, (seqno, name, body) in newest.items():
        groups.append(_build_vg(name, vg_id, seqno, body, by_uuid))
    return groups


def _build_vg(name: str, vg_id: str, seqno: int, body: dict[str, Any],
              by_uuid: dict[str, PhysicalVolume]) -> VolumeGroup:
    extent_sectors = body.get("extent_size")
    if not isinstance(extent_sectors, int) or extent_sectors <= 0:
        raise unsupported("LVM2 volume group has an invalid extent size", vg=name)
    extent = extent_sectors * SECTOR
    vg = VolumeGroup(name, vg_id, seqno, extent)
    pv_meta: dict[str, dict[str, Any]] = {}
    for pv_name, pv_body in (body.get("physical_volumes") or {}).items():
        if not isinstance(pv_body, dict):
            continue
        pv_meta[pv_name] = pv_body
        pv = by_uuid.get(_strip(str(pv_body.get("id", ""))))
        if pv is not None:
            vg.pvs[pv_name] = pv
    used: dict[str, list[tuple[int, int, str]]] = {}
    for lv_name, lv_body in (body.get("logical_volumes") or {}).items():
        if not isinstance(lv_body, dict):
            continue
        lv = _build_lv(vg, lv_name, lv_body, pv_meta, used)
        if "VISIBLE" in (lv_body.get("status") or []):
            vg.lvs.append(lv)
    for pv_name, runs in used.items():  # two volumes on one extent: corrupt metadata
        runs.sort()
        for (a_start, a_len, a_lv), (b_start, _b_len, b_lv) in zip(runs, runs[1:], strict=False):
            if a_start + a_len > b_start:
                raise unsupported("LVM2 logical volumes overlap", pv=pv_name, first=a_lv, second=b_lv)
    return vg


def _build_lv(vg: VolumeGroup, lv_name: str, body: dict[str, Any], pv_meta: dict[str, dict[str, Any]],
              used: dict[str, list[tuple[int, int, str]]]) -> LogicalVolume:
    mapper = f"/dev/mapper/{vg.name.replace('-', '--')}-{lv_name.replace('-', '--')}"
    lv = LogicalVolume(vg.name, lv_name, f"/dev/{vg.name}/{lv_name}", mapper, 0, [])
    segments = [v for k, v in body.items() if k.startswith("segment") and isinstance(v, dict)]
    segments.sort(key=lambda s: int(s.get("start_extent", 0)))
    if len(segments) > 100_000:
        raise unsupported("LVM2 logical volume has too many segments", lv=lv_name)
    extents: list[Extent] = []
    position = 0
    for seg in segments:
        start, count = int(seg.get("start_extent", -1)), int(seg.get("extent_count", 0))
        kind, stripes = seg.get("type"), seg.get("stripes") or []
        lv.segments.append({"start_extent": start, "extent_count": count, "type": kind})
        if start != position or count <= 0:
            raise unsupported("LVM2 segments are not contiguous", lv=lv_name, start_extent=start)
        position += count
        if kind not in ("striped", "linear") or int(seg.get("stripe_count", 1)) != 1 or len(stripes) != 2:
            lv.reason = f"segment type {kind!r} with {seg.get('stripe_count', 1)} stripes is not supported"
            continue
        pv_name, pv_extent = str(stripes[0]), int(stripes[1])
        meta = pv_meta.get(pv_name)
        if meta is None:
            lv.reason = f"segment refers to {pv_name!r}, which is not a physical volume (stacked volume)"
            continue
        pe_count, pe_start = int(meta.get("pe_count", 0)), int(meta.get("pe_start", 0)) * SECTOR
        if pv_extent < 0 or pv_extent + count > pe_count:
            raise unsupported("LVM2 segment lies outside its physical volume", lv=lv_name, pv=pv_name,
                              pv_extent=pv_extent, extent_count=count, pe_count=pe_count)
        used.setdefault(pv_name, []).append((pv_extent, count, lv_name))
        pv = vg.pvs.get(pv_name)
        if pv is None:
            lv.reason = f"physical volume {pv_name} is missing"
            continue
        physical = pe_start + pv_extent * vg.extent_size_bytes
        if physical + count * vg.extent_size_bytes > pv.device.size:
            raise unsupported("LVM2 segment lies past the end of its physical volume", lv=lv_name,
                              pv=pv_name)
        extents.append(Extent(start * vg.extent_size_bytes, count * vg.extent_size_bytes, pv.device, physical))
    lv.size_bytes = position * vg.extent_size_bytes
    if lv.reason is None and extents:
        lv.device = LinearDevice(extents)
    return lv
