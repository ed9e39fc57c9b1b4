"""``ocpp-bridge demo``: a reference CSMS, the real bridge and a simulated 1.6 charger in one process.

Why this exists: the fastest way to understand (or to check after ``pip install``) what the bridge does is to
watch it. The demo runs a whole charging session through the real listener, session runner and SQLite store on
loopback, with OS-assigned ports and a throw-away state file, and prints every 1.6 frame next to the 2.0.1/2.1
frames it became. The two peers are deliberately small and independent of the bridge's translation code: they
speak OCPP-J with plain ``websockets`` and the package's framing (:mod:`.core.rpc`) only, and the CSMS checks
every payload it receives against the official schemas. Nothing here needs a network or extra packages.
What the bridge stores and delivers from its queue (docs/durability.md) is answered to the charger first and
reaches the CSMS afterwards; the transcript shows it with the 1.6 call it came from, in the order it happened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any, Final

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from . import config, telemetry
from .core import rpc, validate
from .core.convert import rfc3339
from .core.rpc import Call, CallError, CallResult, ErrorCode, Version
from .io.listener import Bridge
from .store import StoreError, open_store

DEMO_TIMEOUT: Final = 30.0  # seconds for the whole scenario, start-up and shutdown included
IDENTITY: Final = "DEMO-CP-1"
ID_TAG: Final = "04A1B2C3"  # 4-byte ISO 14443 UID: the bridge types it ISO14443 by its format
REMOTE_TAG: Final = "04E3A2B1C0D9F8"  # 7-byte UID, started by the CSMS
REMOTE_START_ID: Final = 4711
FALLBACK_WIDTH: Final = 160

Answer = Callable[[Call], dict[str, Any] | None]  # None: answer NotImplemented
Received = Callable[[str, dict[str, Any]], bool]  # (action, payload) of a call the CSMS received -> wanted?


class DemoError(Exception):
    """The scenario did not go as a working bridge makes it go; the message says what differed."""


def _now() -> str:
    return rfc3339(datetime.now(UTC))


# --- one OCPP-J endpoint (either peer) --------------------------------------------------------------------


class Endpoint:
    """Sends CALLs and awaits their answers; answers the peer's CALLs with ``answer``. One per socket."""

    def __init__(self, name: str, connection: Connection, version: Version, answer: Answer) -> None:
        self.name = name
        self.connection = connection
        self.version = version
        self.answer = answer
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        unique_id = f"{self.name}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = future
        await self.connection.send(rpc.serialize(Call(unique_id, action, payload), self.version))
        return await future

    async def run(self) -> None:
        """Read until the connection closes; a broken frame fails every call still waiting for an answer."""
        error = DemoError(f"the {self.name}'s connection closed before an answer came")
        try:
            async for message in self.connection:
                await self._receive(message)
        except ConnectionClosed:
            pass
        except DemoError as exc:
            error = exc
            await self.connection.close(1002, "protocol error")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def _receive(self, message: str | bytes) -> None:
        try:
            frame = rpc.parse(message, self.version)
        except (rpc.FrameError, rpc.UnknownMessageType) as exc:
            raise DemoError(f"the {self.name} received an unreadable frame: {exc}") from None
        if isinstance(frame, Call):
            payload = self.answer(frame)
            reply: rpc.Frame = CallResult(frame.unique_id, payload) if payload is not None else \
                CallError(frame.unique_id, ErrorCode.NOT_IMPLEMENTED, f"the demo {self.name} has no {frame.action}")
            await self.connection.send(rpc.serialize(reply, self.version))
        elif isinstance(frame, CallResult | CallError):
            future = self._pending.pop(frame.unique_id, None)
            if future is None or future.done():
                raise DemoError(f"the {self.name} got an answer to a call it did not make: {frame.unique_id}")
            if isinstance(frame, CallError):
                future.set_exception(DemoError(f"the {self.name}'s call {frame.unique_id} failed: "
                                               f"{frame.code.value} {frame.description}"))
            else:
                future.set_result(frame.payload)


# --- the reference CSMS -----------------------------------------------------------------------------------

