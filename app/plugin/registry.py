"""Finding handlers: the ``guestkit_worker.handlers`` entry-point group, plus extra classes
named in configuration (``module:Class``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib.metadata import entry_points

from kombu.utils.imports import symbol_by_name
from pydantic import BaseModel

from app.plugin.handler import Handler

ENTRY_POINT_GROUP = "guestkit_worker.handlers"


class HandlerRegistry:
    def __init__(self, handlers: Iterable[type[Handler]]) -> None:
        self.handlers: dict[str, type[Handler]] = {}
        for handler in handlers:
            if handler.operation in self.handlers and self.handlers[handler.operation] is not handler:
                raise ValueError(
                    f"two handlers claim {handler.operation}: "
                    f"{self.handlers[handler.operation].__module__} and {handler.__module__}"
                )
            self.handlers[handler.operation] = handler

    @classmethod
    def discover(cls, extra: Iterable[str] = ()) -> HandlerRegistry:
        found = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
        found += [symbol_by_name(name) for name in extra]
        return cls(found)

    @property
    def payload_models(self) -> dict[str, dict[int, type[BaseModel]]]:
        return {op: dict(h.payload_models) for op, h in self.handlers.items()}

    @property
    def features(self) -> list[str]:
        return sorted({f for h in self.handlers.values() for f in h.features})


def installed(extra: Iterable[str] = ()) -> HandlerRegistry:
    """The handlers installed in this environment plus the ``extra`` classes named
    (``guestkit_extra_handlers``), found once per process for each set of extras."""
    return _discover(tuple(extra))


@functools.cache
def _discover(extra: tuple[str, ...]) -> HandlerRegistry:
    return HandlerRegistry.discover(extra)
