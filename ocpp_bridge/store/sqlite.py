"""The embedded default store: one SQLite file in WAL mode.

Why this exists: a sidecar needs durable state without another service to run. Each ``apply`` is atomic and
returns once committed; the ``apply`` calls of one event-loop turn share one transaction (group commit).
``synchronous=NORMAL`` (the default) survives a crash of the process; ``FULL`` also survives a power loss, at
the cost of an fsync per commit (SQLite docs, "WAL mode"). Records are stored as JSON next to
the columns the lookups need, so the schema does not change whenever a record gains a field.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from ..core.ledger import KEEP_CLOSED
from ..core.state import ChargerMeta, ChargerState, QueuedMessage, Record, TxRecord
from . import StoreError

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS charger (identity TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS route (identity TEXT PRIMARY KEY, mode TEXT NOT NULL);
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
CHECKPOINT_EVERY: Final = 200  # commits between two WAL checkpoints (SQLite's own default is ~1000 pages)
_DELETE_QUEUED: Final = "DELETE FROM queue WHERE identity = ? AND seq = ?"
_UPSERT_QUEUED: Final = ("INSERT INTO queue (identity, seq, data) VALUES (?, ?, ?) "
                         "ON CONFLICT (identity, seq) DO UPDATE SET data = excluded.data")
_UPSERT_TX: Final = ("INSERT INTO tx (identity, local_id, tx_id, ended, data) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (identity, local_id) DO UPDATE SET ended = excluded.ended, data = excluded.data")
_UPSERT_CHARGER: Final = ("INSERT INTO charger (identity, data) VALUES (?, ?) "
                          "ON CONFLICT (identity) DO UPDATE SET data = excluded.data")

_Row = tuple[str, tuple[Any, ...]]


def _row(record: Record) -> _Row:
    """The statement that writes ``record``."""
    if isinstance(record, QueuedMessage):
        if record.delivered:
            return _DELETE_QUEUED, (record.identity, record.seq)
        return _UPSERT_QUEUED, (record.identity, record.seq, orjson.dumps(record))
    data = orjson.dumps(record)  # orjson writes dataclasses natively
    if isinstance(record, TxRecord):
        return _UPSERT_TX, (record.identity, record.local_id, record.tx_id, int(record.ended), data)
    return _UPSERT_CHARGER, (record.identity, data)


# What refuses one caller's write: SQLite, or a record that cannot be serialized (orjson raises TypeError).
_REFUSED: Final = (sqlite3.Error, TypeError, ValueError)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():  # the caller was cancelled (its session ended); its records are written all the same
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(StoreError(f"cannot write state: {error}"))


def _report(written: asyncio.Future[None], on_error: Callable[[StoreError], None]) -> None:
    error = None if written.cancelled() else written.exception()
    if isinstance(error, StoreError):
        on_error(error)


class SqliteStore:
    leases = False  # one process owns the file: claim, renew and release are no-ops

    def __init__(self, path: str | Path, durability: str = "normal") -> None:
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(_DURABILITY)}, not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._db: sqlite3.Connection | None = None
        self._batch: list[tuple[Sequence[Record], asyncio.Future[None]]] = []  # waiting for the next group commit
        self.commits = 0  # SQLite transactions committed (a group commit counts once)
        self._checkpointer: sqlite3.Connection | None = None  # used only by the checkpoint thread
        self._checkpointing: asyncio.Future[None] | None = None

    async def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={_DURABILITY[self.durability]}")
            # Writes run on the event loop: a file locked by another process must fail fast (the charger gets
            # CALLERROR and retries) rather than freeze every session for seconds.
            db.execute("PRAGMA busy_timeout=250")
            # Checkpoints (copying the WAL into the database file, with an fsync) run on a thread of their own
            # (:meth:`_checkpoint`), not inside a COMMIT on the event loop, where they stalled every session.
            db.execute("PRAGMA wal_autocheckpoint=0")
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
        self._flush()  # writes behind (a previous session's last deliveries) are read back as written
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

    def write_behind(self, records: Sequence[Record], on_error: Callable[[StoreError], None]) -> None:
        """Join the next group commit like :meth:`apply`, but nobody waits for it (see ``StateStore``)."""
        if not records:
            return
        if self._db is None:
            on_error(StoreError("store is not open"))
            return
        done = self._join(records)
        done.add_done_callback(lambda written: _report(written, on_error))

    async def apply(self, records: Sequence[Record]) -> None:
        """Join the next group commit and return once it is on disk (per the durability setting).

        Sessions that write in the same turn of the event loop share one SQLite transaction: one COMMIT (and, with
        ``synchronous=FULL``, one fsync) for all of them instead of one each. Each caller still returns only after
        the commit that carries its records, so a Persist still reaches the store before the answer that depends
        on it is sent. Each caller's records stay atomic on their own: a batch that fails is written again one
        caller at a time, so one caller's bad write never fails (or half-writes) another's.
        """
        if not records:
            return
        if self._db is None:
            raise StoreError("store is not open")
        await self._join(records)

    def _join(self, records: Sequence[Record]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._batch.append((records, done))
        if len(self._batch) == 1:
            loop.call_soon(self._flush)
        return done

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._write([records for records, _ in batch])
        except _REFUSED as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for records, done in batch:  # find whose write is refused; the others are written on their own
                try:
                    self._write([records])
                except _REFUSED as one:
                    _settle(done, one)
                else:
                    _settle(done, None)
            return
        except StoreError as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            _settle(done, None)

    def _write(self, batches: list[Sequence[Record]]) -> None:
        """One transaction for all ``batches``; everything or nothing. Records are serialized here, one at a time
        (they are the core's immutable snapshots): thousands of serialized rows alive at once, waiting for the
        commit, left the C heap fragmented (measured: +10 KB RSS per charger after a connect storm)."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for records in batches:
                for record in records:
                    db.execute(*_row(record))
            db.execute("COMMIT")
        except _REFUSED:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        if self.commits % CHECKPOINT_EVERY == 0 and (self._checkpointing is None or self._checkpointing.done()):
            self._checkpointing = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)

    def _checkpoint(self) -> None:
        """Runs on an executor thread (sqlite3 releases the GIL while it copies and syncs). PASSIVE: it never waits
        for, nor blocks, the writer; what it cannot copy now is copied by the next one."""
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute("PRAGMA busy_timeout=1000")
                self._checkpointer.execute("PRAGMA cache_size=-256")  # copying the WAL needs no page cache
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            pass  # the WAL only grows a little more until the next checkpoint succeeds

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

    async def get_route(self, identity: str) -> str | None:
        try:
            row = self.db.execute("SELECT mode FROM route WHERE identity = ?", (identity,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the route of {identity}: {exc}") from exc
        return str(row[0]) if row else None

    async def set_route(self, identity: str, mode: str | None) -> None:
        # Autocommit (isolation_level=None): one statement, its own transaction, outside the group commit.
        try:
            if mode is None:
                self.db.execute("DELETE FROM route WHERE identity = ?", (identity,))
            else:
                self.db.execute("INSERT OR REPLACE INTO route (identity, mode) VALUES (?, ?)", (identity, mode))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the route of {identity}: {exc}") from exc

    async def close(self) -> None:
        self._flush()  # writes already accepted are finished, not dropped
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
            self._checkpointing = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None
