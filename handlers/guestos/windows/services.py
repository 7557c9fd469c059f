"""Windows services and drivers: the Services key of the control set Windows boots."""

from __future__ import annotations

from typing import Any

from handlers.guestos.windows.hives import Hive
from handlers.guestos.windows.system import control_set

START_TYPES = {0: "boot", 1: "system", 2: "automatic", 3: "manual", 4: "disabled"}
SERVICE_TYPES = {0x1: "kernel_driver", 0x2: "file_system_driver", 0x4: "adapter", 0x8: "recognizer_driver",
                 0x10: "own_process", 0x20: "share_process", 0x50: "user_own_process", 0x60: "user_share_process",
                 0x110: "own_process_interactive", 0x120: "share_process_interactive"}


def windows_services(system: Hive) -> list[dict[str, Any]]:
    """Every service key with a start type: name, display name, start type (delayed automatic
    where set), type, image path and the account it runs as."""
    found = []
    for key in system.subkeys(f"{control_set(system)}\\Services"):
        values = system.values(key)
        start, kind = values.get("Start"), values.get("Type")
        if not isinstance(start, int):
            continue  # a parameters key, not a service
        start_type = START_TYPES.get(start, str(start))
        if start_type == "automatic" and values.get("DelayedAutostart") == 1:
            start_type = "automatic_delayed"
        found.append({"name": key.name, "display_name": values.get("DisplayName"), "start_type": start_type,
                      "type": SERVICE_TYPES.get(kind, str(kind)) if isinstance(kind, int) else None,
                      "image_path": values.get("ImagePath"), "account": values.get("ObjectName")})
    return sorted(found, key=lambda service: service["name"].casefold())
