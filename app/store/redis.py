"""Job store on Redis, shared by every host: ``redis://host:port/db?prefix=guestkit``.

Keys (under the prefix):
    job:<job_id>        status JSON; changed only inside WATCH/MULTI transactions
    jobs                set of every job_id
    progress:<job_id>   list of progress events (RPUSH)
    key:<sha256(key)>   job_id holding an idempotency key; claimed in a transaction that also
                        watches the holder's status, so a claim is atomic across hosts
    cancel:<job_id>     exists once a cancel was requested
    run:<job_id>        run lease: owner, expiring unless refreshed
    doc:<job_id>        the job document as submitted
    workers             hash worker_id → {"expires", "advert"}; lapsed entries are dropped on read
    unmatched           hash job_id → document of jobs waiting for a worker that can run them
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.states import JobState, JobStatus
from app.store.base import JobStore, KeyClaim

_FREE_AGAIN = (JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED)


class RedisJobStore(JobStore):
    unavailable = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.prefix = parse_qs(parts.query).get("prefix", ["guestkit"])[0]
        # a blip (a Redis restart) is ridden out by a few quick retries; a real outage surfaces
        # within seconds as one of ``unavailable``, which callers turn into "try again later"
        self.client = redis.Redis.from_url(
            urlunsplit(parts._replace(query="")), socket_timeout=10, socket_connect_timeout=2,
            health_check_interval=30, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError])

    def __reduce__(self):
        return (RedisJobStore, (self.url,))

    def __repr__(self) -> str:
        return f"RedisJobStore(prefix={self.prefix!r})"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def create(self, status: JobStatus) -> bool:
        created = self.client.set(self._k("job", status.job_id), status.model_dump_json(), nx=True)
        if created:
            self.client.sadd(self._k("jobs"), status.job_id)
        return bool(created)

    def get(self, job_id: str) -> JobStatus | None:
        raw = self.client.get(self._k("job", job_id))
        return None if raw is None else JobStatus.model_validate_json(raw)

    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus]) -> JobStatus:
        key = self._k("job", job_id)
        result: list[JobStatus] = []

        def apply(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise KeyError(f"job {job_id} is not in the store")
            changed = change(JobStatus.model_validate_json(raw))
            pipe.multi()
            pipe.set(key, changed.model_dump_json())
            result[:] = [changed]

        self.client.transaction(apply, key)
        return result[0]

    def claim_key(self, key: str, job_id: str) -> KeyClaim:
        key_name = self._k("key", hashlib.sha256(key.encode()).hexdigest())
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key_name)
                    holder_raw = pipe.get(key_name)
                    holder = holder_raw.decode() if holder_raw else None
                    holder_status = None
                    if holder:
                        pipe.watch(self._k("job", holder))
                        raw = pipe.get(self._k("job", holder))
                        holder_status = JobStatus.model_validate_json(raw) if raw else None
                    free = holder is None or holder_status is None or holder_status.state in _FREE_AGAIN
                    if not free or holder == job_id:
                        pipe.unwatch()
                        return KeyClaim(holder, holder_status.state if holder_status else None)  # type: ignore[arg-type]
                    pipe.multi()
                    pipe.set(key_name, job_id)
                    pipe.execute()
                    return KeyClaim(job_id, None)
                except redis.WatchError:
                    continue

    def append_progress(self, job_id: str, event: dict[str, Any]) -> None:
        self.client.rpush(self._k("progress", job_id), json.dumps(event, separators=(",", ":")))

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.client.lrange(self._k("progress", job_id), 0, -1)]

    def latest_progress(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.lindex(self._k("progress", job_id), -1)
        return None if raw is None else json.loads(raw)

    def request_cancel(self, job_id: str) -> None:
        self.client.set(self._k("cancel", job_id), b"1")

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.client.exists(self._k("cancel", job_id)))

    def job_ids(self) -> Iterator[str]:
        for member in self.client.sscan_iter(self._k("jobs"), count=1000):
            yield member.decode()

    def list(self, state: JobState | None = None) -> list[JobStatus]:
        ids = list(self.job_ids())
        found: list[JobStatus] = []
        for start in range(0, len(ids), 500):
            for raw in self.client.mget([self._k("job", i) for i in ids[start:start + 500]]):
                if raw is not None:
                    status = JobStatus.model_validate_json(raw)
                    if state is None or status.state is state:
                        found.append(status)
        return found

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    _REFRESH = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")

    def put_document(self, job_id: str, document: dict[str, Any]) -> None:
        self.client.set(self._k("doc", job_id), json.dumps(document))

    def document(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self._k("doc", job_id))
        return None if raw is None else json.loads(raw)

    def acquire_run(self, job_id: str, owner: str, ttl: float) -> bool:
        key = self._k("run", job_id)
        if self.client.set(key, owner, nx=True, px=int(ttl * 1000)):
            return True
        return self.client.get(key) == owner.encode()

    def refresh_run(self, job_id: str, owner: str, ttl: float) -> None:
        self.client.eval(self._REFRESH, 1, self._k("run", job_id), owner, int(ttl * 1000))

    def release_run(self, job_id: str, owner: str) -> None:
        self.client.eval(self._RELEASE, 1, self._k("run", job_id), owner)

    def put_worker(self, advert: dict[str, Any], ttl: float) -> None:
        record = json.dumps({"expires": time.time() + ttl, "advert": advert})
        self.client.hset(self._k("workers"), advert["worker_id"], record)

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        live, lapsed = [], []
        for worker_id, raw in self.client.hgetall(self._k("workers")).items():
            record = json.loads(raw)
            (live if record["expires"] > now else lapsed).append((worker_id, record["advert"]))
        if lapsed:
            self.client.hdel(self._k("workers"), *(worker_id for worker_id, _ in lapsed))
        return sorted((advert for _, advert in live), key=lambda advert: advert["worker_id"])

    def mark_unmatched(self, job_id: str, document: dict[str, Any] | None) -> None:
        if document is not None:
            self.client.hset(self._k("unmatched"), job_id, json.dumps(document))
        else:
            self.client.hdel(self._k("unmatched"), job_id)

    def unmatched(self) -> dict[str, dict[str, Any]]:
        return {key.decode(): json.loads(value) for key, value in self.client.hgetall(self._k("unmatched")).items()}

    def ping(self) -> bool:
        return bool(self.client.ping())