_CSMS_ANSWERS: Final[dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "BootNotification": lambda _: {"currentTime": _now(), "interval": 300, "status": "Accepted"},
    "Heartbeat": lambda _: {"currentTime": _now()},
    "Authorize": lambda _: {"idTokenInfo": {"status": "Accepted"}},
    "TransactionEvent": lambda p: {"idTokenInfo": {"status": "Accepted"}} if "idToken" in p else {},
    "StatusNotification": lambda _: {},
    "MeterValues": lambda _: {},
    "NotifyEvent": lambda _: {},
    "NotifyReport": lambda _: {},
    "SecurityEventNotification": lambda _: {},
    "DataTransfer": lambda _: {"status": "UnknownVendorId"},
}


class ReferenceCsms:
    """A minimal 2.0.1/2.1 CSMS: accepts the station and every token, records every call it receives."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.endpoint: Endpoint | None = None
        self.connected = asyncio.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (action, payload) of every CALL, in arrival order
        self.problems: list[str] = []
        self._waiters: list[tuple[Received, asyncio.Future[int]]] = []

    @property
    def events(self) -> list[dict[str, Any]]:
        """The TransactionEvent payloads, in arrival order."""
        return [payload for action, payload in self.calls if action == "TransactionEvent"]

    async def handle(self, connection: ServerConnection) -> None:
        if connection.subprotocol != self.version.value:
            self.problems.append(f"the bridge connected with subprotocol {connection.subprotocol!r}")
            await connection.close(1002, "subprotocol")
            return
        self.endpoint = Endpoint("csms", connection, self.version, self._answer)
        self.connected.set()
        await self.endpoint.run()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.endpoint is None:
            raise DemoError("the bridge never connected to the CSMS")
        return await self.endpoint.call(action, payload)

    async def received(self, matches: Received, since: int = 0) -> int:
        """The index in :attr:`calls` of the first call from ``since`` on (received already, or yet to come) for
        which ``matches(action, payload)`` is true. The bridge answers the charger once a message is stored and
        delivers it afterwards, so what the charger sent can reach the CSMS a little later."""
        for index in range(since, len(self.calls)):
            if matches(*self.calls[index]):
                return index
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((lambda action, payload: len(self.calls) > since and matches(action, payload), future))
        return await future

    async def transaction_event(self, matches: Callable[[dict[str, Any]], bool], since: int = 0) -> int:
        """The index in :attr:`calls` of the first TransactionEvent from ``since`` on for which ``matches``."""
        return await self.received(lambda action, payload: action == "TransactionEvent" and matches(payload), since)

    def _answer(self, call: Call) -> dict[str, Any] | None:
        violation = validate.check(self.version, call.action, call.payload, response=False)
        if violation is not None:
            self.problems.append(f"the CSMS received an invalid {call.action}: {violation.message}")
        self._record(call.action, call.payload)
        answer = _CSMS_ANSWERS.get(call.action)
        return answer(call.payload) if answer is not None else None

    def _record(self, action: str, payload: dict[str, Any]) -> None:
        self.calls.append((action, payload))
        for matches, future in list(self._waiters):
            if matches(action, payload) and not future.done():
                future.set_result(len(self.calls) - 1)
                self._waiters.remove((matches, future))


# --- the simulated 1.6 charger ------------------------------------------------------------------------------

_CONFIGURATION: Final = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "NumberOfConnectors": "1",
                         "AuthorizeRemoteTxRequests": "false", "LocalPreAuthorize": "false",
                         "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,Voltage"}


@dataclass
class SimulatedCharger:
    """A one-connector 1.6 charger: runs the session it is told to and obeys remote start/stop."""

    endpoint: Endpoint | None = None
    meter: int = 12_000  # Wh on the energy register
    remote: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.endpoint is not None
        return await self.endpoint.call(action, payload)

    def answer(self, call: Call) -> dict[str, Any] | None:
        payload = call.payload
        if call.action in ("RemoteStartTransaction", "RemoteStopTransaction"):
            self.remote.put_nowait((call.action, payload))
            return {"status": "Accepted"}
        if call.action == "GetConfiguration":
            keys = payload.get("key") or list(_CONFIGURATION)
            known = [{"key": k, "readonly": False, "value": _CONFIGURATION[k]} for k in keys if k in _CONFIGURATION]
            unknown = [k for k in keys if k not in _CONFIGURATION]
            return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}
        if call.action == "ChangeConfiguration":
            return {"status": "Accepted" if payload["key"] in _CONFIGURATION else "NotSupported"}
        if call.action in ("TriggerMessage", "Reset", "ChangeAvailability", "UnlockConnector"):
            return {"status": "Rejected"}  # not part of this scenario
        return None

    async def status(self, status: str) -> None:
        await self.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status,
                                               "timestamp": _now()})

    async def start(self, id_tag: str) -> int:
        answer = await self.call("StartTransaction", {"connectorId": 1, "idTag": id_tag, "meterStart": self.meter,
                                                      "timestamp": _now()})
        _expect(answer["idTagInfo"]["status"] == "Accepted", f"StartTransaction answered {answer}")
        return int(answer["transactionId"])

    async def meter_values(self, transaction_id: int, watts: int, volts: float) -> None:
        self.meter += watts // 60  # one minute at this power
        sampled = [
            {"value": str(self.meter), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
             "location": "Outlet", "unit": "Wh"},
            {"value": str(watts), "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": f"{volts:.1f}", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N",
             "unit": "V"},
            {"value": f"{watts / volts:.1f}", "context": "Sample.Periodic", "measurand": "Current.Import",
             "phase": "L1", "unit": "A"},
        ]
        await self.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id,
                                        "meterValue": [{"timestamp": _now(), "sampledValue": sampled}]})

    async def stop(self, transaction_id: int, reason: str, id_tag: str | None = None) -> None:
        self.meter += 150
        request: dict[str, Any] = {"transactionId": transaction_id, "meterStop": self.meter, "timestamp": _now(),
                                   "reason": reason}
        if id_tag is not None:
            request["idTag"] = id_tag
        await self.call("StopTransaction", request)


def _expect(condition: bool, failure: str) -> None:
    if not condition:
        raise DemoError(failure)


# --- the scenario -----------------------------------------------------------------------------------------


async def _local_session(charger: SimulatedCharger) -> None:
    """A driver plugs in, badges, charges for two meter intervals and badges out."""
    boot = await charger.call("BootNotification", {"chargePointVendor": "DemoVendor", "chargePointModel": "DC-1",
                                                   "chargePointSerialNumber": "SN-0001", "firmwareVersion": "1.4.2"})
    _expect(boot["status"] == "Accepted", f"BootNotification answered {boot}")
    await charger.status("Available")
    await charger.status("Preparing")
    auth = await charger.call("Authorize", {"idTag": ID_TAG})
    _expect(auth["idTagInfo"]["status"] == "Accepted", f"Authorize answered {auth}")
    transaction_id = await charger.start(ID_TAG)
    await charger.status("Charging")
    await charger.meter_values(transaction_id, 7200, 230.4)
    await charger.meter_values(transaction_id, 11040, 229.8)
    await charger.stop(transaction_id, "Local", ID_TAG)
    await charger.status("Available")


async def _remote_session(charger: SimulatedCharger, csms: ReferenceCsms) -> None:
    """The CSMS starts a transaction (an app user pressed start) and later stops it."""
    started = await csms.call("RequestStartTransaction", {
        "idToken": {"idToken": REMOTE_TAG, "type": "ISO14443"}, "remoteStartId": REMOTE_START_ID, "evseId": 1})
    _expect(started["status"] == "Accepted", f"RequestStartTransaction answered {started}")
    action, request = await charger.remote.get()
    _expect(action == "RemoteStartTransaction", f"the charger received {action} instead of RemoteStartTransaction")
    await charger.status("Preparing")
    transaction_id = await charger.start(request["idTag"])
    await charger.status("Charging")
    started_at = await csms.transaction_event(lambda e: e["eventType"] == "Started"
                                              and e["transactionInfo"].get("remoteStartId") == REMOTE_START_ID)
    event = csms.calls[started_at][1]
    _expect(event["triggerReason"] == "RemoteStart", f"remote start arrived with {event['triggerReason']}")
    tx_id = event["transactionInfo"]["transactionId"]
    stopped = await csms.call("RequestStopTransaction", {"transactionId": tx_id})
    _expect(stopped["status"] == "Accepted", f"RequestStopTransaction answered {stopped}")
    action, request = await charger.remote.get()
    _expect(action == "RemoteStopTransaction" and request["transactionId"] == transaction_id,
            f"the charger received {action} {request} instead of RemoteStopTransaction for {transaction_id}")
    await charger.stop(transaction_id, "Remote")
    await charger.status("Available")
    ended_at = await csms.transaction_event(lambda e: e["eventType"] == "Ended"
                                            and e["transactionInfo"]["transactionId"] == tx_id, started_at)
    ended = csms.calls[ended_at][1]
    _expect(ended["triggerReason"] == "RemoteStop", f"remote stop arrived with {ended['triggerReason']}")
    # The charger was answered as soon as the bridge had stored its messages; the bridge delivers them in order,
    # so the last status the charger reported reaches the CSMS after the Ended. Nothing is left behind.
    await csms.received(lambda action, p: action == "StatusNotification" and p["connectorStatus"] == "Available",
                        ended_at)


def _seq_nos(csms: ReferenceCsms) -> dict[str, list[int]]:
    """seqNo per transactionId as the CSMS saw them; each must run 0, 1, 2, ... without gaps (E01.FR.04)."""
    seen: dict[str, list[int]] = {}
    for event in csms.events:
        seen.setdefault(event["transactionInfo"]["transactionId"], []).append(event["seqNo"])
    for tx_id, numbers in seen.items():
        _expect(sorted(numbers) == list(range(len(numbers))), f"transaction {tx_id} has seqNos {numbers}")
    return seen


async def _run(version: Version, transcript: Transcript) -> dict[str, list[int]]:
    csms = ReferenceCsms(version)
    with tempfile.TemporaryDirectory(prefix="ocpp-bridge-demo-") as tmp:
        async with serve(csms.handle, "127.0.0.1", 0, subprotocols=[Subprotocol(version.value)]) as server:
            csms_port = next(iter(server.sockets)).getsockname()[1]
            settings = config.load(upstream=f"ws://127.0.0.1:{csms_port}/ocpp", listen="127.0.0.1:0",
                                   state=str(Path(tmp) / "state.db"), upstream_protocols=version.value)
            bridge = Bridge(settings, open_store(settings.state, settings.state_durability), settings.core(),
                            tap=transcript.record)
            await bridge.start()
            try:
                await _drive(f"ws://127.0.0.1:{bridge.port}/ocpp/{IDENTITY}", csms)
            finally:
                await bridge.stop()
    _expect(not csms.problems, "; ".join(csms.problems))
    return _seq_nos(csms)


async def _drive(url: str, csms: ReferenceCsms) -> None:
    async with connect(url, subprotocols=[Subprotocol(Version.V16.value)]) as connection:
        _expect(connection.subprotocol == Version.V16.value, f"bridge agreed to {connection.subprotocol!r}")
        charger = SimulatedCharger()
        charger.endpoint = Endpoint("charger", connection, Version.V16, charger.answer)
        reader = asyncio.create_task(charger.endpoint.run())
        try:
            await _local_session(charger)
            await _remote_session(charger, csms)
        finally:
            reader.cancel()


# --- the transcript -----------------------------------------------------------------------------------------

_LABELS: Final = {"charger>bridge": "charger --> bridge", "bridge>charger": "charger <-- bridge",
                  "bridge>csms": "bridge --> CSMS", "csms>bridge": "bridge <-- CSMS"}


@dataclass
class _Exchange:
    """One call and everything it caused on both sides, until its answer (and, for a charger call, until the
    bridge has delivered from its queue what the call became)."""

    origin: str  # "charger", "csms" or "bridge" (a call the bridge made on its own)
    key: tuple[str, str]  # (socket, messageId) of the call that opened it
    frames: list[tuple[str, list[Any]]] = field(default_factory=list)
    closed: bool = False
    queued: int = -1  # the last of _QUEUED_FROM[its action] delivered so far (they are queued in that order)

    def title(self) -> str:
        calls = [(d, f) for d, f in self.frames if f[0] == rpc.MessageType.CALL]
        left = list(dict.fromkeys(_name(f) for d, f in calls if "charger" in d))  # a retried call once
        right = list(dict.fromkeys(_name(f) for d, f in calls if "csms" in d))
        if self.origin == "charger":
            return f"{left[0]} -> {' + '.join(right) or '(answered by the bridge)'}"
        if self.origin == "csms":
            return f"{' + '.join(left) or '(answered by the bridge)'} <- {right[0]}   [CSMS-initiated]"
        return f"{' + '.join(left + right)}   [the bridge's own call]"

    def notes(self) -> list[str]:
        """Per frame, what its label adds: the charger's answer that came before the CSMS had all of it (the
        bridge answers once it has stored the message, docs/durability.md), and what was delivered after it."""
        notes = [""] * len(self.frames)
        if self.origin != "charger":
            return notes
        answered = next((i for i, (d, f) in enumerate(self.frames)
                         if d == "bridge>charger" and f[0] != rpc.MessageType.CALL and str(f[1]) == self.key[1]), None)
        if answered is None:
            return notes
        for index, (direction, frame) in enumerate(self.frames[answered + 1:], answered + 1):
            if direction == "bridge>csms" and frame[0] == rpc.MessageType.CALL:
                notes[index] = ", from the queue"
                notes[answered] = ", once stored"
        return notes


# What a charger message can become through the bridge's queue, in the order the bridge queues it
# (docs/durability.md); a StopTransaction for a transaction the bridge never saw start also becomes a Started.
_QUEUED_FROM: Final = {
    "StartTransaction": ("TransactionEvent(Started)",),
    "MeterValues": ("TransactionEvent(Updated)", "MeterValues"),
    "StopTransaction": ("TransactionEvent(Started)", "TransactionEvent(Ended)"),
    "StatusNotification": ("StatusNotification", "TransactionEvent(Updated)", "NotifyEvent"),
}
_QUEUED: Final = frozenset(name.split("(")[0] for names in _QUEUED_FROM.values() for name in names)


def _owner(owed: list[_Exchange], frame: list[Any]) -> _Exchange | None:
    """The charger call a message the bridge delivered from its queue came from.

    The bridge answers the charger once it has stored a message and delivers what it became afterwards, strictly
    in order, possibly after the charger's next calls: so it is the oldest call still owed a message of that
    kind, at that instant. A retry (the same message under a new messageId) goes where the first attempt went.
    ``owed`` lists the charger calls that may still be owed something, oldest first; older ones are dropped.
    """
    for index, exchange in enumerate(owed):
        if any(d == "bridge>csms" and f[0] == rpc.MessageType.CALL and f[2:] == frame[2:] for d, f in exchange.frames):
            return exchange
        slot = _slot(exchange.frames[0][1], frame)
        if slot is not None and slot > exchange.queued:
            exchange.queued = slot
            del owed[:index]  # delivered in order: the calls before this one are owed nothing more
            return exchange
    return None


def _slot(source: list[Any], frame: list[Any]) -> int | None:
    """Where ``frame`` (a CALL to the CSMS) stands among what the 1.6 CALL ``source`` can become, if it can."""
    names = _QUEUED_FROM.get(str(source[2]), ())
    name = _name(frame)
    if name not in names or not isinstance(source[3], dict):
        return None
    if name == "TransactionEvent(Updated)" and \
            (frame[3].get("triggerReason") == "ChargingStateChanged") != (source[2] == "StatusNotification"):
        return None  # a charging state comes from a status, every other Updated from meter values
    at, then = _instant(source[3]), _instant(frame[3])
    if at is not None and then is not None and at != then:
        return None  # each of these carries the charger's own timestamp (a status, a start, a stop, a reading)
    return names.index(name)


def _instant(payload: dict[str, Any]) -> datetime | None:
    stamp = payload.get("timestamp") or payload.get("generatedAt")
    if stamp is None and isinstance(payload.get("meterValue"), list) and payload["meterValue"]:
        stamp = payload["meterValue"][0].get("timestamp") if isinstance(payload["meterValue"][0], dict) else None
    try:
        instant = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None
    return instant if instant is not None and instant.tzinfo is not None else None


def _name(frame: list[Any]) -> str:
    action = str(frame[2])
    payload = frame[3] if isinstance(frame[3], dict) else {}
    return f"{action}({payload['eventType']})" if "eventType" in payload else action


@dataclass
class Transcript:
    """Every frame the bridge's tap saw, grouped into exchanges and printed as two columns."""

    frames: list[tuple[str, str]] = field(default_factory=list)

    def record(self, direction: str, text: str) -> None:
        self.frames.append((direction, text))

    def received(self) -> tuple[int, int]:
        """Frames fed into the bridge: (from the charger, from the CSMS)."""
        return (sum(d == "charger>bridge" for d, _ in self.frames), sum(d == "csms>bridge" for d, _ in self.frames))

    def exchanges(self) -> list[_Exchange]:
        exchanges: list[_Exchange] = []
        by_id: dict[tuple[str, str], _Exchange] = {}
        owed: list[_Exchange] = []  # charger calls whose queued messages may still be on their way
        for direction, text in self.frames:
            frame = _decode(text)
            socket = "charger" if "charger" in direction else "csms"
            key = (socket, str(frame[1]))
            current = next((e for e in reversed(exchanges) if not e.closed), None)
            if frame[0] == rpc.MessageType.CALL:
                owner = _owner(owed, frame) if direction == "bridge>csms" and frame[2] in _QUEUED else None
                if owner is not None:
                    current = owner
                elif direction.endswith(">bridge") or current is None:
                    current = _Exchange(socket if direction.endswith(">bridge") else "bridge", key)
                    exchanges.append(current)
                    if direction == "charger>bridge" and frame[2] in _QUEUED_FROM:
                        owed.append(current)
                by_id[key] = current
            exchange = by_id.get(key) or current
            if exchange is None:
                exchange = _Exchange("bridge", key)
                exchanges.append(exchange)
            exchange.frames.append((direction, frame))
            if frame[0] != rpc.MessageType.CALL and key == exchange.key:
                exchange.closed = True
        return exchanges

    def render(self, version: Version, width: int) -> list[str]:
        column = max(30, (width - 3) // 2)
        lines = [_row("OCPP 1.6 (what the charger sent / received)",
                      f"{_VERSION_NAMES[version]} (what the CSMS received / sent)", column),
                 "-" * column + "-+-" + "-" * column]
        for number, exchange in enumerate(self.exchanges(), 1):
            lines.append("")
            lines.append(f"== {number}. {exchange.title()} ".ljust(2 * column + 3, "="))
            noted = [(d, f, note) for (d, f), note in zip(exchange.frames, exchange.notes(), strict=True)]
            for index, (left, right) in enumerate(_rows(noted)):
                if index:
                    lines.append(_row("", "", column))
                left_lines = _wrap(_cell(*left, column), column) if left else []
                right_lines = _wrap(_cell(*right, column), column) if right else []
                lines.extend(_row(a, b, column) for a, b in zip_longest(left_lines, right_lines, fillvalue=""))
        return lines


_VERSION_NAMES: Final = {Version.V16: "OCPP 1.6", Version.V201: "OCPP 2.0.1", Version.V21: "OCPP 2.1"}
Slot = tuple[str, list[Any], str] | None  # (direction, frame, what its label adds)


def _decode(text: str) -> list[Any]:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [0, "?", text]
    return frame if isinstance(frame, list) and len(frame) >= 3 else [0, "?", text]


def _rows(frames: list[tuple[str, list[Any], str]]) -> list[tuple[Slot, Slot]]:
    """Chronological rows; a frame shares a row with the frame before it when that one is on the other side and
    of the same kind: a call next to the call it became, an answer next to an answer. A charger answered before
    the CSMS received what its call became therefore reads top to bottom in the order it happened."""
    rows: list[tuple[Slot, Slot]] = []
    left: Slot = None
    right: Slot = None
    for direction, frame, note in frames:
        on_left = "charger" in direction
        other = right if on_left else left
        is_call = frame[0] == rpc.MessageType.CALL
        if (left if on_left else right) is not None or \
                (other is not None and (other[1][0] == rpc.MessageType.CALL) != is_call):
            rows.append((left, right))
            left, right = None, None
        if on_left:
            left = (direction, frame, note)
        else:
            right = (direction, frame, note)
    if left is not None or right is not None:
        rows.append((left, right))
    return rows


def _cell(direction: str, frame: list[Any], note: str, width: int) -> list[str]:
    """A label line, then the frame as JSON: whatever fits the column on one line stays on one line."""
    kind = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR"}.get(frame[0], "FRAME")
    head = "[" + "".join(f"{_json(part)}, " for part in frame[:-1])
    return [f"{_LABELS.get(direction, direction)}   {kind}{note}", *_pretty(frame[-1], width, 0, head, "]")]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pretty(value: Any, width: int, indent: int, prefix: str, suffix: str) -> list[str]:
    pad = " " * indent
    flat = f"{pad}{prefix}{_json(value)}{suffix}"
    if len(flat) <= width or not isinstance(value, dict | list) or not value:
        return [flat]
    items = list(value.items()) if isinstance(value, dict) else [(None, item) for item in value]
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    lines = [f"{pad}{prefix}{opening}"]
    for index, (key, item) in enumerate(items):
        label = "" if key is None else f"{_json(key)}: "
        lines.extend(_pretty(item, width, indent + 2, label, "," if index < len(items) - 1 else ""))
    return [*lines, f"{pad}{closing}{suffix}"]


def _wrap(lines: list[str], width: int) -> list[str]:
    """Fold lines wider than the column, at a space when there is one, continuing a little indented."""
    wrapped: list[str] = []
    for line in lines:
        indent = " " * (min(len(line) - len(line.lstrip()), width // 2) + 2)
        rest = line
        while len(rest) > width:
            cut = rest.rfind(" ", len(indent), width)
            cut = cut + 1 if cut > len(indent) else width
            wrapped.append(rest[:cut].rstrip())
            rest = indent + rest[cut:]
        wrapped.append(rest)
    return wrapped


def _row(left: str, right: str, column: int) -> str:
    return f"{left:<{column}} | {right}".rstrip()


# --- entry point --------------------------------------------------------------------------------------------


def run_demo(upstream_protocol: str = "ocpp2.0.1") -> int:
    """Run the demo and print its transcript; 0 when every check passed, 1 with a reason otherwise."""
    version = Version.from_subprotocol(upstream_protocol)
    if version is None or not version.is_2x:
        print(f"ocpp-bridge demo: the upstream protocol must be ocpp2.0.1 or ocpp2.1, not {upstream_protocol!r}",
              file=sys.stderr)
        return 1
    # The transcript is the output; only errors get a log line (the lab setup it runs in is deliberate: plain
    # ws:// on loopback with no charger authentication, which the bridge rightly warns about in production).
    telemetry.configure("error")
    transcript = Transcript()
    failure: str | None = None
    seq_nos: dict[str, list[int]] = {}
    try:
        seq_nos = asyncio.run(asyncio.wait_for(_run(version, transcript), DEMO_TIMEOUT))
    except TimeoutError:
        exchanges = transcript.exchanges()
        last = f"#{len(exchanges)} {exchanges[-1].title()}" if exchanges else "none"
        failure = f"timed out after {DEMO_TIMEOUT:g} s (last exchange through the bridge: {last})"
    except (DemoError, StoreError, config.ConfigError) as exc:
        failure = str(exc)
    except (OSError, ConnectionClosed, InvalidHandshake) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an answer of an unexpected shape (KeyError, ...): still a failed demo, not a crash
        failure = f"unexpected {type(exc).__name__}: {exc}"
    width = shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns
    print("\n".join(transcript.render(version, width)))
    print()
    if failure is not None:
        print(f"demo FAILED: {failure}", file=sys.stderr)
        return 1
    from_charger, from_csms = transcript.received()
    ranges = [f"0..{len(numbers) - 1}" for numbers in seq_nos.values()]  # in the order the transactions began
    seq = f"seqNo {ranges[0]} for each" if len(set(ranges)) == 1 else f"seqNo {' and '.join(ranges)}, no gaps"
    print(f"demo finished: {len(seq_nos)} transactions, {from_charger + from_csms} frames translated "
          f"({from_charger} from the charger, {from_csms} from the CSMS), the {_VERSION_NAMES[version]} CSMS saw "
          f"{seq}")
    return 0
