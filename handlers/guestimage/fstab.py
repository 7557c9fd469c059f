"""/etc/fstab parsing, shared by the engine (mount placement) and the OS parsers."""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class FstabEntry:
    spec: str  # "UUID=…", "LABEL=…", "/dev/sda1", "/dev/mapper/vg0-root", …
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    dump: int
    passno: int
    line: int  # 1-based line number in the file

    @property
    def spec_kind(self) -> str:
        """uuid, label, partuuid, partlabel, device, or other."""
        head = self.spec.split("=", 1)[0].upper()
        if "=" in self.spec and head in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
            return head.lower()
        return "device" if self.spec.startswith("/dev/") else "other"

    @property
    def spec_value(self) -> str:
        return self.spec.split("=", 1)[1].strip('"') if self.spec_kind != "device" and "=" in self.spec \
            else self.spec


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


def parse_fstab(text: str) -> list[FstabEntry]:
    """Entries of an fstab, comments and malformed lines (fewer than 3 fields) skipped."""
    entries: list[FstabEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        entries.append(FstabEntry(
            spec=_unescape(fields[0]), mountpoint=_unescape(fields[1]), fstype=fields[2], options=options,
            dump=_int(fields[4] if len(fields) > 4 else None), passno=_int(fields[5] if len(fields) > 5 else None),
            line=number,
        ))
    return entries
