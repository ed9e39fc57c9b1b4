"""The one state-store interface, and the factory that picks an implementation from a ``--state`` value.

Why this exists: all durable state (ledger, charger records) goes through :class:`StateStore`, so the embedded
SQLite default and a shared engine for several replicas are interchangeable behind the same tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..core.state import ChargerState, Record


class StoreError(Exception):
    """The store could not do what was asked; nothing that depended on it may be acknowledged."""


class StateStore(Protocol):
    # Whether ownership is a lease that each session must renew (shared stores); one process owning the file
    # needs no renewal, and 10,000 sessions renewing every second cost CPU and bursts of wake-ups for nothing.
    leases: bool

    async def open(self) -> None: ...

    async def load(self, identity: str) -> ChargerState:
        """The charger record, its open transactions and its most recent closed ones."""
        ...

    async def apply(self, records: Sequence[Record]) -> None:
        """Write ``records`` atomically and durably (per the configured durability); raise StoreError if not."""
        ...

    def write_behind(self, records: Sequence[Record], on_error: Callable[[StoreError], None]) -> None:
        """Write ``records`` atomically with a coming write, without anyone waiting for it; never raises:
        ``on_error`` hears if they could not be written. Only for records nothing depends on yet
        (``Persist.wait`` is False); a later ``load`` of the same charger sees them written, and ``close``
        finishes them."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    # Ownership of a charger across replicas: one live session per identity. ``owner`` is unique per session.
    async def claim(self, identity: str, owner: str) -> None:
        """Take the charger over; return once a previous owner has let go (or its lease expired)."""
        ...

    async def renew(self, identity: str, owner: str) -> bool:
        """``False`` when another session has taken the charger over."""
        ...

    async def release(self, identity: str, owner: str) -> None: ...

    # Route modes an operator chose through the admin API (issue 8): shared by replicas, kept across restarts.
    async def get_route(self, identity: str) -> str | None:
        """The operator's route mode for ``identity``, or None (its configured rules apply)."""
        ...

    async def set_route(self, identity: str, mode: str | None) -> None:
        """Remember ``mode`` for ``identity`` (None: forget it); raise StoreError if it cannot be written."""
        ...


def open_store(spec: str, durability: str = "normal") -> StateStore:
    """A store for a ``--state`` value: ``redis://host:port/db`` (shared by replicas) or a file path (SQLite)."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(spec)
    from .sqlite import SqliteStore

    return SqliteStore(spec, durability)
