"""The committed JSON Schema is the one the models generate."""

from __future__ import annotations

import json

from app.protocol.schema import SCHEMA_FILE, builtin_schema, render


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_FILE.read_text() == render(builtin_schema()), (
        "schemas/job-v1.schema.json is stale: run `python -m app.protocol.schema`")


def test_schema_covers_envelope_and_every_registered_payload() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["required"]) == {"version", "job_id", "created_at", "kind", "operation", "payload"}
    assert schema["properties"]["job_id"]["pattern"].startswith("^[A-Za-z0-9_:-]")
    tied = {rule["if"]["properties"]["payload"]["properties"]["type"]["const"] for rule in schema["allOf"]}
    assert "system.echo.v1" in tied
