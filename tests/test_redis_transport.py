"""The platform's Redis transport (app/brokers/redis.py): kombu's, with one client per channel."""

from __future__ import annotations

import uuid

from kombu import Connection

import app.brokers.redis  # noqa: F401 - what importing ``app`` does: redis:// URLs get it
from tests.brokers import REDIS_URL, require_service


def test_a_channel_keeps_one_client_until_it_makes_a_new_pool() -> None:
    require_service(REDIS_URL)
    with Connection(REDIS_URL) as conn:
        channel = conn.default_channel
        assert type(channel).__module__ == "app.brokers.redis"
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.ping()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool and third.ping()


def test_messages_flow_and_an_ack_clears_the_unacked_record() -> None:
    require_service(REDIS_URL)
    name = f"test-transport-{uuid.uuid4().hex[:8]}"
    with Connection(REDIS_URL) as conn:
        queue = conn.SimpleQueue(name)
        try:
            for i in range(3):
                queue.put({"n": i})
            received = [queue.get(timeout=5) for _ in range(3)]
            assert [m.payload["n"] for m in received] == [0, 1, 2]
            channel = queue.channel
            with channel.conn_or_acquire() as client:
                assert client.hlen(channel.unacked_key) >= 3  # delivered, not yet acknowledged
                for message in received:
                    message.ack()
                assert not any(client.hexists(channel.unacked_key, m.delivery_tag) for m in received)
        finally:
            queue.queue.delete()
            queue.close()
