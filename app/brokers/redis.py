"""kombu's Redis transport, with one synchronous client per channel (``redis://`` brokers).

Stock kombu makes a new ``redis.Redis`` object for every synchronous operation: twice per
message in a worker (recording it as unacknowledged, then the ack) and once per publish. Each
one copies redis-py's table of ~170 response callbacks key by key (redis/redis-py#3624): in a
worker's main process that was the largest single cost per message (cProfile: 6,000 clients,
a quarter of the process's CPU for 3,000 messages). A client object holds no connection of its
own (every command borrows one from the channel's pool), so one per channel serves them all;
a new one is made when the channel makes a new pool (after a disconnect).

Importing ``app`` makes it the transport of ``redis://`` and ``rediss://`` URLs in that process
(kombu's transport aliases, as the embedded broker registers ``embedded://``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES, redis


class Channel(redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel


for _scheme in ("redis", "rediss"):
    TRANSPORT_ALIASES[_scheme] = "app.brokers.redis:Transport"
