"""Where the tests find Redis and RabbitMQ (URLs from the environment, local defaults).

A service that cannot be reached is a skip, with the reason printed, only on a machine that
does not have it installed at all. Where its server binary exists (this project's CI machine
has both), or in CI (``CI`` or ``GUESTKIT_REQUIRE_BROKERS=1``), it is a failure: a skipped
broker test must never pass for a green run."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("GUESTKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("GUESTKIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


SERVER_BINARY = {"redis": "redis-server", "amqp": "rabbitmq-server"}


def service_required(url: str) -> bool:
    """True where the service must be running: its server is installed, or this is CI."""
    binary = SERVER_BINARY.get(urlsplit(url).scheme, "")
    installed = bool(binary) and shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    return bool(installed or in_ci())


def in_ci() -> bool:
    """CI (``CI`` or ``GUESTKIT_REQUIRE_BROKERS=1``): what a test needs of the machine must be there."""
    return bool(os.environ.get("CI") or os.environ.get("GUESTKIT_REQUIRE_BROKERS") == "1")


def skip_or_fail(reason: str) -> None:
    """A test that cannot run here: a failure in CI (a skip must never pass for green), else a skip."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def require_service(url: str) -> None:
    if reachable(url):
        return
    parts = urlsplit(url)
    reason = f"{parts.scheme} at {parts.hostname}:{parts.port} is not reachable"
    if service_required(url):
        pytest.fail(f"{reason}, but this machine must run it: start it first")
    pytest.skip(f"{reason} and its server is not installed")
