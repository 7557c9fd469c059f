"""Job store on Redis, shared by every host: ``redis://host:port/db?prefix=guestkit``.

Keys (under the prefix):
    job:<job_id>        status JSON; changed only atomically: a Lua compare-and-set on the
                        status the writer read, or a WATCH/MULTI transaction
    jobs                set of every job_id
    progress:<job_id>   list of progress events (RPUSH)
    key:<sha256(key)>   job_id holding an idempotency key; claimed by a Lua script that also
                        reads the holder's status, so a claim is atomic across hosts
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
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.protocol.states import JobState, JobStatus
from app.store.base import Admission, JobStore, KeyClaim, RunView


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
        self._admit = self.client.register_script(self._ADMIT)
        self._open = self.client.register_script(self._OPEN)
        self._swap = self.client.register_script(self._SWAP)
        self._claim = self.client.register_script(self._CLAIM)
        self._refresh = self.client.register_script(self._REFRESH)
        self._release = self.client.register_script(self._RELEASE)
        self._end = self.client.register_script(self._END)
        self._leases: set[str] = set()  # run leases this process took and has not released

    def __reduce__(self):
        return (RedisJobStore, (self.url,))

    def __repr__(self) -> str:
        return f"RedisJobStore(prefix={self.prefix!r})"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _key_name(self, idempotency_key: str) -> str:
        return self._k("key", hashlib.sha256(idempotency_key.encode()).hexdigest())

    def create(self, status: JobStatus, document: dict[str, Any] | None = None) -> bool:
        return self._admit_job(status, document, claim=False).created

    def admit(self, status: JobStatus, document: dict[str, Any]) -> Admission:
        return self._admit_job(status, document, claim=True)

    def _admit_job(self, status: JobStatus, document: dict[str, Any] | None, claim: bool) -> Admission:
        keys = [self._k("job", status.job_id), self._k("jobs"), self._k("doc", status.job_id)]
        if claim and status.idempotency_key is not None:
            keys.append(self._key_name(status.idempotency_key))
        reply = self._admit(keys=keys, args=[status.model_dump_json(), status.job_id,
                                             "" if document is None else json.dumps(document), self._k("job", "")])
        if len(reply) == 1:
            return Admission(created=bool(reply[0]), claim=None)
        holder, state = reply[1].decode(), reply[2].decode()
        return Admission(created=True, claim=KeyClaim(holder, JobState(state) if state else None))

    def get(self, job_id: str) -> JobStatus | None:
        raw = self.client.get(self._k("job", job_id))
        return None if raw is None else JobStatus.model_validate_json(raw)

    def update(self, job_id: str, change: Callable[[JobStatus], JobStatus], *,
               expected: JobStatus | None = None) -> JobStatus:
        key = self._k("job", job_id)
        if expected is not None:
            changed = change(expected)
            swapped = self._swap(keys=[key], args=[_mark(expected), expected.state.value, changed.model_dump_json()])
            if swapped == 1:
                return changed
            if swapped == -1:
                raise KeyError(f"job {job_id} is not in the store")
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
        holder, state = self._claim(keys=[self._key_name(key)], args=[job_id, self._k("job", "")])
        return KeyClaim(holder.decode(), JobState(state.decode()) if state else None)

    def append_progress(self, job_id: str, *events: dict[str, Any]) -> None:
        if events:
            self.client.rpush(self._k("progress", job_id),
                              *(_compact(event) for event in events))

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

    # Lua scripts: each runs atomically on the server in one round trip. claim reads the holder's
    # status key, which it cannot declare in KEYS: fine on one Redis server (not on a cluster).
    _SWAP_FUNCTION = """
local function swap(key, mark, state, new)
  local raw = redis.call('get', key)
  if not raw then return -1 end
  local stored = cjson.decode(raw)
  if stored['updated_at'] ~= mark or stored['state'] ~= state then return 0 end
  redis.call('set', key, new)
  return 1
end
"""
    _SWAP = _SWAP_FUNCTION + "return swap(KEYS[1], ARGV[1], ARGV[2], ARGV[3])"
    _CLAIM_FUNCTION = """
local function claim(key, job_id, job_prefix)
  local holder = redis.call('get', key)
  if holder then
    local raw = redis.call('get', job_prefix .. holder)
    local state = ''
    if raw then state = cjson.decode(raw)['state'] end
    if holder == job_id or (raw and state ~= 'failed' and state ~= 'timeout' and state ~= 'cancelled') then
      return {holder, state}
    end
  end
  redis.call('set', key, job_id)
  return {job_id, ''}
end
"""
    _CLAIM = _CLAIM_FUNCTION + "return claim(KEYS[1], ARGV[1], ARGV[2])"
    _ADMIT = _CLAIM_FUNCTION + """
