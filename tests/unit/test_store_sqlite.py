"""The SQLite store: records round-trip, writes are atomic, identities never mix, failures raise StoreError."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ocpp_bridge.core.state import ChargerMeta, TxRecord
from ocpp_bridge.store import StoreError
from ocpp_bridge.store.sqlite import SqliteStore


def tx(identity: str, local_id: int, ended: bool = False) -> TxRecord:
    return TxRecord(identity=identity, local_id=local_id, tx_id=f"{identity}-{local_id}", connector_id=1, evse_id=1,
                    evse_connector_id=1, id_token="AABBCCDD", id_token_type="ISO14443", meter_start=10,
                    started_at="2024-01-01T00:00:00.000Z", start_hash=f"h{local_id}", ended=ended, seq_no=3)


async def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    duplicate_uuid = tx("A", 2)
    duplicate_uuid.tx_id = "A-1"  # violates the (identity, tx_id) uniqueness
    with pytest.raises(StoreError):
        await store.apply([ChargerMeta("A", next_local_id=3), tx("A", 1), duplicate_uuid])
    state = await store.load("A")
    assert state.transactions == () and state.meta.next_local_id == 1
    await store.close()


async def test_refused_write_raises_store_error_and_recovers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    store.db.execute("PRAGMA query_only = ON")  # SQLite itself refuses every write from now on
    with pytest.raises(StoreError, match="cannot write state"):
        await store.apply([ChargerMeta("A", next_local_id=7)])
    assert not store.db.in_transaction
    store.db.execute("PRAGMA query_only = OFF")  # the condition clears: the same store works again
    await store.apply([ChargerMeta("A", next_local_id=7)])
    assert (await store.load("A")).meta.next_local_id == 7
    await store.close()


def test_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SqliteStore(tmp_path / "s.db", "sometimes")


async def test_wal_and_synchronous_level(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", "full")
    await store.open()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert await store.ping()
    await store.close()
    assert not await store.ping()
    assert isinstance(sqlite3.sqlite_version, str)


async def test_concurrent_writes_share_one_commit_and_each_returns_after_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    before = store.commits
    await asyncio.gather(*(store.apply([ChargerMeta(name, next_local_id=5), tx(name, 1)]) for name in "ABCDEF"))
    assert store.commits == before + 1  # one group commit for the six sessions' writes
    for name in "ABCDEF":
        state = await store.load(name)
        assert state.meta.next_local_id == 5 and [t.local_id for t in state.transactions] == [1]
    await store.close()


async def test_one_refused_write_in_a_group_fails_only_its_own_caller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    duplicate_uuid = tx("B", 2)
    duplicate_uuid.tx_id = "B-1"  # violates the (identity, tx_id) uniqueness within B's own write
    results = await asyncio.gather(
        store.apply([ChargerMeta("A", next_local_id=2), tx("A", 1)]),
        store.apply([ChargerMeta("B", next_local_id=3), tx("B", 1), duplicate_uuid]),
        store.apply([tx("C", 1)]),
        return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreError)
    assert (await store.load("A")).meta.next_local_id == 2
    b = await store.load("B")
    assert b.transactions == () and b.meta.next_local_id == 1  # B's write is atomic: nothing of it is kept
    assert [t.local_id for t in (await store.load("C")).transactions] == [1]
    await store.close()


async def test_a_record_that_cannot_be_serialized_fails_only_its_own_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    bad = ChargerMeta("B", station={"vendor": object()})  # type: ignore[dict-item]
    results = await asyncio.gather(store.apply([tx("A", 1)]), store.apply([bad]), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], StoreError)
    assert [t.local_id for t in (await store.load("A")).transactions] == [1]
    await store.close()


async def test_a_refused_write_behind_is_reported_and_fails_nothing_else(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    errors: list[StoreError] = []
    bad = ChargerMeta("B", station={"vendor": object()})  # type: ignore[dict-item]
    store.write_behind([bad], errors.append)
    await store.apply([tx("A", 1)])  # shares the group commit with the refused write, and is written
    assert len(errors) == 1 and "cannot write state" in str(errors[0])
    assert [t.local_id for t in (await store.load("A")).transactions] == [1]
    await store.close()


async def test_a_write_behind_on_a_closed_store_is_reported_not_raised(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    errors: list[StoreError] = []
    store.write_behind([tx("A", 1)], errors.append)
    assert [str(error) for error in errors] == ["store is not open"]
