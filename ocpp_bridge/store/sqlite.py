"""The embedded default store: one SQLite file in WAL mode.

Why this exists: a sidecar needs durable state without another service to run. Each ``apply`` is one
transaction. ``synchronous=NORMAL`` (the default) survives a crash of the process; ``FULL`` also survives a
power loss, at the cost of an fsync per commit (SQLite docs, "WAL mode"). Records are stored as JSON next to
the columns the lookups need, so the schema does not change whenever a record gains a field.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import orjson

from ..core.ledger import KEEP_CLOSED
from ..core.state import ChargerMeta, ChargerState, QueuedMessage, Record, TxRecord
from . import StoreError

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS charger (identity TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tx (
    identity TEXT NOT NULL,
    local_id INTEGER NOT NULL,
    tx_id TEXT NOT NULL,
    ended INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (identity, local_id)
);
CREATE INDEX IF NOT EXISTS tx_by_state ON tx (identity, ended, local_id);
CREATE UNIQUE INDEX IF NOT EXISTS tx_by_uuid ON tx (identity, tx_id);
CREATE TABLE IF NOT EXISTS queue (
    identity TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (identity, seq)
);
"""
_DURABILITY: Final = {"off": "OFF", "normal": "NORMAL", "full": "FULL"}


class SqliteStore:
    def __init__(self, path: str | Path, durability: str = "normal") -> None:
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(_DURABILITY)}, not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={_DURABILITY[self.durability]}")
            # Writes run on the event loop: a file locked by another process must fail fast (the charger gets
            # CALLERROR and retries) rather than freeze every session for seconds.
            db.execute("PRAGMA busy_timeout=250")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def load(self, identity: str) -> ChargerState:
        try:
            row = self.db.execute("SELECT data FROM charger WHERE identity = ?", (identity,)).fetchone()
            open_rows = self.db.execute(
                "SELECT data FROM tx WHERE identity = ? AND ended = 0", (identity,)).fetchall()
            closed_rows = self.db.execute(
                "SELECT data FROM tx WHERE identity = ? AND ended = 1 ORDER BY local_id DESC LIMIT ?",
                (identity, KEEP_CLOSED)).fetchall()
            queue_rows = self.db.execute(
                "SELECT data FROM queue WHERE identity = ? ORDER BY seq", (identity,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state of {identity}: {exc}") from exc
        meta = ChargerMeta.from_dict(orjson.loads(row[0])) if row else ChargerMeta(identity)
        records = tuple(TxRecord.from_dict(orjson.loads(r[0])) for r in (*open_rows, *closed_rows))
        queue = tuple(QueuedMessage.from_dict(orjson.loads(r[0])) for r in queue_rows)
        return ChargerState(meta, records, queue)

    async def apply(self, records: Sequence[Record]) -> None:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for record in records:
                data = orjson.dumps(record)  # orjson writes dataclasses natively
                if isinstance(record, QueuedMessage):
                    if record.delivered:
                        db.execute("DELETE FROM queue WHERE identity = ? AND seq = ?", (record.identity, record.seq))
                    else:
                        db.execute("INSERT INTO queue (identity, seq, data) VALUES (?, ?, ?) ON CONFLICT (identity, "
                                   "seq) DO UPDATE SET data = excluded.data", (record.identity, record.seq, data))
                elif isinstance(record, TxRecord):
                    db.execute(
                        "INSERT INTO tx (identity, local_id, tx_id, ended, data) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (identity, local_id) DO UPDATE SET ended = excluded.ended, data = excluded.data",
                        (record.identity, record.local_id, record.tx_id, int(record.ended), data))
                else:
                    db.execute("INSERT INTO charger (identity, data) VALUES (?, ?) "
                               "ON CONFLICT (identity) DO UPDATE SET data = excluded.data", (record.identity, data))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"cannot write state: {exc}") from exc

    async def ping(self) -> bool:
        try:
            self.db.execute("SELECT 1").fetchone()
        except (sqlite3.Error, StoreError):
            return False
        return True

    async def count_transactions(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM tx").fetchone()[0])

    async def queue_depth(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM queue").fetchone()[0])

    # One process owns the file: ownership across sessions is the listener's (one session per identity).
    async def claim(self, identity: str, owner: str) -> None:
        return None

    async def renew(self, identity: str, owner: str) -> bool:
        return True

    async def release(self, identity: str, owner: str) -> None:
        return None

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
