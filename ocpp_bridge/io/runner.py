"""Runs one session: feeds the core the frames and timers of two sockets and executes its commands in order.

Why this exists: the core is pure; something has to read both sockets, keep the clock, and carry out commands.
A single task owns the session (an actor): readers only put events into a bounded inbox, so events are fed one
at a time, the commands of one event run to completion before the next event (a Persist has reached the store
before the answer that depends on it is sent), and a full inbox stops reading (TCP back-pressure) instead of
buffering without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from .. import telemetry
from ..core.events import (
    CloseCharger,
    CloseCsms,
    Command,
    Emit,
    Event,
    FrameFromCharger,
    FrameFromCsms,
    Persist,
    ScheduleWakeup,
    SendToCharger,
    SendToCsms,
    SessionStarted,
    Tick,
)
from ..store import StateStore, StoreError

INBOX_SIZE: Final = 64
# Close codes an upstream closure may hand on to the charger unchanged (RFC 6455 §7.4.1); others become 1001.
_RELAYED_CLOSE_CODES: Final = frozenset({1000, 1001, 1008, 1011, 1012, 1013})

Tap = Callable[[str, str], None]  # (direction, frame text): lets the demo print what crosses the bridge


class Core(Protocol):
    def feed(self, event: Event) -> list[Command]: ...


@dataclass(frozen=True, slots=True)
class _Closed:
    side: str
    code: int | None
    reason: str


class SessionRunner:
    def __init__(self, identity: str, core: Core, charger: Connection, csms: Connection, store: StateStore,
                 tap: Tap | None = None) -> None:
        self.identity = identity
        self.core = core
        self.charger = charger
        self.csms = csms
        self.store = store
        self.tap = tap
        self.connected_at = time.time()
        self._inbox: asyncio.Queue[Event | _Closed] = asyncio.Queue(INBOX_SIZE)
        self._timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        readers = [asyncio.create_task(self._read(self.charger, "charger")),
                   asyncio.create_task(self._read(self.csms, "csms"))]
        closed: _Closed | None = None
        try:
            state = await self.store.load(self.identity)
            await self._execute(self.core.feed(SessionStarted(time.time(), state)))
            while True:
                item = await self._inbox.get()
                if isinstance(item, _Closed):
                    closed = item
                    break
                await self._execute(self.core.feed(item))
        except StoreError as exc:
            # Nothing that depended on the failed write was sent; the charger retries after reconnecting.
            telemetry.event("store.error", identity=self.identity, error=str(exc))
            await self.charger.close(1011, "state store unavailable")
        except ConnectionClosed:
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in readers:
                task.cancel()
            await self._close_other_side(closed)

    async def _read(self, connection: Connection, side: str) -> None:
        kind = FrameFromCharger if side == "charger" else FrameFromCsms
        try:
            async for message in connection:
                if self.tap is not None:
                    self.tap(f"{side}>bridge", message if isinstance(message, str) else message.decode())
                await self._inbox.put(kind(message, time.time()))
        except ConnectionClosed:
            pass
        code = connection.close_code
        await self._inbox.put(_Closed(side, code, connection.close_reason or ""))

    async def _execute(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, SendToCharger):
                self._tap("bridge>charger", command.text)
                await self.charger.send(command.text)
            elif isinstance(command, SendToCsms):
                self._tap("bridge>csms", command.text)
                await self.csms.send(command.text)
            elif isinstance(command, Persist):
                await self.store.apply(command.records)
            elif isinstance(command, ScheduleWakeup):
                self._schedule(command.at)
            elif isinstance(command, Emit):
                telemetry.event(command.kind, **command.fields)
            elif isinstance(command, CloseCharger):
                await self.charger.close(command.code, command.reason)
            elif isinstance(command, CloseCsms):
                await self.csms.close(command.code, command.reason)

    def _tap(self, direction: str, text: str) -> None:
        if self.tap is not None:
            self.tap(direction, text)

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, at - time.time()), self._wake)

    def _wake(self) -> None:
        self._timer = None
        try:
            self._inbox.put_nowait(Tick(time.time()))
        except asyncio.QueueFull:  # busy session: try again shortly rather than block the loop
            self._timer = asyncio.get_running_loop().call_later(0.05, self._wake)

    async def _close_other_side(self, closed: _Closed | None) -> None:
        if closed is not None and closed.side == "csms":
            code = closed.code if closed.code in _RELAYED_CLOSE_CODES else 1001
            telemetry.event("session.upstream_closed", identity=self.identity, code=closed.code)
            await self.charger.close(code, "CSMS connection closed")
        else:
            telemetry.event("session.charger_closed", identity=self.identity,
                            code=closed.code if closed else None)
            await self.charger.close(1001, "session ended")
        await self.csms.close(1000, "charger disconnected")

    async def close(self, code: int, reason: str) -> None:
        """Close the charger side; the session then winds down and closes upstream."""
        await self.charger.close(code, reason)
