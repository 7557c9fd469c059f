"""Small helpers shared by the OS parsers: settings with their origin, and directory listing."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from handlers.tree import GuestTree, read_text

#: most files one include chain (sshd Include, sudoers @includedir, ifupdown source) may pull in
MAX_INCLUDED_FILES = 256
#: a YAML document with more aliases than this is refused: alias bombs expand exponentially, and
#: with 16 aliases the worst expansion stays in the hundreds
MAX_YAML_ALIASES = 16


@dataclass(frozen=True)
class Setting:
    """One ``key value`` (or ``key=value``) line of a configuration file, with where it came from."""

    key: str
    value: str
    file: str
    line: int
    text: str

    def evidence(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "text": self.text}


def read_included(tree: GuestTree, path: str, seen: set[str]) -> str | None:
    """Text of a file reached through an include chain: None if it is absent, was read already,
    or ``MAX_INCLUDED_FILES`` were (a hostile guest may loop its includes)."""
    if path in seen or len(seen) >= MAX_INCLUDED_FILES:
        return None
    seen.add(path)
    return read_text(tree, path)


def content_lines(text: str, comments: str = "#") -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, stripped_line, raw_line)`` for lines that are neither blank nor comments."""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped and stripped[0] not in comments:
            yield number, stripped, raw.rstrip("\n")


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


_ASSIGN = {"=": re.compile(r"^([^=\s]+)\s*=\s*(.*)$"), " ": re.compile(r"^(\S+)\s+(.*)$")}


def parse_settings(
    text: str, file: str, *, separator: str = "=", lower_keys: bool = False, comments: str = "#"
) -> list[Setting]:
    """Parse ``key=value`` (``separator="="``) or ``key value`` (``separator=" "``) lines in file order.

    Values are stripped and unquoted (no inline-comment removal: ``#`` is only a comment at the start
    of a line, as in the files parsed here). Lines that do not match are ignored. ``key value`` also
    accepts ``key=value`` (sshd_config allows both).
    """
    pattern = _ASSIGN[separator]
    settings: list[Setting] = []
    for number, stripped, raw in content_lines(text, comments):
        match = pattern.match(stripped)
        if match is None and separator == " ":
            match = _ASSIGN["="].match(stripped)
        if match is None:
            continue
        key = match.group(1).lower() if lower_keys else match.group(1)
        settings.append(Setting(key, unquote(match.group(2)), file, number, raw))
    return settings


def read_settings(
    tree: GuestTree, path: str, *, separator: str = "=", lower_keys: bool = False, comments: str = "#"
) -> list[Setting]:
    """``parse_settings`` over a guest file; an absent file gives no settings."""
    text = read_text(tree, path)
    if text is None:
        return []
    return parse_settings(text, path, separator=separator, lower_keys=lower_keys, comments=comments)


def last_wins(settings: list[Setting]) -> dict[str, Setting]:
    """Map each key to its last occurrence (shell-style files, login.defs, sysctl)."""
    return {setting.key: setting for setting in settings}


def first_wins(settings: list[Setting]) -> dict[str, Setting]:
    """Map each key to its first occurrence (sshd_config semantics)."""
    result: dict[str, Setting] = {}
    for setting in settings:
        result.setdefault(setting.key, setting)
    return result


def files_in(tree: GuestTree, directory: str, suffix: str = "") -> list[str]:
    """Absolute paths of the regular files in ``directory`` whose names end with ``suffix``, sorted."""
    names = tree.listdir(directory) or []
    paths = []
    for name in names:
        path = posixpath.join(directory, name)
        if name.endswith(suffix) and tree.read_bytes(path, limit=0) is not None:
            paths.append(path)
    return paths


def exists(tree: GuestTree, path: str) -> bool:
    return tree.stat(path) is not None


def natural_key(text: str) -> list[object]:
    """Sort key that orders embedded numbers numerically (``5.10`` after ``5.9``)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that gives None for invalid YAML and refuses alias-heavy documents."""
    try:
        aliases = sum(1 for token in yaml.scan(text) if isinstance(token, yaml.AliasToken))
        if aliases > MAX_YAML_ALIASES:
            return None
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def split_epoch_version(text: str) -> tuple[int | None, str, str | None]:
    """``[epoch:]version[-release]`` as dpkg and pacman write it -> (epoch, version, release); the
    release follows the last hyphen."""
    epoch: int | None = None
    head, sep, rest = text.partition(":")
    if sep and head.isdigit():
        epoch, text = int(head), rest
    version, sep, release = text.rpartition("-")
    return (epoch, version, release) if sep else (epoch, text, None)
