"""``system.echo``: returns its data unchanged, reporting progress 0 → 50 → 100."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.plugin.handler import Handler, HandlerContext, HandlerResult


class EchoPayloadV1(BaseModel):
    """Any object; echoed back as it is."""

    model_config = ConfigDict(extra="allow")


class EchoHandler(Handler):
    operation = "system.echo"
    payload_models = {1: EchoPayloadV1}
    features = ("echo",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        ctx.report_progress("validation", 0, "Echo handler starting")
        data: dict[str, Any] = payload.model_dump(mode="json")
        ctx.report_progress("result_generation", 50, "Processing payload")
        ctx.report_progress("cleanup", 100, "Echo complete")
        return HandlerResult(data=data)
