"""The independent peers the bridge is tested against: a CSMS and 1.6 / 2.x chargers built on the ``ocpp`` package.

Why this exists: the bridge must be judged by somebody else's implementation of OCPP. Both peers are the
mobilityhouse ``ocpp`` ChargePoint classes with schema validation on (the default), so every frame the bridge
sends them is checked against the official schemas by code that is not ours. Each peer RECORDS the calls it
receives (camelCase payloads, exactly as on the wire) and every CALLERROR it had to send back, so a test can
assert what the other side saw, and a peer that had to reject a frame fails the test at teardown.

Answers are configurable per action (``peer.answer("Authorize", {...})`` or a callable of the request payload);
payloads are written as on the wire (camelCase).

Delivery is asynchronous (docs/durability.md): a charger's MeterValues, StopTransaction and StatusNotification are
answered once the bridge has stored them, and reach the CSMS just after. A test therefore never reads the CSMS's
log at the moment the charger got its answer; it waits, with a deadline, for what the CSMS must have received
(``Csms.expect``, ``Csms.wait_received``, ``Csms.transaction_events``). ``RawCharger16`` is a lean 1.6 client on
bare websockets for tests that need hundreds of chargers or full control over retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp import v16, v21, v201
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

TIMEOUT = 5.0  # seconds any single await in these tests may take; generous for a loaded CI machine

Answer = dict[str, Any] | Callable[[dict[str, Any]], Any]  # a payload, or payload -> (awaitable) payload


def now() -> str:
    return datetime.now(UTC).isoformat()


async def within(awaitable: Any, timeout: float = TIMEOUT) -> Any:
    """Every await in these tests has a deadline: a hung bridge fails a test, it never hangs the suite."""
    return await asyncio.wait_for(awaitable, timeout)


# --- recording ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    action: str
    payload: dict[str, Any]
    unique_id: str


class Inbox:
    """An append-only log of what a peer received, with an awaitable 'until this shows up'."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def until(self, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        async def poll() -> Any:
            while True:
                result = check()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(poll(), timeout)


