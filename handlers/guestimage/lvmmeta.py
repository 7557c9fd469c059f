"""The LVM2 metadata text format (a small nested ``key = value`` / ``section { }`` language)."""

from __future__ import annotations

import re
from typing import Any

from .errors import unsupported

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([A-Za-z0-9_.+\-]+)|([={}\[\],]))', re.S)
MAX_DEPTH = 16
MAX_TOKENS = 1_000_000


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() in ("", "\0"):
                break
            raise unsupported("LVM metadata cannot be parsed", at=pos, near=text[pos:pos + 40])
        pos = match.end()
        if match.group(1):
            continue
        token = match.group(2) or match.group(3) or match.group(4)
        if token:
            out.append(token)
        if len(out) > MAX_TOKENS:
            raise unsupported("LVM metadata is too large")
        if match.end() == match.start():
            break
    return out


def _value(token: str) -> Any:
    if token.startswith('"'):
        return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    try:
        return int(token)
    except ValueError:
        try:
            return float(token)
        except ValueError:
            return token


def parse_lvm_text(text: str) -> dict[str, Any]:
    """Parse LVM2 metadata text into nested dicts and lists."""
    tokens = _tokens(text.replace("\0", ""))
    index = 0

    def section(depth: int, closing: str | None) -> dict[str, Any]:
        nonlocal index
        if depth > MAX_DEPTH:
            raise unsupported("LVM metadata nests too deeply")
        result: dict[str, Any] = {}
        while index < len(tokens):
            token = tokens[index]
            if token == closing:
                index += 1
                return result
            name = token
            index += 1
            if index >= len(tokens):
                break
            op = tokens[index]
            index += 1
            if op == "{":
                result[name] = section(depth + 1, "}")
            elif op == "=":
                if index >= len(tokens):
                    break
                if tokens[index] == "[":
                    index += 1
                    items: list[Any] = []
                    while index < len(tokens) and tokens[index] != "]":
                        if tokens[index] != ",":
                            items.append(_value(tokens[index]))
                        index += 1
                    index += 1
                    result[name] = items
                else:
                    result[name] = _value(tokens[index])
                    index += 1
            else:
                raise unsupported("LVM metadata cannot be parsed", near=f"{name} {op}")
        if closing is not None:
            raise unsupported("LVM metadata ends inside a section")
        return result

    return section(0, None)
