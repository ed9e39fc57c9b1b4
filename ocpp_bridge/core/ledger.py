"""Transaction identity for one charger: (identity, 1.6 integer id) <-> 2.0.1 transactionId, and seqNo.

Why this exists: a 1.6 charger gets its transactionId from the central system; a 2.0.1 CSMS expects the
station to mint a string id and number its TransactionEvents. The bridge is both, so it mints the pair, hands
out seqNos, and keeps every record keyed by the charger's identity so one charger can never reach another's
transaction. The ledger is pure bookkeeping over records loaded from the store; the session persists them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from .state import ChargerMeta, TxRecord

KEEP_CLOSED = 8  # closed transactions kept in memory so a retried StopTransaction finds its answer


def content_hash(action: str, payload: dict[str, Any]) -> str:
    """A stable hash of a charger request: equal requests (a retry) hash equally."""
    body = orjson.dumps([action, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=12).hexdigest()


class Ledger:
    """The transactions of one charger, indexed for the lookups translation needs."""

    def __init__(self, identity: str, records: Iterable[TxRecord]) -> None:
        self.identity = identity
        self._by_local: dict[int, TxRecord] = {}
        for record in records:
            if record.identity == identity:  # never let a foreign record in, whatever the store returned
                self._by_local[record.local_id] = record

    def __len__(self) -> int:
        return len(self._by_local)

    def get(self, local_id: int) -> TxRecord | None:
        return self._by_local.get(local_id)

    def by_tx_id(self, tx_id: str) -> TxRecord | None:
        return next((r for r in self._by_local.values() if r.tx_id == tx_id), None)

    def by_start_hash(self, start_hash: str) -> TxRecord | None:
        return next((r for r in self._by_local.values() if r.start_hash == start_hash), None)

    def open_transactions(self) -> list[TxRecord]:
        return [r for r in self._by_local.values() if not r.ended]

    def open_on_connector(self, connector_id: int) -> TxRecord | None:
        """The newest open transaction on a connector."""
        found = [r for r in self._by_local.values() if not r.ended and r.connector_id == connector_id]
        return max(found, key=lambda r: r.local_id) if found else None

    def begin(self, meta: ChargerMeta, tx_id: str, local_id: int | None = None, **fields: Any) -> TxRecord:
        """Mint the next 1.6 id (never reused) for a new transaction with 2.0.1 id ``tx_id``, or take the one the
        charger's authoritative central system gave (shadow route, issue 8): ids minted later stay above it."""
        if local_id is None:
            local_id = meta.next_local_id
        meta.next_local_id = max(meta.next_local_id, local_id + 1)
        record = TxRecord(identity=self.identity, local_id=local_id, tx_id=tx_id, **fields)
        self._by_local[local_id] = record
        return record

    def adopt(self, record: TxRecord) -> None:
        """Record a transaction whose 1.6 id the charger brought along (it was not minted here)."""
        if record.identity == self.identity and record.local_id not in self._by_local:
            self._by_local[record.local_id] = record

    @staticmethod
    def next_seq_no(record: TxRecord) -> int:
        seq_no = record.seq_no
        record.seq_no += 1
        return seq_no

    def prune(self) -> None:
        """Drop all but the most recent closed transactions from memory (they stay in the store)."""
        closed = sorted((r for r in self._by_local.values() if r.ended), key=lambda r: r.local_id)
        for record in closed[:-KEEP_CLOSED]:
            del self._by_local[record.local_id]
