"""How the serving process runs Python's cyclic garbage collector.

Why this exists: at 2,000 connected chargers the heap holds about 500,000 container objects (sessions, sockets,
buffers, records), and CPython's default policy walks all of them whenever the objects promoted to the oldest
generation reach a quarter of it. Under load that happened about once a second, stalled the event loop for
130-380 ms each time, and took a third of the bridge's CPU (measured with ``benchmarks/load.py``). Its young
collections are triggered by allocations minus deallocations, so the deaths of older objects let the young
generation grow far past its threshold: at 1,500 messages/s they still stalled the loop for 10-47 ms several
times a second, most of the added p99 latency (67 ms with them, 9 ms with the collector off).

Nearly nothing the bridge allocates per message is cyclic garbage (reference counting frees it), so the
collector does not run on allocations at all here: the young generations are collected once a second (only
what was allocated since and is still alive is walked, a few milliseconds), the whole heap every 5 minutes, or
sooner once many sessions have ended (a closed session's objects are long-lived and form cycles: only a
collection of the whole heap frees them, so a mass reconnect must not wait minutes for it).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Final

FULL_COLLECTION_INTERVAL: Final = 300.0  # seconds between two collections of the whole heap, at most
CHECK_INTERVAL: Final = 1.0  # seconds between two collections of the young generations
ENDED_SESSIONS: Final = 100  # sessions ended since the last collection that start one at once...
ENDED_SHARE: Final = 0.1  # ... or this share of the open sessions, whichever is larger


class Collector:
    """Started once the process has loaded everything it keeps for its whole life (schemas, tables, the loop).

    ``sessions`` gives (open now, closed since start); the listener counts them in telemetry."""

    def __init__(self, sessions: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 interval: float = FULL_COLLECTION_INTERVAL) -> None:
        self.sessions = sessions
        self.interval = interval
        self.full_collections = 0
        self._timer: asyncio.TimerHandle | None = None
        self._was_enabled = gc.isenabled()
        self.young_collections = 0
        self._last = 0.0  # loop time of the last full collection
        self._closed = 0  # sessions closed at the last full collection

    def start(self) -> None:
        gc.freeze()  # what start-up allocated is never garbage: no collection walks it again
        gc.disable()  # no collection triggered by allocations; _check runs them
        self._last = asyncio.get_running_loop().time()
        self._closed = self.sessions()[1]
        self._schedule()

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(min(CHECK_INTERVAL, self.interval), self._check)

    def _check(self) -> None:
        now = asyncio.get_running_loop().time()
        open_now, closed = self.sessions()
        if now - self._last >= self.interval or closed - self._closed >= max(ENDED_SESSIONS, ENDED_SHARE * open_now):
            gc.collect()
            self.full_collections += 1
            self._last, self._closed = now, closed
        else:
            gc.collect(1)
            self.young_collections += 1
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._was_enabled:
            gc.enable()
