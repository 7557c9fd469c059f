"""Password ageing and account defaults from /etc/login.defs."""

from __future__ import annotations

from handlers.guestos.common import Setting, last_wins, read_settings
from handlers.tree import GuestTree

LOGIN_DEFS = "/etc/login.defs"


def read_login_defs(tree: GuestTree) -> dict[str, Setting]:
    return last_wins(read_settings(tree, LOGIN_DEFS, separator=" "))