class RecordingPeer:
    """Mixin for an ``ocpp`` ChargePoint: records calls and CALLERRORs, answers from a per-action table."""

    DEFAULTS: dict[str, Answer] = {}
    inbox: Inbox
    answers: dict[str, Answer]
    errors_sent: list[list[Any]]
    raw_received: list[str]
    raw_sent: list[str]
    _current: list[Any] | None
    observer: Inbox | None  # also told of every request recorded (the CSMS's log across all its stations)

    def _init_recording(self, observer: Inbox | None = None) -> None:
        self.inbox = Inbox()
        self.observer = observer
        self.answers = {}
        self.errors_sent = []
        self.raw_received = []
        self.raw_sent = []
        self._current = None

    # ``ocpp`` routes one message at a time, so the CALL being handled is known while its handler runs.
    async def route_message(self, raw_msg: str) -> None:
        self.raw_received.append(raw_msg)
        try:
            message = json.loads(raw_msg)
        except ValueError:
            message = None
        self._current = message if isinstance(message, list) and message and message[0] == 2 else None
        try:
            await super().route_message(raw_msg)  # type: ignore[misc]
        finally:
            self._current = None

    async def _send(self, message: str) -> None:
        self.raw_sent.append(message)
        if message.startswith("[4"):
            self.errors_sent.append(json.loads(message))
        await super()._send(message)  # type: ignore[misc]

    def answer(self, action: str, answer: Answer) -> None:
        self.answers[action] = answer

    async def _respond(self, action: str) -> Any:
        assert self._current is not None and self._current[2] == action
        payload = self._current[3]
        record = Received(action, payload, self._current[1])
        self.inbox.add(record)
        if self.observer is not None:
            self.observer.add((self.id, record))  # type: ignore[attr-defined]
        answer = self.answers.get(action, self.DEFAULTS.get(action, {}))
        body = answer(payload) if callable(answer) else answer
        if inspect.isawaitable(body):  # an answer may take its time (a slow peer)
            body = await body
        result_class = getattr(self._call_result, action)  # type: ignore[attr-defined]
        return result_class(**{_snake(key): value for key, value in body.items()})

    # --- what the tests read -----------------------------------------------------------------------

    def received(self, action: str | None = None) -> list[dict[str, Any]]:
        return [r.payload for r in self.inbox.items if action is None or r.action == action]

    def actions(self) -> list[str]:
        return [r.action for r in self.inbox.items]

    async def expect(self, action: str, where: Callable[[dict[str, Any]], bool] = lambda p: True,
                     timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first request ``action`` satisfying ``where`` (waits for it)."""
        def find() -> Received | None:  # the record, not its payload: an empty payload {} is falsy
            return next((r for r in self.inbox.items if r.action == action and where(r.payload)), None)

        found: Received = await self.inbox.until(find, timeout)
        return found.payload


def _snake(key: str) -> str:
    return next(iter(camel_to_snake_case({key: None})))


def _handlers(actions: list[str]) -> dict[str, Any]:
    """``@on(action)`` methods that record the request and answer from the table."""
    methods: dict[str, Any] = {}
    for action in actions:
        async def handle(self: RecordingPeer, _action: str = action, **_: Any) -> Any:
            return await self._respond(_action)

        name = f"on_{_snake(action)}"
        handle.__name__ = name
        methods[name] = on(action)(handle)
    return methods


# --- the CSMS ----------------------------------------------------------------------------------------------


def _transaction_event_answer(payload: dict[str, Any]) -> dict[str, Any]:
    return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}


CSMS_DEFAULTS: dict[str, Answer] = {
    "BootNotification": lambda p: {"currentTime": now(), "interval": 300, "status": "Accepted"},
    "Heartbeat": lambda p: {"currentTime": now()},
    "StatusNotification": {},
    "Authorize": {"idTokenInfo": {"status": "Accepted"}},
    "TransactionEvent": _transaction_event_answer,
    "MeterValues": {},
    "NotifyEvent": {},
    "NotifyReport": {},
    "DataTransfer": {"status": "Accepted"},
    "FirmwareStatusNotification": {},
    "LogStatusNotification": {},
    "SecurityEventNotification": {},
    "SignCertificate": {"status": "Accepted"},
    "ReservationStatusUpdate": {},
    "NotifyChargingLimit": {},
    "ClearedChargingLimit": {},
    "ReportChargingProfiles": {},
    "NotifyMonitoringReport": {},
    "NotifyCustomerInformation": {},
    "NotifyDisplayMessages": {},
}
_CSMS_ACTIONS = list(CSMS_DEFAULTS)


class _CsmsMixin(RecordingPeer):
    DEFAULTS = CSMS_DEFAULTS


CsmsStation201 = type("CsmsStation201", (_CsmsMixin, v201.ChargePoint), _handlers(_CSMS_ACTIONS))
CsmsStation21 = type("CsmsStation21", (_CsmsMixin, v21.ChargePoint), _handlers(_CSMS_ACTIONS))

# An old OCPP 1.6 central system (issue 8: the legacy side of a migration), numbering transactions itself.
_LEGACY_TRANSACTION_IDS = itertools.count(90_001)
LEGACY_DEFAULTS: dict[str, Answer] = {
    "BootNotification": lambda p: {"currentTime": now(), "interval": 77, "status": "Accepted"},
    "Heartbeat": lambda p: {"currentTime": now()},
    "StatusNotification": {},
    "Authorize": {"idTagInfo": {"status": "Accepted"}},
    "StartTransaction": lambda p: {"transactionId": next(_LEGACY_TRANSACTION_IDS),
                                   "idTagInfo": {"status": "Accepted"}},
    "StopTransaction": {},
    "MeterValues": {},
    "DataTransfer": {"status": "Accepted"},
    "DiagnosticsStatusNotification": {},
    "FirmwareStatusNotification": {},
}


class _LegacyMixin(RecordingPeer):
    DEFAULTS = LEGACY_DEFAULTS


CentralSystem16 = type("CentralSystem16", (_LegacyMixin, v16.ChargePoint), _handlers(list(LEGACY_DEFAULTS)))
_STATION_CLASSES = {"ocpp2.1": CsmsStation21, "ocpp1.6": CentralSystem16}


@dataclass
class Handshake:
    """One upgrade request the CSMS received (whether it accepted it or not)."""

    path: str
    identity: str
    headers: dict[str, str]
    subprotocols: list[str]


@dataclass
class Csms:
    """A CSMS on 127.0.0.1:port speaking 2.0.1 and/or 2.1 through ``ocpp``'s ChargePoint, one per station; with
    ``subprotocols=["ocpp1.6"]``, an old 1.6 central system (``CentralSystem16``)."""

    port: int
    subprotocols: list[str] = field(default_factory=lambda: ["ocpp2.0.1"])
    known_ids: set[str] | None = None  # None: every identity is known; else others get HTTP 404
    gate: Callable[[Handshake], int | None] | None = None  # an HTTP status refusing the upgrade, or None
    errors_allowed: bool = False  # a test that makes the CSMS answer with CALLERRORs on purpose sets this
    hold: asyncio.Event | None = None  # when given, every upgrade waits for it (a slow CSMS)
    handshakes: list[Handshake] = field(default_factory=list)
    stations: dict[str, RecordingPeer] = field(default_factory=dict)  # the latest connection of each identity
    history: list[RecordingPeer] = field(default_factory=list)  # every station connection, in order
    connections: dict[str, ServerConnection] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)  # applied to every station, present and future
    server: Server | None = None
    connected_at: list[tuple[str, float]] = field(default_factory=list)  # (identity, time.monotonic()) per upgrade
    _arrivals: Inbox = field(default_factory=Inbox)
    _log: Inbox = field(default_factory=Inbox)  # (identity, Received) for every request, all stations, in order

    async def start(self) -> Csms:
        self.server = await serve(self._handle, "127.0.0.1", self.port, subprotocols=self.subprotocols,
                                  process_request=self._process_request)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await within(self.server.wait_closed())

    def answer(self, action: str, answer: Answer) -> None:
        self.answers[action] = answer
        for station in self.stations.values():
            station.answer(action, answer)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = request.path.rstrip("/").rsplit("/", 1)[-1]
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        self.handshakes.append(Handshake(request.path, identity, dict(request.headers.raw_items()), offered))
        self._arrivals.add(None)
        if self.hold is not None:
            await self.hold.wait()
        if self.known_ids is not None and identity not in self.known_ids:
            return connection.respond(404, "unknown charging station\n")
        refusal = self.gate(self.handshakes[-1]) if self.gate is not None else None
        return connection.respond(refusal, "refused\n") if refusal is not None else None

    async def _handle(self, connection: ServerConnection) -> None:
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]  # type: ignore[union-attr]
        station_class = _STATION_CLASSES.get(connection.subprotocol or "", CsmsStation201)
        station = station_class(identity, connection, response_timeout=TIMEOUT)
        station._init_recording(self._log)
        for action, answer in self.answers.items():
            station.answer(action, answer)
        self.stations[identity] = station
        self.history.append(station)
        self.connections[identity] = connection
        self.connected_at.append((identity, time.monotonic()))
        self._arrivals.add(identity)
        with contextlib.suppress(websockets.ConnectionClosed):
            await station.start()

    async def handshake_of(self, identity: str, timeout: float = TIMEOUT) -> Handshake:
        """The upgrade request of ``identity`` once it has arrived (it may still be held)."""
        def find() -> Handshake | None:
            return next((h for h in self.handshakes if h.identity == identity), None)

        return await self._arrivals.until(find, timeout)  # type: ignore[no-any-return]

    async def station(self, identity: str, timeout: float = TIMEOUT) -> Any:
        """The CSMS-side ChargePoint of ``identity`` once its upstream connection is open."""
        await self._arrivals.until(lambda: identity in self.stations, timeout)
        return self.stations[identity]

    def received(self, identity: str, action: str | None = None) -> list[dict[str, Any]]:
        """What every connection of ``identity`` received, in order (survives reconnects)."""
        return [p for station in self.history if station.id == identity for p in station.received(action)]

    async def expect(self, identity: str, action: str, where: Callable[[dict[str, Any]], bool] = lambda p: True,
                     timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first request ``action`` of ``identity`` (any of its connections) satisfying ``where``; waits."""
        return (await self.wait_received(identity, action, 1, where, timeout))[0]

    async def wait_received(self, identity: str, action: str, count: int,
                            where: Callable[[dict[str, Any]], bool] = lambda p: True,
                            timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Wait until the CSMS has received at least ``count`` requests ``action`` of ``identity`` satisfying
        ``where`` (across reconnects); all of those received so far, in order."""
        def enough() -> list[dict[str, Any]] | None:
            found = [p for p in self.received(identity, action) if where(p)]
            return found if len(found) >= count else None

        try:
            return await self._log.until(enough, timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            seen = [p for p in self.received(identity, action) if where(p)]
            raise AssertionError(f"the CSMS received {len(seen)} {action} of {identity} within {timeout} s, "
                                 f"expected {count}: {seen}") from None

    async def transaction_events(self, identity: str, count: int, transaction_id: str | None = None,
                                 timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Wait until the CSMS has received ``count`` TransactionEvents of ``identity`` (of one transaction if
        ``transaction_id`` is given); all of them so far."""
        return await self.wait_received(identity, "TransactionEvent", count,
                                        lambda e: transaction_id in (None, e["transactionInfo"]["transactionId"]),
                                        timeout)

    async def until_ended(self, identity: str, transaction_id: str | None = None,
                          timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Wait until the CSMS has received an Ended event (of ``transaction_id`` if given); the transaction's
        TransactionEvents (those of ``identity`` if no id is given) received so far."""
        def mine(event: dict[str, Any]) -> bool:
            return transaction_id in (None, event["transactionInfo"]["transactionId"])

        await self.wait_received(identity, "TransactionEvent", 1, lambda e: mine(e) and e["eventType"] == "Ended",
                                 timeout)
        return [e for e in self.received(identity, "TransactionEvent") if mine(e)]

    async def handshakes_of(self, identity: str, count: int, timeout: float = TIMEOUT) -> list[Handshake]:
        """Wait for the ``count``-th upgrade request of ``identity`` (e.g. the bridge reconnecting); all so far."""
        def enough() -> list[Handshake] | None:
            found = [h for h in self.handshakes if h.identity == identity]
            return found if len(found) >= count else None

        return await self._arrivals.until(enough, timeout)  # type: ignore[no-any-return]

    def errors_sent(self) -> list[list[Any]]:
        return [error for station in self.history for error in station.errors_sent]

    def identities(self) -> list[str]:
        """Every identity the CSMS saw an upgrade request for, in order."""
        return [h.identity for h in self.handshakes]


# --- the chargers ------------------------------------------------------------------------------------------


class _ChargerMixin(RecordingPeer):
    """A charger's answers to the CSMS's calls, with a small 1.6 configuration store behind Get/ChangeConfiguration."""

    config: dict[str, tuple[str, bool]]  # key -> (value, readonly)

    def _get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        keys = payload.get("key") or list(self.config)
        known = [{"key": k, "readonly": self.config[k][1], "value": self.config[k][0]} for k in keys
                 if k in self.config]
        unknown = [k for k in keys if k not in self.config]
        return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}

    def _change_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        key, value = payload["key"], payload["value"]
        if key not in self.config:
            return {"status": "NotSupported"}
        if self.config[key][1]:
            return {"status": "Rejected"}
        self.config[key] = (value, False)
        return {"status": "Accepted"}


DEFAULT_16_CONFIG: dict[str, tuple[str, bool]] = {
    "HeartbeatInterval": ("300", False),
    "MeterValueSampleInterval": ("60", False),
    "ConnectionTimeOut": ("90", False),
    "NumberOfConnectors": ("2", True),
    "AuthorizeRemoteTxRequests": ("false", False),
    "LocalAuthorizeOffline": ("true", False),
    "MeterValuesSampledData": ("Energy.Active.Import.Register", False),
    "StopTransactionOnInvalidId": ("true", False),
    "SupportedFeatureProfiles": ("Core,FirmwareManagement,LocalAuthListManagement,Reservation,"
                                 "SmartCharging,RemoteTrigger", True),
}

CHARGER16_DEFAULTS: dict[str, Answer] = {
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "TriggerMessage": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    "GetConfiguration": lambda p: {},  # replaced per instance by the configuration store
    "ChangeConfiguration": lambda p: {},
    "GetLocalListVersion": {"listVersion": 1},
    "SendLocalList": {"status": "Accepted"},
    "ReserveNow": {"status": "Accepted"},
    "CancelReservation": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Rejected"},
    "GetDiagnostics": {},
    "UpdateFirmware": {},
    "ExtendedTriggerMessage": {"status": "Accepted"},
    "CertificateSigned": {"status": "Accepted"},
    "InstallCertificate": {"status": "Accepted"},
    "DeleteCertificate": {"status": "Accepted"},
    "GetInstalledCertificateIds": {"status": "NotFound"},
    "GetLog": {"status": "Rejected"},
    "SignedUpdateFirmware": {"status": "Accepted"},
}


class _Charger16Mixin(_ChargerMixin):
    DEFAULTS = CHARGER16_DEFAULTS


Charger16 = type("Charger16", (_Charger16Mixin, v16.ChargePoint), _handlers(list(CHARGER16_DEFAULTS)))

_CHARGER2X_DEFAULTS: dict[str, Answer] = {
    "Reset": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    "GetVariables": lambda p: {"getVariableResult": [
        {"attributeStatus": "UnknownVariable", "component": d["component"], "variable": d["variable"]}
        for d in p["getVariableData"]]},
}


class _Charger2xMixin(RecordingPeer):
    DEFAULTS = _CHARGER2X_DEFAULTS


Charger201 = type("Charger201", (_Charger2xMixin, v201.ChargePoint), _handlers(list(_CHARGER2X_DEFAULTS)))
Charger21 = type("Charger21", (_Charger2xMixin, v21.ChargePoint), _handlers(list(_CHARGER2X_DEFAULTS)))
_CHARGER_CLASSES = {"ocpp1.6": Charger16, "ocpp2.0.1": Charger201, "ocpp2.1": Charger21}


@dataclass
class ChargerLink:
    """A connected charger: its ``ocpp`` ChargePoint, its socket and the task reading that socket."""

    cp: Any
    ws: ClientConnection
    task: asyncio.Task[None]

    async def call(self, payload: Any, timeout: float = TIMEOUT) -> Any:
        """A CALL from the charger; a CALLERROR raises (never silently None)."""
        return await within(self.cp.call(payload, suppress=False), timeout)

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the bridge to close this socket; the close code the charger received."""
        await within(self.ws.wait_closed(), timeout)
        return self.ws.close_code


async def _read_forever(cp: Any) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        await cp.start()


@contextlib.asynccontextmanager
async def charger(url: str, identity: str, protocol: str = "ocpp1.6", headers: dict[str, str] | None = None,
                  config: dict[str, tuple[str, bool]] | None = None, offer: list[str] | None = None) -> Any:
    """Connect an ``ocpp`` ChargePoint to the bridge as ``identity``; yields a ChargerLink.

    The charger offers ``offer`` (default: just ``protocol``) and the bridge must agree to ``protocol``.
    """
    ws = await within(connect(url, subprotocols=offer or [protocol], additional_headers=headers,
                              open_timeout=TIMEOUT))
    assert ws.subprotocol == protocol, f"the bridge agreed to {ws.subprotocol!r}, not {protocol}"
    cp = _CHARGER_CLASSES[protocol](identity, ws, response_timeout=TIMEOUT)
    cp._init_recording()
    if isinstance(cp, _ChargerMixin):
        cp.config = dict(config or DEFAULT_16_CONFIG)
        cp.answer("GetConfiguration", cp._get_configuration)
        cp.answer("ChangeConfiguration", cp._change_configuration)
    task = asyncio.create_task(_read_forever(cp))
    link = ChargerLink(cp, ws, task)
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await within(ws.close())
    assert not cp.errors_sent, f"the charger had to answer the bridge with CALLERRORs: {cp.errors_sent}"


class RawCsms:
    """A CSMS that is a bare websockets server: the test writes its frames by hand, nothing fixes them."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, connection: ServerConnection) -> None:
        await self.connections.put(connection)
        await connection.wait_closed()

    async def next(self) -> ServerConnection:
        """The next upstream connection the bridge opens."""
        return await within(self.connections.get())  # type: ignore[no-any-return]


async def exchange(ws: Any, frame: str | list[Any]) -> list[Any]:
    """Send one raw frame, return the next frame received (decoded)."""
    await within(ws.send(frame if isinstance(frame, str) else json.dumps(frame)))
    return json.loads(await within(ws.recv()))  # type: ignore[no-any-return]


async def recv_json(ws: Any) -> list[Any]:
    return json.loads(await within(ws.recv()))  # type: ignore[no-any-return]


# --- transaction events as the CSMS saw them ---------------------------------------------------------------


def collapse_repeats(events: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The events with identical re-deliveries removed, and how many there were.

    Delivery is at-least-once (docs/durability.md): the one message in flight when the bridge died may reach the
    CSMS again, identical, with the same seqNo. A second event with the same transactionId and seqNo but a
    DIFFERENT content is kept (and makes the numbering checks fail): that would be a second event, not a repeat.
    """
    seen: list[dict[str, Any]] = []
    repeats = 0
    for event in events:
        if any(event == earlier for earlier in seen):
            repeats += 1
        else:
            seen.append(event)
    return seen, repeats


def check_one_transaction(events: Sequence[dict[str, Any]]) -> str:
    """One transaction's TransactionEvents as the CSMS must see them: one transactionId, seqNo contiguous from 0,
    exactly one Started (first) and one Ended (last), Updated in between. Returns the transactionId."""
    assert events, "no TransactionEvent at all"
    ids = {e["transactionInfo"]["transactionId"] for e in events}
    assert len(ids) == 1, f"several transactionIds for one transaction: {ids}"
    assert [e["seqNo"] for e in events] == list(range(len(events))), [(e["eventType"], e["seqNo"]) for e in events]
    kinds = [e["eventType"] for e in events]
    assert kinds[0] == "Started" and kinds.count("Started") == 1, kinds
    assert kinds[-1] == "Ended" and kinds.count("Ended") == 1, kinds
    return ids.pop()


def meter_readings(event: dict[str, Any]) -> list[Any]:
    """Every sampled value of an event, in order."""
    return [s["value"] for m in event.get("meterValue", []) for s in m["sampledValue"]]


# --- a lean 1.6 charger on bare websockets -----------------------------------------------------------------


class CallErrorReceived(Exception):
    def __init__(self, frame: list[Any]) -> None:
        super().__init__(f"{frame[2]}: {frame[3]}")
        self.code = frame[2]
        self.description = frame[3]


RAW16_ANSWERS: dict[str, dict[str, Any]] = {
    "RemoteStopTransaction": {"status": "Accepted"},
    "RemoteStartTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "GetConfiguration": {"configurationKey": []},
}


class RawCharger16:
    """A 1.6-J charger written by hand: one JSON frame per call, no schema library, cheap enough for hundreds.

    ``call`` sends a CALL and returns the CALLRESULT payload (a CALLERROR raises CallErrorReceived, a closed
    socket ConnectionClosed). CALLs from the bridge are recorded and answered from ``answers``.
    """

    _ids = itertools.count(1)

    def __init__(self, url: str, identity: str) -> None:
        self.url = url
        self.identity = identity
        self.ws: ClientConnection | None = None
        self.answers = dict(RAW16_ANSWERS)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[list[Any]] = []  # every CALLERROR the bridge answered with
        self.connections = 0
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, timeout: float = TIMEOUT) -> RawCharger16:
        self.ws = await within(connect(self.url, subprotocols=[websockets.Subprotocol("ocpp1.6")],
                                       open_timeout=timeout, compression=None), timeout + 1)
        assert self.ws.subprotocol == "ocpp1.6"
        self.connections += 1
        self._reader = asyncio.create_task(self._read(self.ws))
        return self

    async def connect_retrying(self, deadline: float) -> RawCharger16:
        """Connect, trying again every 100 ms until ``deadline`` (time.monotonic()): a bridge being restarted
        refuses connections for a while, as a real charger finds."""
        while True:
            try:
                return await self.connect(timeout=5)
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidStatus):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)  # a charger's reconnect interval, not a synchronisation

    @property
    def open(self) -> bool:
        return self.ws is not None and self.ws.close_code is None and self.ws.state is websockets.State.OPEN

    async def call(self, action: str, payload: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        ws = self.ws
        assert ws is not None, "not connected"
        unique_id = f"m{next(self._ids)}"  # OCPP-J: at most 36 characters
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = answer
        try:
            await ws.send(json.dumps([2, unique_id, action, payload]))
            frame = await asyncio.wait_for(asyncio.shield(answer), timeout)
        finally:
            self._pending.pop(unique_id, None)
        if frame[0] == 4:
            self.errors.append(frame)
            raise CallErrorReceived(frame)
        return frame[2]  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.ws is not None:
            await within(self.ws.close())
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await within(self._reader)

    async def _read(self, ws: ClientConnection) -> None:
        closed: Exception = websockets.ConnectionClosed(None, None)
        try:
            async for text in ws:
                frame = json.loads(text)
                if frame[0] in (3, 4):
                    future = self._pending.get(frame[1])
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame[0] == 2:
                    self.received.append((frame[2], frame[3]))
                    await ws.send(json.dumps([3, frame[1], self.answers.get(frame[2], {})]))
        except websockets.ConnectionClosed as exc:
            closed = exc
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(closed)

    async def call_until_answered(self, action: str, payload: dict[str, Any], deadline: float,
                                  timeout: float = TIMEOUT) -> tuple[dict[str, Any], int]:
        """What a 1.6 charger does with a transaction message: send it, and when the connection dies (or the
        answer is an error) before it is answered, reconnect and send the SAME message again, until it is
        answered or ``deadline`` (time.monotonic()) passes. The answer and the number of sends."""
        sends = 0
        while True:
            if not self.open:
                await self.connect_retrying(deadline)
            sends += 1
            try:
                return await self.call(action, payload, timeout), sends
            except (websockets.ConnectionClosed, TimeoutError, CallErrorReceived):
                if time.monotonic() > deadline:
                    raise
                if self.open:  # an error answer on a live connection: the charger's retry interval
                    await asyncio.sleep(0.2)


# --- a lean CSMS for hundreds of stations ------------------------------------------------------------------


def _lean_answer(action: str) -> dict[str, Any]:
    if action == "BootNotification":
        return {"currentTime": now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now()}
    if action in ("Authorize", "TransactionEvent"):
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


class LeanCsms:
    """A 2.0.1 CSMS on bare websockets: answers every CALL at once and records when each station connected and
    what it sent. No schema validation (the ``Csms`` above does that): this one exists to be cheap for 500."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: Server | None = None
        self.connects: list[tuple[str, float]] = []  # (identity, time.monotonic()) of every upstream link opened
        self.calls: list[tuple[str, str, float]] = []  # (identity, action, time.monotonic())
        self.live: dict[str, ServerConnection] = {}
        self._changed = Inbox()

    async def start(self) -> LeanCsms:
        self.server = await serve(self._handle, "127.0.0.1", self.port,
                                  subprotocols=[websockets.Subprotocol("ocpp2.0.1")], compression=None)
        return self

    async def stop(self) -> None:
        """Stop listening and close every station's connection (1001), like a CSMS process going down."""
        if self.server is not None:
            self.server.close()
            await within(self.server.wait_closed(), 30)
            self.server = None
        self.live.clear()

    async def until(self, check: Callable[[], Any], timeout: float) -> Any:
        return await self._changed.until(check, timeout)

    async def _handle(self, connection: ServerConnection) -> None:
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]  # type: ignore[union-attr]
        self.connects.append((identity, time.monotonic()))
        self.live[identity] = connection
        self._changed.add(identity)
        try:
            async for text in connection:
                frame = json.loads(text)
                if frame[0] == 2:
                    self.calls.append((identity, frame[2], time.monotonic()))
                    self._changed.add(identity)
                    await connection.send(json.dumps([3, frame[1], _lean_answer(frame[2])]))
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.live.get(identity) is connection:
                del self.live[identity]