if not redis.call('set', KEYS[1], ARGV[1], 'NX') then return {0} end
redis.call('sadd', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then redis.call('set', KEYS[3], ARGV[3]) end
if KEYS[4] then
  local claimed = claim(KEYS[4], ARGV[2], ARGV[4])
  return {1, claimed[1], claimed[2]}
end
return {1}"""
    _OPEN = """
local leased = 0
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('get', KEYS[1]) == ARGV[1] then
  leased = 1
end
local raw = redis.call('get', KEYS[2])
local cancelled = redis.call('exists', KEYS[3])
local count = redis.call('llen', KEYS[4])
local holder = false
if KEYS[5] then holder = redis.call('get', KEYS[5]) end
if leased == 1 and raw and ARGV[5] ~= '' and cancelled == 0 and (not KEYS[5] or holder == ARGV[6]) then
  local stored = cjson.decode(raw)
  if stored['updated_at'] == ARGV[3] and stored['state'] == ARGV[4] then
    redis.call('set', KEYS[2], ARGV[5])
    return {leased, false, cancelled, count, holder, 1}
  end
end
return {leased, raw, cancelled, count, holder, 0}"""
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    _END = _SWAP_FUNCTION + """
if #ARGV > 4 then redis.call('rpush', KEYS[3], unpack(ARGV, 5)) end
local swapped = swap(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if redis.call('get', KEYS[2]) == ARGV[4] then redis.call('del', KEYS[2]) end
return swapped"""
    _REFRESH = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")

    def put_document(self, job_id: str, document: dict[str, Any]) -> None:
        self.client.set(self._k("doc", job_id), json.dumps(document))

    def document(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self._k("doc", job_id))
        return None if raw is None else json.loads(raw)

    def open_run(self, job_id: str, owner: str, ttl: float, key: str | None = None,
                 start: tuple[JobStatus, JobStatus] | None = None) -> RunView:
        keys = [self._k("run", job_id), self._k("job", job_id), self._k("cancel", job_id), self._k("progress", job_id)]
        if key is not None:
            keys.append(self._key_name(key))
        expected, started = start if start is not None else (None, None)
        leased, raw, cancelled, count, holder, written = self._open(keys=keys, args=[
            owner, int(ttl * 1000), _mark(expected) if expected else "", expected.state.value if expected else "",
            started.model_dump_json() if started else "", job_id])
        if leased:
            self._leases.add(job_id)
        status = started if written else None if raw is None else JobStatus.model_validate_json(raw)
        return RunView(status=status, leased=bool(leased), cancel_requested=bool(cancelled), progress_count=int(count),
                       key_holder=holder.decode() if holder else None, started=bool(written))

    def end_run(self, job_id: str, owner: str, change: Callable[[JobStatus], JobStatus], *,
                expected: JobStatus | None = None, progress: Sequence[dict[str, Any]] = ()) -> JobStatus:
        if expected is None:
            return super().end_run(job_id, owner, change, progress=progress)
        changed = change(expected)
        # the last progress events, the compare-and-set to the end state and the lease's release, in
        # this order, in one script: one command to pack, send and parse
        swapped = self._end(keys=[self._k("job", job_id), self._k("run", job_id), self._k("progress", job_id)],
                            args=[_mark(expected), expected.state.value, changed.model_dump_json(), owner,
                                  *(_compact(event) for event in progress)])
        self._leases.discard(job_id)
        return changed if swapped == 1 else self.update(job_id, change)

    def acquire_run(self, job_id: str, owner: str, ttl: float) -> bool:
        key = self._k("run", job_id)
        if self.client.set(key, owner, nx=True, px=int(ttl * 1000)) or self.client.get(key) == owner.encode():
            self._leases.add(job_id)
            return True
        return False

    def refresh_run(self, job_id: str, owner: str, ttl: float) -> None:
        self._refresh(keys=[self._k("run", job_id)], args=[owner, int(ttl * 1000)])

    def release_run(self, job_id: str, owner: str) -> None:
        if job_id not in self._leases:
            return  # not taken by this process, or released already (end_run)
        self._leases.discard(job_id)
        self._release(keys=[self._k("run", job_id)], args=[owner])

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


def _compact(event: dict[str, Any]) -> bytes | str:
    try:
        return orjson.dumps(event)
    except (orjson.JSONEncodeError, TypeError):  # e.g. lone surrogates in a message: json escapes them
        return json.dumps(event, separators=(",", ":"))


def _mark(status: JobStatus) -> str:
    """What identifies a stored status for a compare-and-set: its ``updated_at`` as stored."""
    return status.model_dump(mode="json", include={"updated_at"})["updated_at"]
