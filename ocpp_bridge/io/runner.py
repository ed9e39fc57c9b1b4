"""Runs one session: feeds the core the frames and timers of two sockets and executes its commands in order.

Why this exists: the core is pure; something has to read both sockets, keep the clock, and carry out commands.
A single task owns the session (an actor): readers only put events into a bounded inbox, so events are fed one
at a time, the commands of one event run to completion before the next event (a Persist has reached the store
before the answer that depends on it is sent), and a full inbox stops reading (TCP back-pressure) instead of
buffering without bound.

The upstream link has a life of its own (issue 4): when the CSMS goes away while the charger stays connected,
the core is told (UpstreamLost) and keeps serving the charger from its durable queue, while this runner
reconnects with capped exponential back-off and jitter, so a CSMS restart does not bring every charger back in
the same second. When the store refuses a write, no answer of that event that depended on it reaches the
charger as a success: it gets CALLERROR InternalError (and retries), and the core writes the records again.

Frames from the charger, and frames from the CSMS, pass the session's token bucket for that side (issue 5)
before anything else sees them: the excess is answered with CALLERROR GenericError (its message id if readable,
"-1" otherwise) and never reaches the core or the other side; a peer that keeps flooding is closed with 1008 (a
CSMS link closed so is then reconnected like any lost upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from .. import telemetry
from ..core.events import (
    CloseCharger,
    CloseCsms,
    Command,
    Emit,
    Event,
    ExchangeDone,
    FrameFromCharger,
    FrameFromCsms,
    FrameFromLegacy,
    LegacyConnected,
    LegacyLost,
    Links,
    Persist,
    PersistFailed,
    RouteChanged,
    ScheduleWakeup,
    SendToCharger,
    SendToCsms,
    SendToLegacy,
    SessionStarted,
    Tick,
    UpstreamConnected,
    UpstreamLost,
)
from ..store import StateStore, StoreError
from . import security
from .handshake import HandshakeRefused
from .limits import FrameGate

INBOX_SIZE: Final = 64
# Close codes an upstream closure may hand on to the charger unchanged (RFC 6455 §7.4.1); others become 1001.
_RELAYED_CLOSE_CODES: Final = frozenset({1000, 1001, 1008, 1011, 1012, 1013})

Tap = Callable[[str, str], None]  # (direction, frame text): lets the demo print what crosses the bridge


class Core(Protocol):
    def feed(self, event: Event) -> list[Command]: ...


@dataclass(frozen=True, slots=True)
class RideThrough:
    """How to get the upstream back while the charger stays connected (absent: close the charger instead)."""

    reconnect: Callable[[], Awaitable[Connection]]
    backoff_min: float = 1.0
    backoff_max: float = 60.0

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.backoff_min, self.backoff_max)


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Equal jitter: half the doubled back-off fixed, half random (never 0, never in lock-step)."""
    ceiling = float(min(high, low * 2 ** max(0, attempt - 1)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class _Closed:
    side: str
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Barrier:
    """Set once every event queued before it has been fed and its commands run (a route change's answer)."""

    reached: asyncio.Event


Opener = Callable[[], Awaitable[Connection]]
# The events a routed session's link produces: (frame, lost, connected), per link name.
_LinkEvents = tuple[Callable[[str | bytes, float], Event], Callable[[float], Event], Callable[[float], Event]]
_LINK_EVENTS: Final[dict[str, _LinkEvents]] = {"csms": (FrameFromCsms, UpstreamLost, UpstreamConnected),
                       "legacy": (FrameFromLegacy, LegacyLost, LegacyConnected)}


@dataclass(slots=True)
class RoutedLinks:
    """How a routed session (issue 8) reaches its two central systems: how to open each link, the back-off
    between attempts, and the links the handshake opened already."""

    openers: dict[str, Opener]
    open: Mapping[str, Connection]
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    legacy_frames: FrameGate | None = None  # the old central system's frame-rate gate (the CSMS's is the runner's)

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.backoff_min, self.backoff_max)


class SessionRunner:
    def __init__(self, identity: str, core: Core, charger: Connection, csms: Connection | None, store: StateStore,
                 tap: Tap | None = None, ride_through: RideThrough | None = None,
                 frames: FrameGate | None = None, csms_frames: FrameGate | None = None,
                 routed: RoutedLinks | None = None) -> None:
        self.identity = identity
        self.core = core
        self.charger = charger
        self.csms: Connection | None = csms
        self.routed = routed
        self.legacy: Connection | None = routed.open.get("legacy") if routed is not None else None
        self._wanted: dict[str, bool] = {}
        self._link_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.store = store
        self.tap = tap
        self.ride_through = ride_through
        self.frames = frames
        self.csms_frames = csms_frames
        self.connected_at = time.time()
        self._inbox: asyncio.Queue[Event | _Closed | _Barrier] = asyncio.Queue(INBOX_SIZE)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the current timer fires (epoch)
        self._wake_at = 0.0  # when the session asked to be woken (epoch)
        self.finished = asyncio.Event()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._read_charger())]
        if self.routed is None:
            tasks.append(asyncio.create_task(self._upstream(self.csms)))
        else:
            for name, connection in (("csms", self.csms), ("legacy", self.legacy)):
                if connection is not None:
                    self._wanted[name] = True
                    self._link_tasks[name] = asyncio.create_task(self._link(name, connection))
        closed: _Closed | None = None
        try:
            state = await self.store.load(self.identity)
            await self._execute(self.core.feed(SessionStarted(time.time(), state)))
            while True:
                item = await self._inbox.get()
                if isinstance(item, _Closed):
                    closed = item
                    break
                if isinstance(item, _Barrier):
                    item.reached.set()
                    continue
                await self._execute(self.core.feed(item))
        except StoreError as exc:  # the charger's state cannot even be read: it retries after reconnecting
            telemetry.event("store.error", identity=self.identity, error=str(exc))
            await self.charger.close(1011, "state store unavailable")
        except ConnectionClosed:
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in [*tasks, *self._link_tasks.values()]:
                task.cancel()
            await self._close_other_side(closed)
            self.finished.set()

    # --- the two sockets ---------------------------------------------------------------------------

    async def _read_charger(self) -> None:
        try:
            async for message in self.charger:
                if self.frames is not None and not await self.frames.admit(self.charger, message):
                    continue  # over the frame rate: refused, never forwarded
                self._tap("charger>bridge", message)
                await self._inbox.put(FrameFromCharger(message, time.time()))
        except ConnectionClosed:
            pass
        await self._inbox.put(_Closed("charger", self.charger.close_code, self.charger.close_reason or ""))

    async def _upstream(self, connection: Connection | None) -> None:
        """Read the CSMS; when it goes away, ride through (reconnect) or end the session."""
        while connection is not None:
            try:
                async for message in connection:
                    if self.csms_frames is not None and not await self.csms_frames.admit(connection, message):
                        continue  # over the CSMS frame rate: refused, never reaches the charger
                    self._tap("csms>bridge", message)
                    await self._inbox.put(FrameFromCsms(message, time.time()))
            except ConnectionClosed:
                pass
            self.csms = None
            if self.ride_through is None:
                # The bridge closed a flooding CSMS (1008): the charger did nothing wrong, it is told 1001.
                flooded = self.csms_frames is not None and self.csms_frames.closing
                await self._inbox.put(_Closed("csms", 1001 if flooded else connection.close_code,
                                              connection.close_reason or ""))
                return
            telemetry.event("upstream.closed", identity=self.identity, code=connection.close_code)
            await self._inbox.put(UpstreamLost(time.time()))
            connection = await self._reconnect(self.ride_through)

    async def _reconnect(self, ride: RideThrough) -> Connection | None:
        attempt = 0
        while True:
            attempt += 1
            await asyncio.sleep(ride.delay(attempt))
            try:
                connection = await ride.reconnect()
            except HandshakeRefused as refused:
                telemetry.event("upstream.reconnect_failed", identity=self.identity, attempt=attempt,
                                status=refused.status, reason=refused.reason)
                if refused.status in (401, 403, 404):  # the CSMS no longer accepts this station: stop riding
                    await self._inbox.put(_Closed("csms", 1008, f"CSMS refused the station ({refused.status})"))
                    return None
                continue
            self.csms = connection
            telemetry.event("upstream.reconnected", identity=self.identity, attempt=attempt)
            await self._inbox.put(UpstreamConnected(time.time()))
            return connection

    # --- a routed session's two links (issue 8) ------------------------------------------------------

    def link(self, name: str) -> Connection | None:
        return self.csms if name == "csms" else self.legacy

    def _set_link(self, name: str, connection: Connection | None) -> None:
        if name == "csms":
            self.csms = connection
        else:
            self.legacy = connection

    async def _link(self, name: str, connection: Connection | None) -> None:
        """Read one link; while the session wants it, reopen it with jittered back-off whenever it goes away."""
        assert self.routed is not None
        frame_event, lost_event, connected_event = _LINK_EVENTS[name]
        attempt, lost = 0, False
        while True:
            if connection is None:
                if not self._wanted.get(name):
                    return
                attempt += 1
                # a first opening goes at once; reopening a lost link waits (jittered: a restarted central
                # system is not hit by every charger in the same second)
                await asyncio.sleep(self.routed.delay(attempt) if lost or attempt > 1 else 0)
                try:
                    connection = await self.routed.openers[name]()
                except HandshakeRefused as refused:
                    telemetry.event("upstream.reconnect_failed", identity=self.identity, link=name, attempt=attempt,
                                    status=refused.status, reason=refused.reason)
                    continue
                if not self._wanted.get(name):
                    await connection.close(1000, "route changed")
                    return
                attempt = 0
                self._set_link(name, connection)
                telemetry.event("upstream.link_opened", identity=self.identity, link=name)
                await self._inbox.put(connected_event(time.time()))
            gate = self.csms_frames if name == "csms" else self.routed.legacy_frames
            try:
                async for message in connection:
                    if gate is not None and not await gate.admit(connection, message):
                        continue  # over the frame rate: refused, never reaches the charger
                    self._tap(f"{name}>bridge", message)
                    await self._inbox.put(frame_event(message, time.time()))
            except ConnectionClosed:
                pass
            self._set_link(name, None)
            lost = True
            telemetry.event("upstream.link_closed", identity=self.identity, link=name, code=connection.close_code)
            await self._inbox.put(lost_event(time.time()))
            connection = None

    def _set_links(self, links: Links) -> None:
        for name, wanted in (("csms", links.csms), ("legacy", links.legacy)):
            self._wanted[name] = wanted
            task, connection = self._link_tasks.get(name), self.link(name)
            if wanted and (task is None or task.done()):
                self._link_tasks[name] = asyncio.create_task(self._link(name, connection))
            elif not wanted and connection is not None:
                telemetry.event("upstream.link_released", identity=self.identity, link=name)
                self._in_background(connection.close(1000, "route changed"))  # its reader tells the session

    async def change_route(self, mode: str) -> None:
        """Switch a routed session's mode while the charger stays connected: open the links the new mode needs
        first (a failure raises HandshakeRefused and changes nothing), then let the session switch, and return
        once it has."""
        assert self.routed is not None
        needed = {"translate": ("csms",), "legacy": ("legacy",), "shadow": ("legacy", "csms")}[mode]
        for name in needed:
            if self.link(name) is not None:
                continue
            connection = await self.routed.openers[name]()
            if self.link(name) is not None:  # the link's own task got there first
                await connection.close(1000, "opened twice")
                continue
            task = self._link_tasks.pop(name, None)
            if task is not None:
                task.cancel()  # it was waiting to retry: this connection replaces its next attempt
            self._wanted[name] = True
            self._set_link(name, connection)
            await self._inbox.put(_LINK_EVENTS[name][2](time.time()))
            self._link_tasks[name] = asyncio.create_task(self._link(name, connection))
        await self._inbox.put(RouteChanged(time.time(), mode))
        barrier = _Barrier(asyncio.Event())
        await self._inbox.put(barrier)
        waits = [asyncio.create_task(barrier.reached.wait()), asyncio.create_task(self.finished.wait())]
        try:  # the session may end first (the charger went away): then there is nothing left to switch
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    # --- commands ----------------------------------------------------------------------------------

    async def _execute(self, commands: list[Command]) -> None:
        store_failed = False
        for command in commands:
            if isinstance(command, SendToCharger):
                text = _refuse_result(command.text) if store_failed else command.text
                self._tap("bridge>charger", text)
                await self.charger.send(text)
            elif isinstance(command, SendToCsms):
                await self._send_csms(command.text)
            elif isinstance(command, SendToLegacy):
                await self._send_legacy(command.text)
            elif isinstance(command, Links):
                self._set_links(command)
            elif isinstance(command, Persist):
                if not await self._persist(command):
                    store_failed = True
            elif isinstance(command, ScheduleWakeup):
                self._schedule(command.at)
            elif isinstance(command, ExchangeDone):
                telemetry.exchange(command)
            elif isinstance(command, Emit):
                if command.kind == "frame.invalid":  # counted as before; logged within a budget (a flood is cheap)
                    telemetry.TELEMETRY.count_event(command.kind, command.fields)
                    security.event("invalid_message", **command.fields)
                else:
                    telemetry.event(command.kind, **command.fields)
            elif isinstance(command, CloseCharger):
                await self.charger.close(command.code, command.reason)
            elif isinstance(command, CloseCsms) and self.csms is not None:
                await self.csms.close(command.code, command.reason)

    async def _send_csms(self, text: str) -> None:
        if self.csms is None:  # e.g. an answer to a CSMS call whose connection has gone: nobody to tell
            telemetry.event("frame.dropped", identity=self.identity, side="csms", reason="upstream down")
            return
        self._tap("bridge>csms", text)
        with contextlib.suppress(ConnectionClosed):  # the reader notices; queued messages are sent again
            await self.csms.send(text)

    async def _send_legacy(self, text: str) -> None:
        if self.legacy is None:
            telemetry.event("frame.dropped", identity=self.identity, side="legacy", reason="link down")
            return
        self._tap("bridge>legacy", text)
        with contextlib.suppress(ConnectionClosed):
            await self.legacy.send(text)

    async def _persist(self, command: Persist) -> bool:
        if not command.wait:  # deliveries: written with the next commit, nothing waits for them
            self.store.write_behind(command.records, lambda error: self._written_behind_failed(command, error))
            return True
        try:
            await self.store.apply(command.records)
        except StoreError as exc:
            telemetry.event("store.error", identity=self.identity, error=str(exc), records=len(command.records))
            # The core keeps the records and writes them again with its next write.
            await self._execute(self.core.feed(PersistFailed(time.time(), command.records)))
            return False
        return True

    def _written_behind_failed(self, command: Persist, error: StoreError) -> None:
        telemetry.event("store.error", identity=self.identity, error=str(error), records=len(command.records))
        if self.finished.is_set():
            return  # the session is over: the messages are delivered once more when the charger is back
        failed = PersistFailed(time.time(), command.records)  # the core writes them again with its next write
        try:
            self._inbox.put_nowait(failed)
        except asyncio.QueueFull:
            self._in_background(self._inbox.put(failed))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without waiting for it, holding the task until it is done (the loop keeps only a weak one)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _tap(self, direction: str, text: str | bytes) -> None:
        if self.tap is None and not telemetry.TELEMETRY.debug_identities:
            return
        shown = security.redact_frame(text if isinstance(text, str) else text.decode("utf-8", "replace"))
        if self.tap is not None:
            self.tap(direction, shown)
        telemetry.frame(self.identity, direction, shown)

    def _schedule(self, at: float) -> None:
        """Tick at ``at`` (epoch). A timer that fires no later stays: most requests only move the session's next
        deadline later (a new call's timeout), and replacing the timer each time left a cancelled handle in the
        loop's heap per message (alive, and walked by the collector, until its time came)."""
        self._wake_at = at
        if self._timer is not None and self._timer_at <= at:
            return  # it fires first; _wake sleeps again until ``at`` if it is still ahead
        if self._timer is not None:
            self._timer.cancel()
        self._arm(at)

    def _arm(self, at: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - time.time()), self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._wake_at > time.time():  # the deadline moved later since the timer was set
            self._arm(self._wake_at)
            return
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
        for link in (self.csms, self.legacy):
            if link is not None:
                await link.close(1000, "charger disconnected")

    async def close(self, code: int, reason: str) -> None:
        """Close the charger side; the session then winds down and closes upstream."""
        await self.charger.close(code, reason)


def _refuse_result(text: str) -> str:
    """A CALLRESULT whose state could not be stored becomes CALLERROR InternalError: the charger retries."""
    if not text.startswith("[3,"):
        return text
    unique_id = orjson.loads(text)[1]
    return orjson.dumps([4, unique_id, "InternalError", "state store unavailable, try again", {}]).decode()