# --- security tests: chargers over TLS or from another source address (tests/integration/test_security.py) ----------


@contextlib.asynccontextmanager
async def charger_with(url: str, identity: str, protocol: str = "ocpp1.6", headers: dict[str, str] | None = None,
                       **connect_options: Any) -> Any:
    """``charger`` with extra ``connect`` options (``ssl=`` a client context, ``local_addr=`` a source address,
    ``compression=``); yields a ChargerLink."""
    ws = await within(connect(url, subprotocols=[websockets.Subprotocol(protocol)], additional_headers=headers,
                              open_timeout=TIMEOUT, **connect_options))
    assert ws.subprotocol == protocol, f"the bridge agreed to {ws.subprotocol!r}, not {protocol}"
    cp = _CHARGER_CLASSES[protocol](identity, ws, response_timeout=TIMEOUT)
    cp._init_recording()
    if isinstance(cp, _ChargerMixin):
        cp.config = dict(DEFAULT_16_CONFIG)
        cp.answer("GetConfiguration", cp._get_configuration)
        cp.answer("ChangeConfiguration", cp._change_configuration)
    task = asyncio.create_task(_read_forever(cp))
    try:
        yield ChargerLink(cp, ws, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.TimeoutError, websockets.ConnectionClosed):
            await within(ws.close())
