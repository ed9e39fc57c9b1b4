"""The shared store for several bridge replicas behind a load balancer: Redis (redis-py asyncio).

Why this exists: when one process no longer carries the fleet, replicas must share the ledger, the queues, the
charger records and the authorization cache, so a charger that reconnects to another replica mid-transaction
just carries on, and queued messages left by a dead replica are delivered by whichever replica the charger
reaches next. Each ``apply`` is one MULTI/EXEC transaction; all keys of a charger share a hash tag, so they live
in one slot of a Redis Cluster too.

Ownership: one live session per identity across replicas. A replica claims a charger with a lease it renews;
a newer (CSMS-accepted) connection on another replica takes the lease over and waits until the previous owner
has closed its session (it notices at its next renewal) or the lease has expired.

Durability is Redis's own: run it with ``appendonly yes`` (``appendfsync everysec`` survives a Redis crash with at
most a second lost; ``always`` loses nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..core.ledger import KEEP_CLOSED
from ..core.state import ChargerMeta, ChargerState, QueuedMessage, Record, TxRecord
from . import StoreError

PREFIX: Final = "ocppb"
# Renew the lease if we still own it; if it merely expired (Redis was unreachable for a while), claim it again.
# Only another owner's value means the charger was taken over.
_RENEW: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if current == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end
return 0
"""
# After waiting for the previous owner: start our lease afresh, unless an even newer session took over meanwhile.
_SETTLE: Final = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
"""


ROUTES_KEY: Final = f"{PREFIX}:routes"  # identity -> route mode an operator chose (one hash for the fleet)


def _key(identity: str, part: str) -> str:
    return f"{PREFIX}:{{{identity}}}:{part}"


class RedisStore:
    leases = True  # replicas share the store: a session keeps its charger by renewing its lease

    def __init__(self, url: str, lease_ttl: float = 3.0) -> None:
        # renewed every second (listener.LEASE_RENEWAL): a dead replica holds a charger for at most this long
        self.url = url
        self.lease_ttl = lease_ttl
        self._redis: aioredis.Redis | None = None
        self._behind: set[asyncio.Task[None]] = set()  # write_behind calls still running

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("store is not open")
        return self._redis

    async def open(self) -> None:
        self._redis = aioredis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5,
                                        health_check_interval=10)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot reach Redis at {self.url}: {exc}") from exc

    async def load(self, identity: str) -> ChargerState:
        await self._settle_behind()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(_key(identity, "meta"))
                pipe.smembers(_key(identity, "open"))
                pipe.zrevrange(_key(identity, "closed"), 0, KEEP_CLOSED - 1)
                pipe.hgetall(_key(identity, "queue"))
                meta_raw, open_ids, closed_ids, queue_raw = await pipe.execute()
            ids = [*open_ids, *closed_ids]
            tx_raw = await self.redis.hmget(_key(identity, "tx"), ids) if ids else []
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot read state of {identity}: {exc}") from exc
        meta = ChargerMeta.from_dict(orjson.loads(meta_raw)) if meta_raw else ChargerMeta(identity)
        records = tuple(TxRecord.from_dict(orjson.loads(raw)) for raw in tx_raw if raw)
        queue = sorted((QueuedMessage.from_dict(orjson.loads(raw)) for raw in queue_raw.values()),
                       key=lambda q: q.seq)
        return ChargerState(meta, records, tuple(queue))

    def write_behind(self, records: Sequence[Record], on_error: Callable[[StoreError], None]) -> None:
        """:meth:`apply` in a task nobody waits for. It commutes with every other write (it only deletes delivered
        queue entries); ``load``, ``release`` and ``close`` wait for such tasks, so the next owner of the charger
        reads them written."""
        task = asyncio.create_task(self.apply(records))
        self._behind.add(task)
        task.add_done_callback(lambda done: self._written_behind(done, on_error))

    def _written_behind(self, done: asyncio.Task[None], on_error: Callable[[StoreError], None]) -> None:
        self._behind.discard(done)
        error = None if done.cancelled() else done.exception()
        if isinstance(error, StoreError):
            on_error(error)

    async def _settle_behind(self) -> None:
        if self._behind:
            await asyncio.gather(*self._behind, return_exceptions=True)

    async def apply(self, records: Sequence[Record]) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for record in records:
                    self._write(pipe, record)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot write state: {exc}") from exc

    @staticmethod
    def _write(pipe: Any, record: Record) -> None:
        identity = record.identity
        if isinstance(record, QueuedMessage):
            if record.delivered:
                pipe.hdel(_key(identity, "queue"), str(record.seq))
            else:
                pipe.hset(_key(identity, "queue"), str(record.seq), orjson.dumps(record))
        elif isinstance(record, TxRecord):
            pipe.hset(_key(identity, "tx"), str(record.local_id), orjson.dumps(record))
            if record.ended:
                pipe.srem(_key(identity, "open"), str(record.local_id))
                pipe.zadd(_key(identity, "closed"), {str(record.local_id): record.local_id})
            else:
                pipe.sadd(_key(identity, "open"), str(record.local_id))
        else:
            pipe.set(_key(identity, "meta"), orjson.dumps(record))

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError, StoreError):
            return False

    async def close(self) -> None:
        await self._settle_behind()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # --- ownership leases --------------------------------------------------------------------------

    async def claim(self, identity: str, owner: str) -> None:
        """Take the charger over for ``owner``; wait (up to the lease time) until a previous owner let go."""
        ttl_ms = int(self.lease_ttl * 1000)
        try:
            raw = await self.redis.set(_key(identity, "owner"), owner, px=ttl_ms, get=True)
            previous = raw.decode() if isinstance(raw, bytes) else None
            if previous is None or previous == owner:
                return
            released = _key(identity, f"released:{previous}")
            deadline = asyncio.get_running_loop().time() + self.lease_ttl
            while asyncio.get_running_loop().time() < deadline and not await self.redis.exists(released):
                await asyncio.sleep(0.05)
            await self.redis.eval(_SETTLE, 1, _key(identity, "owner"), owner, ttl_ms)
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot claim {identity}: {exc}") from exc

    async def renew(self, identity: str, owner: str) -> bool:
        """Keep the lease; ``False`` when another replica has taken the charger over (or Redis is gone)."""
        try:
            renewed = await self.redis.eval(_RENEW, 1, _key(identity, "owner"), owner, int(self.lease_ttl * 1000))
        except (RedisError, OSError):
            return True  # the store is unreachable, not taken over: keep serving, writes will report failures
        return bool(renewed)

    async def get_route(self, identity: str) -> str | None:
        try:
            mode = await self.redis.hget(ROUTES_KEY, identity)
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot read the route of {identity}: {exc}") from exc
        return mode.decode() if isinstance(mode, bytes) else mode

    async def set_route(self, identity: str, mode: str | None) -> None:
        try:
            if mode is None:
                await self.redis.hdel(ROUTES_KEY, identity)
            else:
                await self.redis.hset(ROUTES_KEY, identity, mode)
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot write the route of {identity}: {exc}") from exc

    async def release(self, identity: str, owner: str) -> None:
        await self._settle_behind()  # the next owner must not deliver again what this one saw delivered
        with contextlib.suppress(RedisError, OSError):  # if Redis is gone the lease expires by itself
            await self.redis.eval(_RELEASE, 2, _key(identity, "owner"), _key(identity, f"released:{owner}"), owner,
                                  int(self.lease_ttl * 1000))
