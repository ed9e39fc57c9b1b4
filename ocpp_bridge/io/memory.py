"""How the serving process runs Python's cyclic garbage collector.

Why this exists: at 2,000 connected chargers the heap holds about 500,000 container objects (sessions, sockets,
buffers, records), and CPython's default policy walks all of them whenever the objects promoted to the oldest
generation reach a quarter of it. Under load that happened about once a second, stalled the event loop for
130-380 ms each time, and took a third of the bridge's CPU (measured with ``benchmarks/load.py``).

Collecting only the young generations, once a second, was the next step, and still cost 9-11 % of the CPU and a
70-90 ms stall every second at 2,000 chargers in the closed loop: what is young at any moment is mostly the
in-flight state of every connection (a coroutine chain, a future and an iterator per pending read, the frames
and commands of the messages in flight: ~96,000 objects), rebuilt with each message, so each collection walks
all of it again, and it found nothing: under load the bridge makes no cyclic garbage at all (reference counting
frees everything per message; measured with ``gc.callbacks``: 0 objects collected by the young collections).

So nothing is walked on a timer. Once a second, what was allocated since is moved to the permanent generation
(``gc.freeze``, a constant-time list splice), out of every collection's way. The whole heap is collected
(``gc.unfreeze`` + ``gc.collect``) when it is really worth it:

* the heap grew by a quarter since the last full collection (CPython's own rule for its oldest generation, but
  measured as memory blocks allocated now, ``sys.getallocatedblocks``, so the in-flight objects that die a
  moment later do not count, and cyclic garbage, which is never freed otherwise, does);
* many sessions ended (a closed session's objects form cycles that only a collection frees, so a mass
  reconnect must not wait for the timer);
* or 5 minutes passed (cyclic garbage made at a low rate, e.g. by exceptions, is freed at least that often).

A full collection stalls the loop for as long as it walks the heap (250-400 ms at 2,000 chargers): one that
freed (almost) nothing makes the next wait for twice the growth and twice the time (up to a doubling of the heap
and an hour); one that freed something brings both back to the values above.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Final

FULL_COLLECTION_INTERVAL: Final = 300.0  # seconds between two collections of the whole heap, at most
CHECK_INTERVAL: Final = 1.0  # seconds between two freezes of what was allocated meanwhile
ENDED_SESSIONS: Final = 100  # sessions ended since the last collection that start one at once...
ENDED_SHARE: Final = 0.1  # ... or this share of the open sessions, whichever is larger
GROWTH_SHARE: Final = 0.25  # growth of the heap, as a share of it after the last collection, that starts one
GROWTH_MIN: Final = 200_000  # ... but never for fewer new memory blocks than this
FRUITLESS: Final = 0.02  # a timed or growth-started collection that freed less than this share of the heap...
MAX_GROWTH_SHARE: Final = 1.0  # ... doubles the growth the next one waits for, up to this,
MAX_INTERVAL: Final = 3600.0  # ... and the time, up to this


class Collector:
    """Started once the process has loaded everything it keeps for its whole life (schemas, tables, the loop).

    ``sessions`` gives (open now, closed since start); the listener counts them in telemetry."""

    def __init__(self, sessions: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 interval: float = FULL_COLLECTION_INTERVAL) -> None:
        self.sessions = sessions
        self.interval = interval
        self.full_collections = 0
        self.freezes = 0
        self.collected = 0  # objects the full collections freed, in all
        self._timer: asyncio.TimerHandle | None = None
        self._was_enabled = gc.isenabled()
        self._last = 0.0  # loop time of the last full collection
        self._closed = 0  # sessions closed at the last full collection
        self._heap = 0  # memory blocks allocated after the last full collection
        self.growth_share = GROWTH_SHARE  # what the next collection waits for (backs off after fruitless ones)
        self.wait = interval

    def start(self) -> None:
        gc.disable()  # no collection triggered by allocations; _check decides
        gc.freeze()  # what start-up allocated is never garbage: no collection walks it again
        self._heap = sys.getallocatedblocks()
        self._last = asyncio.get_running_loop().time()
        self._closed = self.sessions()[1]
        self._schedule()

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(min(CHECK_INTERVAL, self.interval), self._check)

    def _check(self) -> None:
        now = asyncio.get_running_loop().time()
        open_now, closed = self.sessions()
        ended = closed - self._closed >= max(ENDED_SESSIONS, ENDED_SHARE * open_now)
        blocks = sys.getallocatedblocks()
        if ended or now - self._last >= self.wait or \
                blocks - self._heap >= max(GROWTH_MIN, self.growth_share * self._heap):
            self.collect()
            self._last, self._closed = now, closed
            if not ended:  # the sessions' cycles are known garbage; the other triggers are guesses
                self._adapt(freed=(blocks - self._heap) / blocks if blocks else 0.0)
        else:
            gc.freeze()
            self.freezes += 1
        self._schedule()

    def _adapt(self, freed: float) -> None:
        if freed < FRUITLESS:
            self.growth_share = min(2 * self.growth_share, MAX_GROWTH_SHARE)
            self.wait = min(2 * self.wait, max(MAX_INTERVAL, self.interval))
        else:
            self.growth_share, self.wait = GROWTH_SHARE, self.interval

    def collect(self) -> int:
        """Collect the whole heap now (frozen objects included); returns how many objects it freed."""
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self.full_collections += 1
        self.collected += freed
        self._heap = sys.getallocatedblocks()
        return freed

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
