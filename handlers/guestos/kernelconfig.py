"""A kernel's build configuration (``/boot/config-<version>`` and the other places
``handlers.guestos.kernels`` finds it): which options it was built with."""

from __future__ import annotations

import re
from typing import Any

from handlers.tree import GuestTree, read_text

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_kernel_config(text: str) -> dict[str, str]:
    """Option -> value (``y``, ``m``, a number or a quoted string); ``n`` for ``# ... is not set``."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        if match := _SET.match(line):
            options[match.group(1)] = match.group(2)
        elif match := _UNSET.match(line):
            options[match.group(1)] = "n"
    return options


def read_kernel_config(tree: GuestTree, kernel: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(path, options) of ``kernel``'s configuration (an entry of ``read_kernels``); None without one."""
    path = kernel.get("config")
    text = read_text(tree, path) if path else None
    return None if path is None or text is None else (path, parse_kernel_config(text))
