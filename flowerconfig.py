"""Flower's defaults for this project: Flower reads ``flowerconfig.py`` from the directory it starts
in, so ``celery -A app flower`` run from the checkout binds to the loopback address (Flower's own
default is every interface, and its ``/metrics`` and ``/healthcheck`` need no login).

``FLOWER_ADDRESS`` / ``FLOWER_PORT`` and the ``--address`` / ``--port`` options still win.
"""

import os

address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
