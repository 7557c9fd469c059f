"""The profile check catalogue. Importing this package registers every check in ``CATALOGUE``."""

from handlers.guestos.checks import (
    accounts,
    filesystems,
    kernel,
    logindefs,
    mac,
    pam,
    performance,
    ssh,
    system,
    windows,
)
from handlers.guestos.checks.base import CATALOGUE, PROFILES, Check, Facts, NotApplicable

__all__ = ["CATALOGUE", "PROFILES", "Check", "Facts", "NotApplicable", "accounts", "filesystems", "kernel",
           "logindefs", "mac", "pam", "performance", "ssh", "system", "windows"]
