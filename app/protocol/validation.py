"""``validate(document)``: turn a dict, JSON text or file into a ``JobDocument`` or one error
that lists every problem as ``field.path: message``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.plugin.errors import ErrorCode, ValidationFailed
from app.protocol.models import (
    DEFAULT_TIMEOUT_CEILING,
    MAX_DOCUMENT_BYTES,
    MAX_NESTING_DEPTH,
    PAYLOAD_TYPE,
    JobDocument,
)

_MAJOR_VERSION = re.compile(r"^(\d+)\.\d+$")
_SHOWN_VALUE_CHARS = 60


def read_document(source: str | bytes | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Parse ``source`` into a JSON object, refusing anything that is not one, clearly.

    A ``str`` is JSON text when it starts with ``{`` (after whitespace), otherwise a path.
    """
    if isinstance(source, Mapping):
        data = dict(source)
        if _check_structure(data) > MAX_DOCUMENT_BYTES and len(json.dumps(data, default=str)) > MAX_DOCUMENT_BYTES:
            raise ValidationFailed([f"(document): larger than {MAX_DOCUMENT_BYTES} bytes"])
        return data
    if isinstance(source, bytes):
        raw = source
    elif isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        raw = source.encode("utf-8", errors="surrogatepass")
    else:
        raw = _read_file(Path(source))
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed([f"(document): {len(raw)} bytes, larger than the limit of {MAX_DOCUMENT_BYTES}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed([f"(document): not valid UTF-8 at byte {exc.start}"]) from None
    _check_text_depth(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ValidationFailed([f"(document): invalid JSON at {where}: {exc.msg}"]) from None
    except RecursionError:
        raise ValidationFailed([f"(document): nested deeper than {MAX_NESTING_DEPTH} levels"]) from None
    if not isinstance(data, dict):
        raise ValidationFailed([f"(document): must be a JSON object, got {_json_type(data)}"])
    _check_structure(data)
    return data


def validate(
    source: str | bytes | os.PathLike[str] | Mapping[str, Any],
    *,
    timeout_ceiling: int = DEFAULT_TIMEOUT_CEILING,
    payload_models: Mapping[str, Mapping[int, type[BaseModel]]] | None = None,
) -> JobDocument:
    """Validate a job document against the v1 contract.

    ``payload_models`` maps operation → payload version → model of ``payload.data``; when given,
    an unknown operation is ``UNSUPPORTED_OPERATION`` and ``payload.data`` is checked too.
    Raises ``ValidationFailed`` with every problem; its ``code`` is the contract's error code.
    """
    return validate_read(read_document(source), timeout_ceiling=timeout_ceiling, payload_models=payload_models)


def validate_read(
    data: dict[str, Any],
    *,
    timeout_ceiling: int = DEFAULT_TIMEOUT_CEILING,
    payload_models: Mapping[str, Mapping[int, type[BaseModel]]] | None = None,
) -> JobDocument:
    """``validate`` for what ``read_document`` returned (its size and nesting are not checked again)."""
    problems: list[str] = []
    code = ErrorCode.VALIDATION_ERROR
    version = data.get("version")
    if isinstance(version, str) and (match := _MAJOR_VERSION.fullmatch(version)) and match[1] != "1":
        raise ValidationFailed(
            [f"version: major version {match[1]} is not supported by this worker (only 1.x), got {version!r}"],
            ErrorCode.UNSUPPORTED_VERSION,
        )
    try:
        job = JobDocument.from_json_object(data, timeout_ceiling=timeout_ceiling)
    except ValidationError as exc:
        problems.extend(format_errors(exc))
        job = None
    if payload_models is not None:
        payload_problems, code = _check_payload(data, payload_models)
        problems.extend(payload_problems)
    if problems:
        raise ValidationFailed(problems, code)
    assert job is not None
    return job


def _check_payload(
    data: dict[str, Any], payload_models: Mapping[str, Mapping[int, type[BaseModel]]]
) -> tuple[list[str], ErrorCode]:
    operation = data.get("operation")
    if not isinstance(operation, str):
        return [], ErrorCode.VALIDATION_ERROR
    versions = payload_models.get(operation)
    if versions is None:
        known = ", ".join(sorted(payload_models)) or "none"
        problem = f"operation: {operation!r} is not supported (known operations: {known})"
        return [problem], ErrorCode.UNSUPPORTED_OPERATION
    payload = data.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return [], ErrorCode.VALIDATION_ERROR
    match = PAYLOAD_TYPE.fullmatch(payload["type"])
    if not match or match["operation"] != operation:
        return [], ErrorCode.VALIDATION_ERROR
    model = versions.get(int(match["version"]))
    if model is None:
        supported = ", ".join(f"{operation}.v{v}" for v in sorted(versions))
        return (
            [f"payload.type: {payload['type']!r} is not supported (supported: {supported})"],
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if not isinstance(payload.get("data"), dict):
        return [], ErrorCode.VALIDATION_ERROR
    try:
        model.model_validate(payload["data"])
    except ValidationError as exc:
        return format_errors(exc, prefix="payload.data"), ErrorCode.VALIDATION_ERROR
    return [], ErrorCode.VALIDATION_ERROR


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``field.path: message`` line per problem pydantic found."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        path = join_path(error["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = error["msg"].removeprefix("Value error, ")
        if not path:  # cross-field rules name their own fields, one per line
            lines.extend(line for line in message.split("\n") if line)
            continue
        if error["type"] == "missing":
            lines.append(f"{path}: required field is missing")
            continue
        if error["type"] in ("extra_forbidden",):
            lines.append(f"{path}: unknown field")
            continue
        shown = _show(error.get("input"))
        lines.append(f"{path}: {message}, got {shown}" if "got" not in message else f"{path}: {message}")
    return lines


_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_$/-]+$")


def join_path(parts: tuple[int | str, ...]) -> str:
    """``execution.priority``, ``constraints.allowed_worker_pools.0``; odd keys JSON-quoted."""
    return ".".join(str(p) if isinstance(p, int) or _PLAIN_SEGMENT.fullmatch(p) else json.dumps(p) for p in parts)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _json_type(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "…"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_text_depth(text: str) -> None:
    """Refuse deep nesting before ``json.loads`` recurses into it."""
    if text.count("[") + text.count("{") <= MAX_NESTING_DEPTH:  # not enough openers to nest too deep
        return
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise ValidationFailed([f"(document): nested deeper than {MAX_NESTING_DEPTH} levels"])
        elif char in "]}":
            depth -= 1


def _check_structure(data: Any) -> int:
    """Refuse deep nesting and text that is not valid Unicode (lone surrogates, which JSON's
    ``\\ud800`` escapes can smuggle in), naming where; return a bound on the length of
    ``json.dumps(data)``. Every submit and every run checks its document, so a quick walk comes
    first, and only a document that fails it is walked again to say where."""
    bound = _json_bound(data, 0)
    if bound is None:
        _name_structure_problem(data)
        raise AssertionError("unreachable: the quick walk and the naming walk disagree")
    return bound


def _json_bound(value: Any, depth: int) -> int | None:
    """At least the length of ``json.dumps(value)``; None if ``value`` is nested too deep or holds
    text that is not valid Unicode."""
    if depth >= MAX_NESTING_DEPTH:
        return None
    if isinstance(value, dict):
        total = 2
        for key, child in value.items():
            key_bound, inner = _scalar_bound(key), _json_bound(child, depth + 1)
            if key_bound is None or inner is None:
                return None
            total += key_bound + inner + 4 + (0 if isinstance(key, str) else 2)  # ": ", ", ", quotes
        return total
    if isinstance(value, list):
        total = 2
        for child in value:
            inner = _json_bound(child, depth + 1)
            if inner is None:
                return None
            total += inner + 2
        return total
    return _scalar_bound(value)


def _scalar_bound(value: Any) -> int | None:
    """At least the length of ``json.dumps(value)`` for text, a number, a bool or None (an ASCII
    character takes at most 6 bytes, as ``\\u001f``; any other 12, as an escaped surrogate pair);
    None for text that is not valid Unicode."""
    if isinstance(value, str):
        if value.isascii():
            return 6 * len(value) + 2
        return 12 * len(value) + 2 if _is_unicode(value) else None
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 3
    if isinstance(value, float):
        return 24
    return MAX_DOCUMENT_BYTES + 1  # anything else is written with str(): measure it


def _name_structure_problem(data: Any) -> None:
    """Raise ``ValidationFailed`` naming the first place nested too deep or not valid Unicode."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_NESTING_DEPTH:
            raise ValidationFailed([f"(document): nested deeper than {MAX_NESTING_DEPTH} levels"])
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(key, str) and not _is_unicode(key):
                    raise ValidationFailed([f"{join_path(path) or '(document)'}: a key is not valid Unicode "
                                            "(lone surrogate)"])
                stack.append((child, (*path, key)))
        elif isinstance(value, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(value))
        elif isinstance(value, str) and not _is_unicode(value):
            raise ValidationFailed([f"{join_path(path) or '(document)'}: not valid Unicode (lone surrogate)"])


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_file(path: Path) -> bytes:
    try:
        if path.is_symlink():
            raise ValidationFailed([f"(file): {path} is a symbolic link; job files must be regular files"])
        if not path.is_file():
            what = "a directory" if path.is_dir() else "missing" if not path.exists() else "not a regular file"
            raise ValidationFailed([f"(file): {path} is {what}"])
        with open(path, "rb") as handle:
            raw = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ValidationFailed([f"(file): cannot read {path}: {exc.strerror}"]) from None
    if not raw:
        raise ValidationFailed([f"(file): {path} is empty"])
    return raw
