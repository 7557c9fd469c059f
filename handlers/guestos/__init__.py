"""Parsers that read OS facts from a guest file tree (``handlers.tree.GuestTree``) only.

Each module has one concern; ``handlers.inspect.inspect_tree`` assembles them into a report.
"""

from handlers.guestos.accounts import read_groups, read_users
from handlers.guestos.arch import detect_architecture, elf_architecture
from handlers.guestos.cloudinit import read_cloud_init
from handlers.guestos.cron import read_cron
from handlers.guestos.identity import read_hostname, read_machine_id, read_timezone
from handlers.guestos.kernels import read_kernels
from handlers.guestos.logindefs import read_login_defs
from handlers.guestos.network import read_network
from handlers.guestos.osrelease import detect_os
from handlers.guestos.packages import read_packages
from handlers.guestos.security import read_security
from handlers.guestos.services import read_services
from handlers.guestos.sysctl import read_sysctl

__all__ = [
    "detect_architecture", "detect_os", "elf_architecture", "read_cloud_init", "read_cron", "read_groups",
    "read_hostname", "read_kernels", "read_login_defs", "read_machine_id", "read_network", "read_packages",
    "read_security", "read_services", "read_sysctl", "read_timezone", "read_users",
]
