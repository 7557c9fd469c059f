"""JSON Schema of v1 job documents, generated from the models: the envelope, and each payload
type a handler registers. ``python -m app.protocol.schema`` rewrites ``schemas/job-v1.schema.json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.protocol.models import JobDocument

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "job-v1.schema.json"


def job_schema(payload_models: Mapping[str, Mapping[int, type[BaseModel]]]) -> dict[str, Any]:
    """The envelope's schema; ``payload.data`` is tied to its model by ``payload.type``."""
    keyed = [(JobDocument, "validation")] + [
        (model, "validation") for _, versions in sorted(payload_models.items())
        for _, model in sorted(versions.items())
    ]
    refs, defs = models_json_schema(keyed, by_alias=True, ref_template="#/$defs/{model}")
    envelope_ref = refs[(JobDocument, "validation")]["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://guestkit.dev/schemas/job-v1.schema.json",
        "title": "guestkit v1 job document",
        **defs["$defs"].pop(envelope_ref),
        "$defs": defs["$defs"],
    }
    schema["allOf"] = [
        {
            "if": {"properties": {"payload": {"properties": {"type": {"const": f"{operation}.v{version}"}}}}},
            "then": {"properties": {"payload": {"properties": {"data": refs[(model, "validation")]}}}},
        }
        for operation, versions in sorted(payload_models.items())
        for version, model in sorted(versions.items())
    ]
    return schema


def builtin_schema() -> dict[str, Any]:
    from app.plugin.registry import HandlerRegistry

    return job_schema(HandlerRegistry.discover().payload_models)


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.parent.mkdir(exist_ok=True)
    SCHEMA_FILE.write_text(render(builtin_schema()))
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
