"""cloud-init: installed, disabled, configured datasources."""

from __future__ import annotations

from typing import Any

from handlers.guestos.common import exists, files_in, load_yaml
from handlers.tree import GuestTree, read_text


def read_cloud_init(tree: GuestTree) -> dict[str, Any] | None:
    """None when cloud-init is not installed (no /etc/cloud/cloud.cfg)."""
    if not exists(tree, "/etc/cloud/cloud.cfg"):
        return None
    datasources: list[str] = []
    for path in ["/etc/cloud/cloud.cfg", *files_in(tree, "/etc/cloud/cloud.cfg.d", ".cfg")]:
        data = load_yaml(read_text(tree, path) or "")
        if isinstance(data, dict) and isinstance(data.get("datasource_list"), list):
            datasources = [str(item) for item in data["datasource_list"]]
    disabled = exists(tree, "/etc/cloud/cloud-init.disabled")
    return {"installed": True, "disabled": disabled, "datasources": datasources}
