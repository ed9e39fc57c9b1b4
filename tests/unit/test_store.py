"""The StateStore contract, run against both implementations: SQLite (embedded) and a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocpp_bridge.core.state import ChargerMeta, QueuedMessage, TxRecord
from ocpp_bridge.store import StateStore, StoreError, open_store
from ocpp_bridge.store.redis import RedisStore

_names = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    spec = str(tmp_path / "s.db") if request.param == "sqlite" else request.getfixturevalue("redis_url")
    opened = open_store(spec)
    await opened.open()
    yield opened
    await opened.close()


def ident() -> str:
    return f"CP-{next(_names)}-{asyncio.get_running_loop().time():.6f}"  # unique per test, even on one Redis


def tx(identity: str, local_id: int, ended: bool = False, seq_no: int = 3) -> TxRecord:
    return TxRecord(identity=identity, local_id=local_id, tx_id=f"{identity}-{local_id}", connector_id=1, evse_id=1,
                    evse_connector_id=1, id_token="AABBCCDD", id_token_type="ISO14443", meter_start=10,
                    started_at="2024-01-01T00:00:00.000Z", start_hash=f"h{local_id}", ended=ended, seq_no=seq_no)


def queued(identity: str, seq: int, delivered: bool = False) -> QueuedMessage:
    return QueuedMessage(identity, seq, "TransactionEvent", {"seqNo": seq}, 1.0, local_id=1, delivered=delivered)


async def test_empty_charger(store: StateStore) -> None:
    name = ident()
    state = await store.load(name)
    assert state.meta == ChargerMeta(name) and state.transactions == () and state.queue == ()


async def test_round_trip_and_isolation(store: StateStore) -> None:
    a, b = ident(), ident()
    meta = ChargerMeta(a, next_local_id=4, token_types={"T": "Central"},
                       auth_cache={"T": {"info": {"status": "Accepted"}, "expires": 5.0}})
    await store.apply([meta, tx(a, 1), tx(a, 2, ended=True), tx(b, 1), queued(a, 1), queued(b, 7)])
    state = await store.load(a)
    assert state.meta == meta
    assert {(r.identity, r.local_id, r.ended) for r in state.transactions} == {(a, 1, False), (a, 2, True)}
    assert [(q.identity, q.seq) for q in state.queue] == [(a, 1)]


async def test_updates_replace_and_closed_history_is_bounded(store: StateStore) -> None:
    a = ident()
    await store.apply([tx(a, n, ended=True) for n in range(1, 21)] + [tx(a, 21)])
    await store.apply([tx(a, 21, seq_no=9)])
    state = await store.load(a)
    assert [r.seq_no for r in state.transactions if not r.ended] == [9]
    closed = sorted(r.local_id for r in state.transactions if r.ended)
    assert closed == list(range(13, 21))  # the 8 most recent closed ones


async def test_queue_order_and_delivery(store: StateStore) -> None:
    a = ident()
    await store.apply([queued(a, n) for n in (3, 1, 12, 2)])
    assert [q.seq for q in (await store.load(a)).queue] == [1, 2, 3, 12]
    await store.apply([queued(a, 1, delivered=True), queued(a, 3, delivered=True)])
    assert [q.seq for q in (await store.load(a)).queue] == [2, 12]


async def test_deliveries_written_behind_are_read_back_as_written(store: StateStore) -> None:
    a = ident()
    await store.apply([queued(a, n) for n in (1, 2, 3)])
    errors: list[StoreError] = []
    store.write_behind([queued(a, 1, delivered=True), queued(a, 2, delivered=True)], errors.append)
    # nobody waited for the write, yet the next load (a new session of the charger) sees it
    assert [q.seq for q in (await store.load(a)).queue] == [3]
    assert errors == []


async def test_writes_behind_are_finished_by_close(store: StateStore) -> None:
    a = ident()
    await store.apply([queued(a, 1), queued(a, 2)])
    store.write_behind([queued(a, 1, delivered=True)], lambda error: None)
    await store.close()
    await store.open()
    assert [q.seq for q in (await store.load(a)).queue] == [2]


async def test_a_record_moves_from_open_to_closed(store: StateStore) -> None:
    a = ident()
    await store.apply([tx(a, 1)])
    await store.apply([tx(a, 1, ended=True)])
    state = await store.load(a)
    assert [(r.local_id, r.ended) for r in state.transactions] == [(1, True)]


async def test_ping_and_closed_store(store: StateStore) -> None:
    assert await store.ping()
    await store.close()
    assert not await store.ping()
    with pytest.raises(StoreError):
        await store.load("x")
    await store.open()  # reopen for the fixture's teardown


async def test_unreachable_redis_is_a_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError, match="cannot reach Redis"):
        await store.open()


# --- ownership across replicas (Redis) ------------------------------------------------------------------


async def test_lease_take_over_waits_for_the_previous_owner(redis_url: str) -> None:
    first, second = RedisStore(redis_url, lease_ttl=3.0), RedisStore(redis_url, lease_ttl=3.0)
    await first.open()
    await second.open()
    a = ident()
    await first.claim(a, "replica-1:s1")
    assert await first.renew(a, "replica-1:s1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    claim = asyncio.create_task(second.claim(a, "replica-2:s2"))
    await asyncio.sleep(0.3)
    assert not claim.done()  # the new owner waits for the old session to let go
    assert not await first.renew(a, "replica-1:s1")  # the old owner learns it was taken over
    await first.release(a, "replica-1:s1")
    await asyncio.wait_for(claim, 2)
    assert loop.time() - started < 2.5  # it did not have to wait for the lease to expire
    assert await second.renew(a, "replica-2:s2")
    await first.close()
    await second.close()


async def test_lease_of_a_dead_owner_expires(redis_url: str) -> None:
    dead, alive = RedisStore(redis_url, lease_ttl=0.5), RedisStore(redis_url, lease_ttl=0.5)
    await dead.open()
    await alive.open()
    a = ident()
    await dead.claim(a, "dead:1")  # never renewed, never released
    await asyncio.wait_for(alive.claim(a, "alive:1"), 2)
    assert await alive.renew(a, "alive:1")
    await dead.close()
    await alive.close()


async def test_route_choices_are_kept_per_identity_and_can_be_forgotten(store: StateStore) -> None:
    first, second = ident(), ident()
    assert await store.get_route(first) is None
    await store.set_route(first, "shadow")
    await store.set_route(second, "legacy")
    await store.set_route(first, "translate")  # a later choice replaces the earlier one
    assert (await store.get_route(first), await store.get_route(second)) == ("translate", "legacy")
    await store.set_route(first, None)
    assert (await store.get_route(first), await store.get_route(second)) == (None, "legacy")
    await store.close()
    with pytest.raises(StoreError):
        await store.set_route(first, "shadow")
    await store.open()
    assert await store.get_route(second) == "legacy"  # kept across a close and reopen
