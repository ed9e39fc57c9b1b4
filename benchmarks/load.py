"""Load benchmark: N simulated OCPP 1.6 chargers through up to four paths, measured side by side in one run.

Why this exists: the bridge's promise is that translating, validating and keeping a durable ledger costs little
more than relaying bytes. Only a measurement against a bare relay, on the same machine in the same run, says
how much more (issue 7). This program is the load generator and the conductor: it starts a lean CSMS sink
(``sink.py``), a bare websockets relay (``relay.py``), optionally the same relay on picows
(``relay_picows.py``), and a real ``ocpp-bridge serve`` (default settings: validation on, SQLite state in a
temporary directory), each in its own process so each one's CPU and memory can be read, and drives the same
charger fleet along these paths:

    direct        chargers --2.0.1--> sink                       (the chargers speak the 2.0.1 equivalent of each frame)
    relay         chargers --1.6--> relay --1.6--> sink          (the sink answers 1.6 in kind)
    relay-picows  chargers --1.6--> relay_picows --1.6--> sink   (only when picows is installed and asked for)
    bridge        chargers --1.6--> ocpp-bridge --2.0.1--> sink

Per path: a connect storm (all N chargers connect and send BootNotification at once; time until every boot is
answered), RSS per connected idle charger, a closed loop (each charger sends its next message when the previous
one is answered: messages/s) and an open loop at an offered rate (latency percentiles of request -> answer).

The chargers live in this one process, callback-driven (websockets' sans-I/O ``ClientProtocol`` under an
``asyncio.Protocol``, uvloop when installed, frames formatted from templates built once), so the generator
stays cheap; its own CPU is measured and reported with everything else. Each charger runs a realistic cycle:
Heartbeat, StatusNotification Preparing, Authorize, StartTransaction, StatusNotification Charging, MeterValues
with 10 sampled values (a Heartbeat halfway), StopTransaction, StatusNotification Finishing and Available; it
answers the CSMS's GetConfiguration (GetVariables), RemoteStartTransaction (the next transaction starts with
the CSMS's idTag) and RemoteStopTransaction (the transaction stops with reason Remote).

Results go to OUT/<timestamp>/: result.json, report.md and chart.png (when matplotlib is installed).

    python benchmarks/load.py --chargers 2000 --seconds 20 --paths direct,relay,bridge --rate 3000
    python benchmarks/load.py --chargers 2000 --seconds 15 --paths relay,relay-picows,bridge --modes closed
    python benchmarks/load.py --chargers 10000 --modes storm       # connect storm and memory only
    python benchmarks/load.py --smoke --out benchmarks/results            # 5 chargers, a few seconds per path (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
import psutil
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sink as sink_module  # the sibling script: its answers (for the self-check) and helpers

HERE: Final = Path(__file__).resolve().parent
PATHS: Final = ("direct", "relay", "relay-picows", "bridge")
DEFAULT_PATHS: Final = "direct,relay,bridge"
RELAYS: Final = ("relay", "relay-picows")  # bare relays the bridge is compared with, per message and per core
MODES: Final = ("storm", "closed", "open")
MAX_FRAME: Final = 1 << 20
STARTUP_TIMEOUT: Final = 60.0  # seconds for a server to listen (the bridge compiles every schema first)
QUIESCE_TIMEOUT: Final = 30.0
CLOSE_TIMEOUT: Final = 15.0

# ----------------------------------------------------------------------------------------------------------------
# frames: templates built once from payloads, then formatted with a few values per message
# ----------------------------------------------------------------------------------------------------------------

_MEASURANDS: Final = (  # the nine sampled values besides the energy register: (measurand, phase, unit, base)
    ("Power.Active.Import", None, "W", 11040),
    ("Power.Offered", None, "W", 22000),
    ("Current.Import", "L1", "A", 16.1),
    ("Current.Import", "L2", "A", 15.9),
    ("Current.Import", "L3", "A", 16.0),
    ("Current.Offered", None, "A", 32),
    ("Voltage", "L1-N", "V", 230.4),
    ("Voltage", "L2-N", "V", 229.8),
    ("Voltage", "L3-N", "V", 231.1),
)
VARIANTS: Final = 7  # the nine values take 7 different sets of readings in turn


def _samples(v16: bool, variant: int) -> bytes:
    """The nine non-energy sampled values of one MeterValues, as raw JSON starting with a comma."""
    out = []
    for measurand, phase, unit, base in _MEASURANDS:
        value = round(base + variant / 10, 1)
        sample: dict[str, Any] = {"value": str(value) if v16 else value, "context": "Sample.Periodic",
                                  "measurand": measurand}
        if phase is not None:
            sample["phase"] = phase
        sample["location"] = "Outlet"
        if v16:
            sample["unit"] = unit
        else:
            sample["unitOfMeasure"] = {"unit": unit}
        out.append(orjson.dumps(sample))
    return b"," + b",".join(out)


def _energy(context: str, v16: bool, location: bool = False) -> dict[str, Any]:
    sample: dict[str, Any] = {"value": "@energy@" if v16 else "@energy:d@", "context": context,
                              "measurand": "Energy.Active.Import.Register"}
    if location:
        sample["location"] = "Outlet"
    sample.update({"unit": "Wh"} if v16 else {"unitOfMeasure": {"unit": "Wh"}})
    return sample


_TOKEN_201: Final = {"idToken": "@tag@", "type": "ISO14443"}

PAYLOADS_16: Final[dict[str, tuple[str, dict[str, Any]]]] = {  # kind -> (action, payload with placeholders)
    "boot": ("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "AC-22",
                                  "chargePointSerialNumber": "@serial@", "firmwareVersion": "1.4.2"}),
    "heartbeat": ("Heartbeat", {}),
    "status": ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "@status@",
                                      "timestamp": "@ts@"}),
    "authorize": ("Authorize", {"idTag": "@tag@"}),
    "start": ("StartTransaction", {"connectorId": 1, "idTag": "@tag@", "meterStart": "@energy:d@",
                                   "timestamp": "@ts@"}),
    "meter": ("MeterValues", {"connectorId": 1, "transactionId": "@tx:d@", "meterValue": [
        {"timestamp": "@ts@", "sampledValue": [_energy("Sample.Periodic", True, True), "@samples:raw@"]}]}),
    "stop_local": ("StopTransaction", {"transactionId": "@tx:d@", "idTag": "@tag@", "meterStop": "@energy:d@",
                                       "timestamp": "@ts@", "reason": "Local"}),
    "stop_remote": ("StopTransaction", {"transactionId": "@tx:d@", "meterStop": "@energy:d@", "timestamp": "@ts@",
                                        "reason": "Remote"}),
}
PAYLOADS_201: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "boot": ("BootNotification", {"chargingStation": {"model": "AC-22", "vendorName": "Bench",
                                                      "serialNumber": "@serial@", "firmwareVersion": "1.4.2"},
                                  "reason": "PowerUp"}),
    "heartbeat": ("Heartbeat", {}),
    "status": ("StatusNotification", {"timestamp": "@ts@", "connectorStatus": "@status@", "evseId": 1,
                                      "connectorId": 1}),
    "authorize": ("Authorize", {"idToken": _TOKEN_201}),
    "start": ("TransactionEvent", {
        "eventType": "Started", "timestamp": "@ts@", "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": "@tx@", "chargingState": "EVConnected"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": _TOKEN_201,
        "meterValue": [{"timestamp": "@ts@", "sampledValue": [_energy("Transaction.Begin", False)]}]}),
    "start_remote": ("TransactionEvent", {
        "eventType": "Started", "timestamp": "@ts@", "triggerReason": "RemoteStart", "seqNo": 0,
        "transactionInfo": {"transactionId": "@tx@", "chargingState": "EVConnected", "remoteStartId": "@rsid:d@"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": _TOKEN_201,
        "meterValue": [{"timestamp": "@ts@", "sampledValue": [_energy("Transaction.Begin", False)]}]}),
    "meter": ("TransactionEvent", {
        "eventType": "Updated", "timestamp": "@ts@", "triggerReason": "MeterValuePeriodic", "seqNo": "@seq:d@",
        "transactionInfo": {"transactionId": "@tx@", "chargingState": "Charging"},
        "meterValue": [{"timestamp": "@ts@",
                        "sampledValue": [_energy("Sample.Periodic", False, True), "@samples:raw@"]}]}),
    "stop_local": ("TransactionEvent", {
        "eventType": "Ended", "timestamp": "@ts@", "triggerReason": "StopAuthorized", "seqNo": "@seq:d@",
        "transactionInfo": {"transactionId": "@tx@", "chargingState": "EVConnected"}, "idToken": _TOKEN_201,
        "meterValue": [{"timestamp": "@ts@", "sampledValue": [_energy("Transaction.End", False)]}]}),
    "stop_remote": ("TransactionEvent", {
        "eventType": "Ended", "timestamp": "@ts@", "triggerReason": "RemoteStop", "seqNo": "@seq:d@",
        "transactionInfo": {"transactionId": "@tx@", "chargingState": "EVConnected", "stoppedReason": "Remote"},
        "meterValue": [{"timestamp": "@ts@", "sampledValue": [_energy("Transaction.End", False)]}]}),
}
STATUS_201: Final = {b"Available": b"Available", b"Preparing": b"Occupied", b"Charging": b"Occupied",
                     b"Finishing": b"Occupied"}

# Answers a charger gives to the CSMS's calls (1.6 in kind to the relay's sink and the bridge, 2.0.1 direct).
CONFIGURATION: Final = {"configurationKey": [
    {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
    {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
    {"key": "ConnectionTimeOut", "readonly": False, "value": "90"}]}
VARIABLES: Final = {"getVariableResult": [
    {"attributeStatus": "Accepted", "attributeType": "Actual", "attributeValue": value, **item}
    for value, item in zip(("300", "60", "90"), sink_module.GET_VARIABLES["getVariableData"], strict=True)]}
ACCEPTED: Final = b'{"status":"Accepted"}'
REJECTED: Final = b'{"status":"Rejected"}'
_CONFIGURATION_JSON: Final = orjson.dumps(CONFIGURATION)
_VARIABLES_JSON: Final = orjson.dumps(VARIABLES)
_TX_16: Final = re.compile(rb'"transactionId":(\d+)')

_PLACEHOLDER: Final = re.compile(rb'"@(\w+):d@"|"@(\w+):raw@"|,"@(\w+):raw@"|@(\w+)@')


def template(action: str, payload: dict[str, Any]) -> bytes:
    """A CALL as a bytes %-format with named fields: ``"@x:d@"`` -> a number, ``"@x:raw@"`` -> raw JSON,
    ``@x@`` -> text inside a string. The fields are formatted from a dict of bytes keys."""
    text = orjson.dumps([2, "@id@", action, payload]).replace(b"%", b"%%")

    def field_(match: re.Match[bytes]) -> bytes:
        number, raw, raw_item, inline = match.groups()
        if number:
            return b"%(" + number + b")d"
        if raw or raw_item:
            return b"%(" + (raw or raw_item) + b")b"
        return b"%(" + inline + b")b"

    return _PLACEHOLDER.sub(field_, text)


@dataclass(frozen=True)
class Frames:
    """The templates of one OCPP version, and the parts of frames that never change."""

    v16: bool
    templates: dict[str, bytes]
    samples: tuple[bytes, ...]

    @classmethod
    def build(cls, v16: bool) -> Frames:
        payloads = PAYLOADS_16 if v16 else PAYLOADS_201
        templates = {kind: template(action, payload) for kind, (action, payload) in payloads.items()}
        if v16:
            templates["start_remote"] = templates["start"]
        return cls(v16, templates, tuple(_samples(v16, i) for i in range(VARIANTS)))


FRAMES: Final = {True: Frames.build(True), False: Frames.build(False)}


def self_check() -> None:
    """Render every template and answer once and validate it against the official schemas (both versions),
    so a typo here shows up as a failed run, not as a benchmark of CALLERRORs."""
    from ocpp_bridge.core import validate
    from ocpp_bridge.core.rpc import Version

    values = {b"id": b"1", b"serial": b"SN-1", b"status": b"Available", b"ts": b"2024-05-01T10:00:00.000Z",
              b"tag": b"04A1B2C3", b"energy": 1234, b"tx": 7, b"seq": 3, b"rsid": 5}
    problems = []
    for v16, frames in FRAMES.items():
        version = Version.V16 if v16 else Version.V201
        for kind, text in frames.templates.items():
            fields = {**values, b"samples": frames.samples[1], b"tx": 7 if v16 else b"CP1-1"}
            if kind == "meter" and v16:
                fields[b"energy"] = b"1234"
            frame = orjson.loads(text % fields)
            problems.append(validate.check(version, frame[2], frame[3], response=False))
        for action, payload in sink_module.answers(v16, b"2024-05-01T10:00:00.000Z").items():
            problems.append(validate.check(version, action.decode(), orjson.loads(payload), response=True))
    problems += [validate.check(Version.V16, "GetConfiguration", CONFIGURATION, response=True),
                 validate.check(Version.V201, "GetVariables", VARIABLES, response=True),
                 validate.check(Version.V201, "GetVariables", sink_module.GET_VARIABLES, response=False),
                 validate.check(Version.V16, "GetConfiguration", sink_module.GET_CONFIGURATION, response=False)]
    bad = [p.message for p in problems if p is not None]
    if bad:
        raise SystemExit("the benchmark's own frames are invalid:\n  " + "\n  ".join(bad))


# ----------------------------------------------------------------------------------------------------------------
# one simulated charger
# ----------------------------------------------------------------------------------------------------------------

BOOT, HEARTBEAT, STATUS, AUTHORIZE, START, METER, STOP = range(7)


def cycle(meter_values: int) -> tuple[tuple[int, bytes], ...]:
    """One transaction's worth of steps, repeated for as long as the charger runs."""
    half = meter_values // 2
    return ((HEARTBEAT, b""), (STATUS, b"Preparing"), (AUTHORIZE, b""), (START, b""), (STATUS, b"Charging"),
            *[(METER, b"")] * half, (HEARTBEAT, b""), *[(METER, b"")] * (meter_values - half),
            (STOP, b""), (STATUS, b"Finishing"), (STATUS, b"Available"))


class Charger(asyncio.Protocol):
    """A one-connector charger. Sends one CALL at a time; answers the CSMS's CALLs at once."""

    __slots__ = ("awaiting", "deferred", "energy", "fleet", "frames", "identity", "index", "live", "next_due",
                 "next_id", "pos", "remote", "sent_at", "sent_due", "seq", "step", "stop_requested", "tag",
                 "transport", "tx", "ws")

    def __init__(self, fleet: Fleet, index: int, v16: bool) -> None:
        self.fleet = fleet
        self.index = index
        self.identity = f"CP{index:05d}"
        self.frames = FRAMES[v16]
        self.tag = b"%08X" % (0x04A00000 + index)
        self.ws: ClientProtocol | None = None
        self.transport: asyncio.Transport | None = None
        self.next_id = 0
        self.awaiting = b""  # '"<messageId>"' of the CALL waiting for its answer; empty when none
        self.sent_at = 0.0
        self.step = -1  # the step of that CALL (-1: the StatusNotification after boot)
        self.pos = 0  # next position in the cycle
        self.energy = 1000 * index
        self.tx: Any = None  # 1.6: the CSMS's integer id; 2.0.1: the id this charger minted
        self.seq = 0
        self.remote: tuple[bytes, int] | None = None  # (idTag, remoteStartId) of an accepted remote start
        self.stop_requested = False
        self.deferred = False  # open loop: a send came due while a CALL was outstanding
        self.live = False  # the WebSocket handshake succeeded and the connection is still there
        self.next_due = 0.0  # open loop: when the next CALL should go out (time.monotonic)
        self.sent_due = 0.0  # open loop: when the CALL in flight should have gone out

    # --- transport callbacks -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's transports are not asyncio.Transport
        self.ws = ClientProtocol(parse_uri(self.fleet.url(self.identity)), subprotocols=self.fleet.subprotocols,
                                 max_size=MAX_FRAME)
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        for event in ws.events_received():
            if type(event) is Frame:
                if event.opcode is Opcode.TEXT:
                    self._message(event.data)
            else:
                self._handshake_done()
        self._flush()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.lost(self)
        self.transport = None

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self.ws is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()

    def _handshake_done(self) -> None:
        ws = self.ws
        assert ws is not None
        if ws.state is State.OPEN and ws.subprotocol in self.fleet.subprotocols:
            self.fleet.connected(self)
            self.send(BOOT, b"")
        else:
            if ws.handshake_exc is not None:
                why = str(ws.handshake_exc)
            elif ws.state is not State.OPEN:
                why = f"closed right after it (code {ws.close_code})"
            else:
                why = f"subprotocol {ws.subprotocol!r}"
            self.fleet.refused(self, why)
            if self.transport is not None:
                self.transport.abort()

    def close(self) -> None:
        if self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        elif self.transport is not None:
            self.transport.abort()

    # --- sending ---------------------------------------------------------------------------------------------

    def send(self, step: int, arg: bytes) -> None:
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return
        self.next_id += 1
        message_id = b"%x" % self.next_id
        fleet = self.fleet
        templates = self.frames.templates
        fields: dict[bytes, Any] = {b"id": message_id, b"ts": fleet.stamp}
        if step == METER:
            self.energy += 184
            self.seq += 1
            variant = self.seq % VARIANTS
            fields.update({b"tx": self.tx, b"seq": self.seq, b"samples": self.frames.samples[variant],
                           b"energy": b"%d" % self.energy if self.frames.v16 else self.energy})
            text = templates["meter"] % fields
        elif step == STATUS:
            fields[b"status"] = arg if self.frames.v16 else STATUS_201[arg]
            text = templates["status"] % fields
        elif step == HEARTBEAT:
            text = templates["heartbeat"] % fields
        elif step == START:
            self.seq = 0
            self.stop_requested = False
            fields[b"energy"] = self.energy
            if not self.frames.v16:  # a 2.0.1 charger mints its own transactionId
                self.tx = fields[b"tx"] = b"%b-%d" % (self.identity.encode(), self.next_id)
            if self.remote is not None:
                fields[b"tag"], fields[b"rsid"] = self.remote
                text = templates["start_remote"] % fields
            else:
                fields[b"tag"] = self.tag
                text = templates["start"] % fields
        elif step == STOP:
            self.energy += 150
            self.seq += 1
            fields.update({b"tx": self.tx, b"seq": self.seq, b"energy": self.energy, b"tag": self.tag})
            text = templates["stop_remote" if self.stop_requested else "stop_local"] % fields
        elif step == AUTHORIZE:
            fields[b"tag"] = self.tag
            text = templates["authorize"] % fields
        else:
            fields[b"serial"] = self.identity.encode()
            text = templates["boot"] % fields
        self.awaiting = b'"' + message_id + b'"'
        self.step = step
        fleet.in_flight += 1
        self.sent_due, self.next_due = self.next_due, 0.0
        self.sent_at = time.monotonic()
        ws.send_text(text)

    def send_next(self) -> None:
        """The next step of the cycle, skipping what the situation makes moot."""
        program = self.fleet.program
        for _ in range(len(program)):
            step, arg = program[self.pos]
            self.pos = (self.pos + 1) % len(program)
            if step == AUTHORIZE and self.remote is not None:
                continue  # the CSMS started this transaction: no local authorization
            if step in (METER, STOP) and self.tx is None:
                self.pos = 0  # the start failed: begin the next cycle
                continue
            if step == METER and self.stop_requested:
                continue  # the CSMS asked to stop: go straight to StopTransaction
            if step == HEARTBEAT and self.stop_requested and self.tx is not None:
                continue
            self.send(step, arg)
            return

    # --- receiving --------------------------------------------------------------------------------------------

    def _message(self, data: bytes) -> None:
        kind = data[1]
        if kind == 50:  # '2': a CALL from the CSMS
            self._csms_call(data)
        elif (kind == 51 or kind == 52) and self.awaiting and data.startswith(self.awaiting, 3):
            self._answered(data, kind == 51)
        else:
            self.fleet.stray += 1

    def _answered(self, data: bytes, ok: bool) -> None:
        fleet = self.fleet
        now = time.monotonic()
        self.awaiting = b""
        fleet.in_flight -= 1
        step = self.step
        if fleet.recording:
            fleet.latencies.append(now - self.sent_at)
            if self.sent_due:
                fleet.schedule_latencies.append(now - self.sent_due)
            if ok:
                fleet.done += 1
            else:
                fleet.errors[step] += 1
        if step == START:
            self.remote = None
            if not ok:
                self.tx = None
            elif self.frames.v16:
                match = _TX_16.search(data)
                self.tx = int(match.group(1)) if match else None
        elif step == STOP:
            self.tx = None
            self.stop_requested = False
        elif step == BOOT:
            fleet.booted(self, ok)
            if fleet.mode == "storm":
                self.send(STATUS, b"Available")
            return
        mode = fleet.mode
        if mode == "closed":
            self.send_next()
        elif mode == "open" and self.deferred:
            self.deferred = False
            self.send_next()

    def _csms_call(self, data: bytes) -> None:
        parts = sink_module.split_call(data)
        ws = self.ws
        if parts is None or ws is None or ws.state is not State.OPEN:
            return
        message_id, action = parts
        if action in (b"GetConfiguration", b"GetVariables"):
            answer = _CONFIGURATION_JSON if self.frames.v16 else _VARIABLES_JSON
        elif action in (b"RemoteStartTransaction", b"RequestStartTransaction"):
            answer = self._remote_start(orjson.loads(data)[3])
        elif action in (b"RemoteStopTransaction", b"RequestStopTransaction"):
            answer = self._remote_stop(orjson.loads(data)[3])
        else:
            ws.send_text(b'[4,"%b","NotImplemented","",{}]' % message_id)
            return
        if self.fleet.recording:
            self.fleet.csms_done += 1
        ws.send_text(b'[3,"%b",%b]' % (message_id, answer))

    def _remote_start(self, payload: dict[str, Any]) -> bytes:
        if self.tx is not None or self.remote is not None or (self.awaiting and self.step == START):
            return REJECTED
        if self.frames.v16:
            self.remote = (payload["idTag"].encode(), 0)
        else:
            self.remote = (payload["idToken"]["idToken"].encode(), payload["remoteStartId"])
        return ACCEPTED

    def _remote_stop(self, payload: dict[str, Any]) -> bytes:
        wanted = payload["transactionId"]
        current = self.tx.decode() if isinstance(self.tx, bytes) else self.tx
        if current is None or wanted != current or self.stop_requested or (self.awaiting and self.step == STOP):
            return REJECTED
        self.stop_requested = True
        return ACCEPTED

    # --- open loop ----------------------------------------------------------------------------------------------

    def tick(self, due: float) -> None:
        """Open loop: a CALL is due (``due`` in time.monotonic); it goes out now, or when the answer to the one
        in flight arrives (late: its latency from the schedule includes the wait)."""
        fleet = self.fleet
        if fleet.mode != "open" or self.transport is None:
            return
        following = due + fleet.interval
        fleet.loop.call_later(max(0.0, following - time.monotonic()), self.tick, following)
        if self.awaiting:
            if self.deferred:
                fleet.skipped += 1  # two sends came due during one exchange: the offered rate is not met
            else:
                self.deferred = True
                self.next_due = due
                if fleet.recording:
                    fleet.late += 1
            return
        self.next_due = due
        self.send_next()
        self._flush()


# ----------------------------------------------------------------------------------------------------------------
# the fleet: all chargers of one path, and the phases they go through
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    loop: asyncio.AbstractEventLoop
    port: int
    v16: bool
    count: int
    program: tuple[tuple[int, bytes], ...]
    chargers: list[Charger] = field(default_factory=list)
    mode: str = "idle"
    stamp: bytes = b""
    interval: float = 1.0
    recording: bool = False
    latencies: list[float] = field(default_factory=list)
    schedule_latencies: list[float] = field(default_factory=list)
    done: int = 0
    csms_done: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    late: int = 0
    skipped: int = 0
    stray: int = 0
    open_connections: int = 0
    boots: int = 0
    boot_failures: int = 0
    dropped: int = 0
    closing: bool = False
    attempts: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    storm_started: float = 0.0
    all_connected_at: float | None = None
    all_booted_at: float | None = None
    _all_booted: asyncio.Event = field(default_factory=asyncio.Event)
    _handshaking: dict[int, asyncio.Future[bool]] = field(default_factory=dict)

    @property
    def subprotocols(self) -> list[Subprotocol]:
        return [Subprotocol("ocpp1.6" if self.v16 else "ocpp2.0.1")]

    def url(self, identity: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{identity}"

    def refresh_stamp(self) -> None:
        self.stamp = sink_module.clock()
        if not self.closing:
            self.loop.call_later(0.1, self.refresh_stamp)

    # --- callbacks from chargers ---------------------------------------------------------------------------------

    def connected(self, charger: Charger) -> None:
        charger.live = True
        self.open_connections += 1
        if self.open_connections == self.count and self.all_connected_at is None:
            self.all_connected_at = time.perf_counter()
        future = self._handshaking.pop(charger.index, None)
        if future is not None and not future.done():
            future.set_result(True)

    def refused(self, charger: Charger, why: str) -> None:
        self.failures[f"handshake: {why[:80]}"] += 1
        future = self._handshaking.pop(charger.index, None)
        if future is not None and not future.done():
            future.set_result(False)

    def booted(self, charger: Charger, ok: bool) -> None:
        if not ok:
            self.boot_failures += 1
        self.boots += 1
        if self.boots == self.count:
            self.all_booted_at = time.perf_counter()
            self._all_booted.set()

    def lost(self, charger: Charger) -> None:
        future = self._handshaking.pop(charger.index, None)
        if future is not None and not future.done():
            self.failures["closed during the handshake"] += 1
            future.set_result(False)
            return
        if charger.live:
            charger.live = False
            self.open_connections -= 1
            if charger.awaiting:
                charger.awaiting = b""
                self.in_flight -= 1
            if not self.closing:
                self.dropped += 1

    # --- phases ----------------------------------------------------------------------------------------------

    async def storm(self, timeout: float) -> None:
        """Every charger connects and boots at once; a charger whose connection fails retries after 0.5-1.5 s."""
        self.mode = "storm"
        self.chargers = [Charger(self, index, self.v16) for index in range(self.count)]
        deadline = time.perf_counter() + timeout
        self.storm_started = time.perf_counter()
        await asyncio.gather(*(self._connect(c, deadline) for c in self.chargers))
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_booted.wait(), remaining)
        await self.quiesce()  # the StatusNotification Available after each boot
        self.mode = "idle"

    async def _connect(self, charger: Charger, deadline: float) -> None:
        while time.perf_counter() < deadline:
            self.attempts += 1
            future: asyncio.Future[bool] = self.loop.create_future()
            self._handshaking[charger.index] = future
            try:
                await asyncio.wait_for(self.loop.create_connection(lambda: charger, "127.0.0.1", self.port),
                                       max(0.1, deadline - time.perf_counter()))
                if await asyncio.wait_for(future, max(0.1, deadline - time.perf_counter())):
                    return
            except (OSError, TimeoutError) as exc:
                self.failures[f"connect: {type(exc).__name__} {getattr(exc, 'errno', '') or ''}".strip()] += 1
            self._handshaking.pop(charger.index, None)
            if charger.transport is not None:
                charger.transport.abort()
            await asyncio.sleep(random.uniform(0.5, 1.5))

    def start_window(self) -> None:
        self.latencies = []
        self.schedule_latencies = []
        self.done = self.csms_done = self.late = self.skipped = 0
        self.errors = Counter()
        self.recording = True

    def stop_window(self) -> None:
        self.recording = False

    def closed_loop(self) -> None:
        self.mode = "closed"
        for charger in self.chargers:
            if charger.transport is not None and not charger.awaiting:
                charger.send_next()
                charger._flush()

    def open_loop(self, rate: float) -> None:
        self.mode = "open"
        live = [c for c in self.chargers if c.transport is not None]
        self.interval = max(1, len(live)) / rate
        start = time.monotonic() + 0.05
        for charger in live:
            charger.deferred = False
            due = start + random.uniform(0, self.interval)
            self.loop.call_later(due - time.monotonic(), charger.tick, due)

    async def quiesce(self) -> bool:
        """Stop sending; wait until every CALL in flight has its answer. False when that took too long."""
        self.mode = "idle"
        deadline = time.perf_counter() + QUIESCE_TIMEOUT
        while self.in_flight > 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        return self.in_flight <= 0

    async def close(self) -> None:
        self.closing = True
        self.mode = "idle"
        for charger in self.chargers:
            charger.close()
        deadline = time.perf_counter() + CLOSE_TIMEOUT
        while any(c.transport is not None for c in self.chargers) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        for charger in self.chargers:
            if charger.transport is not None:
                charger.transport.abort()


# ----------------------------------------------------------------------------------------------------------------
# server processes
# ----------------------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Soft limit up to the hard one; above it too when privileged (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server subprocess in its own process group; killed with its group on exit."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    _log_file: IO[bytes] | None = None
    _reader: asyncio.StreamReader | None = None

    def start(self, reads_port: bool) -> Server:
        self._log_file = self.log.open("ab")
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE if reads_port else self._log_file,
                                      stderr=self._log_file, start_new_session=True, env=self.env,
                                      preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads yet
        self.ps = psutil.Process(self.popen.pid)
        if reads_port:
            assert self.popen.stdout is not None
            line = self.popen.stdout.readline().decode().split()  # the server prints PORT <n> when listening
            if len(line) != 2 or line[0] != "PORT":
                raise RuntimeError(f"{self.name} did not start: {self.tail()}")
            self.port = int(line[1])
        return self

    def wait_healthy(self, port: int) -> None:
        """For the bridge: poll /healthz until it answers (schema compilation takes a few seconds)."""
        self.port = port
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy within {STARTUP_TIMEOUT:g} s: {self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def cpu(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    async def command(self, line: str) -> dict[str, Any]:
        """A control line to the sink and its one-line JSON answer."""
        assert self.popen is not None and self.popen.stdin is not None and self.popen.stdout is not None
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader(limit=1 << 22)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self._reader), self.popen.stdout)
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()
        answer = await asyncio.wait_for(self._reader.readline(), 30)
        return dict(orjson.loads(answer))

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # anything left in its group
        if self._log_file is not None:
            self._log_file.close()


def bridge_source(src: Path | None) -> dict[str, Any]:
    """Which bridge code is measured: the folder it is imported from, and the repository's commit."""
    root = (src or HERE.parent).resolve()
    info: dict[str, Any] = {"folder": str(root / "ocpp_bridge")}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(HERE.parent)]
        info["repo_head"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           check=True, timeout=10).stdout.strip()
        if src is None:
            changed = subprocess.run([*git, "status", "--porcelain", "--", "ocpp_bridge"], capture_output=True,
                                     text=True, check=True, timeout=10).stdout.strip()
            info["uncommitted_changes"] = bool(changed)
    return info


def bridge_argv(port: int, upstream: str, state: Path, uvloop_: bool) -> list[str]:
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--upstream", upstream, "--state", str(state)]
    if uvloop_:  # an experiment (not the default): the same entry point on uvloop
        code = ("import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
                "from ocpp_bridge.cli import main; sys.exit(main(sys.argv[1:]))")
        return [sys.executable, "-c", code, *args]
    script = Path(sys.executable).with_name("ocpp-bridge")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "ocpp_bridge.cli", *args]


# ----------------------------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "p999": None, "max": None, "mean": None}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)] * 1000, 3)

    return {"count": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
            "max": round(ordered[-1] * 1000, 3), "mean": round(sum(ordered) / len(ordered) * 1000, 3)}


class CpuClock:
    """CPU seconds of each process over a window (psutil cpu_times of the pid, user + system)."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.servers = servers
        self.me = psutil.Process()
        self.start: dict[str, float] = {}
        self.wall = 0.0

    def _now(self) -> dict[str, float]:
        times = self.me.cpu_times()
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return {"loadgen": times.user + times.system, **{n: s.cpu() for n, s in self.servers.items()},
                "machine": busy}

    def begin(self) -> None:
        self.start = self._now()
        self.wall = time.perf_counter()

    def end(self) -> tuple[float, dict[str, dict[str, float]]]:
        now = self._now()
        wall = time.perf_counter() - self.wall
        used = {name: now[name] - self.start[name] for name in now}
        # whatever else ran on the machine meanwhile (other jobs compete for the same cores)
        used["other_processes"] = max(0.0, used.pop("machine") - sum(used.values()))
        return wall, {name: {"cpu_seconds": round(seconds, 3), "cores": round(seconds / wall, 3)}
                      for name, seconds in used.items()}


async def settle(servers: dict[str, Server], limit: float = 10.0) -> None:
    """Wait until the servers are idle (< 3 % of a core each over 0.3 s), at most ``limit`` seconds."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = {n: s.cpu() for n, s in servers.items()}
        await asyncio.sleep(0.3)
        if all(s.cpu() - before[n] < 0.01 for n, s in servers.items()):
            return


@dataclass
class Run:
    args: argparse.Namespace
    servers: dict[str, Server]
    out: Path
    loop_name: str
    results: dict[str, Any] = field(default_factory=dict)


def _server_of(path: str) -> str:
    return {"direct": "sink", "relay": "relay", "relay-picows": "relay-picows", "bridge": "bridge"}[path]


async def run_path(run: Run, path: str) -> dict[str, Any]:
    args = run.args
    loop = asyncio.get_running_loop()
    sink = run.servers["sink"]
    middle = run.servers.get(_server_of(path))
    assert middle is not None
    involved = {"sink": sink} if path == "direct" else {"sink": sink, path: middle}
    fleet = Fleet(loop, middle.port, v16=path != "direct", count=args.chargers, program=cycle(args.meter_values))
    fleet.refresh_stamp()
    result: dict[str, Any] = {"server": _server_of(path)}
    await sink.command("rate 0")
    await settle(involved)
    rss_before = {n: s.rss() for n, s in involved.items()}
    rss_before["loadgen"] = psutil.Process().memory_info().rss
    clock = CpuClock(involved)
    clock.begin()
    print(f"[{path}] connect storm: {args.chargers} chargers", flush=True)
    try:
        await fleet.storm(args.storm_timeout)
        _, cpu = clock.end()
        result["storm"] = _storm_figures(fleet, cpu)
        await settle(involved, 5.0)
        await asyncio.sleep(0.5)
        rss_idle = {n: s.rss() for n, s in involved.items()}
        rss_idle["loadgen"] = psutil.Process().memory_info().rss
        result["memory"] = _memory(rss_before, rss_idle, fleet.open_connections)
        if "closed" in args.modes:
            print(f"[{path}] closed loop: {args.warmup:g} s warm-up + {args.seconds:g} s", flush=True)
            result["closed"] = await _window(run, fleet, clock, path, rate=None)
        if "open" in args.modes:
            print(f"[{path}] open loop at {args.rate:g} msg/s: {args.warmup:g} s warm-up + {args.seconds:g} s",
                  flush=True)
            result["open"] = await _window(run, fleet, clock, path, rate=args.rate)
        rss_loaded = {n: s.rss() for n, s in involved.items()}
        result["memory"]["rss_after_load_kb_per_charger"] = {
            n: round((rss_loaded[n] - rss_before[n]) / 1024 / max(1, fleet.open_connections), 1) for n in rss_loaded}
        result["dropped_connections"] = fleet.dropped
        result["stray_frames"] = fleet.stray
    finally:
        await fleet.close()
        await sink.command("rate 0")
        await settle(involved, 5.0)
    return result


def _storm_figures(fleet: Fleet, cpu: dict[str, dict[str, float]]) -> dict[str, Any]:
    def since(moment: float | None) -> float | None:
        return round(moment - fleet.storm_started, 3) if moment is not None else None

    return {"chargers": fleet.count, "connected": fleet.open_connections, "booted": fleet.boots,
            "boot_errors": fleet.boot_failures, "all_booted": fleet.all_booted_at is not None,
            "seconds_to_all_connected": since(fleet.all_connected_at),
            "seconds_to_all_booted": since(fleet.all_booted_at),
            "connection_attempts": fleet.attempts, "failures": dict(fleet.failures),
            "cpu_seconds": {n: c["cpu_seconds"] for n, c in cpu.items()}}


def _memory(before: dict[str, int], after: dict[str, int], connected: int) -> dict[str, Any]:
    return {"connected": connected, "rss_before_mb": {n: round(v / 2**20, 1) for n, v in before.items()},
            "rss_idle_mb": {n: round(v / 2**20, 1) for n, v in after.items()},
            "rss_kb_per_charger": {n: round((after[n] - before[n]) / 1024 / max(1, connected), 1) for n in after}}


async def _window(run: Run, fleet: Fleet, clock: CpuClock, path: str, rate: float | None) -> dict[str, Any]:
    args = run.args
    sink = run.servers["sink"]
    await sink.command(f"rate {args.csms_rate:g}")
    if rate is None:
        fleet.closed_loop()
    else:
        fleet.open_loop(rate)
    await asyncio.sleep(args.warmup)
    await sink.command("reset")
    profiler = _start_profiler(run, path, "closed" if rate is None else "open")
    fleet.start_window()
    clock.begin()
    await asyncio.sleep(args.seconds)
    fleet.stop_window()
    wall, cpu = clock.end()
    sink_stats = await sink.command("stats")
    await sink.command("rate 0")
    quiet = await fleet.quiesce()
    messages = fleet.done + fleet.csms_done
    server = _server_of(path)
    figures: dict[str, Any] = {
        "seconds": round(wall, 3), "messages": messages, "messages_per_second": round(messages / wall, 1),
        "charger_calls": fleet.done, "csms_calls": fleet.csms_done,
        "charger_calls_per_second": round(fleet.done / wall, 1),
        "call_errors": {_STEP_NAMES[k]: v for k, v in fleet.errors.items()},
        "latency_ms": percentiles(fleet.latencies), "cpu": cpu,
        "messages_per_server_core": round(messages / cpu[server]["cpu_seconds"], 1)
        if cpu[server]["cpu_seconds"] > 0 else None,
        "loadgen_cpu_us_per_message": round(cpu["loadgen"]["cpu_seconds"] / max(1, messages) * 1e6, 1),
        "sink": sink_stats, "in_flight_at_end": fleet.in_flight, "quiesced": quiet,
    }
    if rate is not None:
        figures.update({"offered_rate": rate, "late_sends": fleet.late, "skipped_sends": fleet.skipped,
                        "latency_from_schedule_ms": percentiles(fleet.schedule_latencies)})
    if profiler is not None:
        figures["profile"] = _finish_profiler(*profiler)
    return figures


_STEP_NAMES: Final = {BOOT: "BootNotification", HEARTBEAT: "Heartbeat", STATUS: "StatusNotification",
                      AUTHORIZE: "Authorize", START: "StartTransaction", METER: "MeterValues",
                      STOP: "StopTransaction", -1: "StatusNotification"}


# --- py-spy ------------------------------------------------------------------------------------------------------


def _start_profiler(run: Run, path: str, mode: str) -> tuple[subprocess.Popen[bytes], Path] | None:
    if not run.args.profile or path not in ("bridge", *RELAYS) or mode != "closed":
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: no profile", flush=True)
        return None
    target = run.servers[_server_of(path)]
    assert target.popen is not None
    raw = run.out / f"profile-{path}.txt"
    argv = [spy, "record", "--pid", str(target.popen.pid), "--duration", str(max(1, int(run.args.seconds))),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(raw)]
    if run.args.profile == "wall":
        argv.append("--idle")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw


def _finish_profiler(spy: subprocess.Popen[bytes], raw: Path) -> dict[str, Any]:
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
    if not raw.exists():
        return {"error": "py-spy wrote nothing (is ptrace allowed?)"}
    return summarize_profile(raw)


def summarize_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks ("f1;f2;f3 count")."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "file": raw.name, "own_percent": share(own), "inclusive_percent": share(inclusive)}


# ----------------------------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    paths = results["paths"]
    summary: dict[str, Any] = {}
    closed = {p: r["closed"] for p, r in paths.items() if "closed" in r}
    for name in RELAYS:  # keys bridge_vs_relay_* and bridge_vs_relay_picows_*
        if "bridge" not in closed or name not in closed:
            continue
        key = name.replace("-", "_")
        bridge, relay = closed["bridge"]["messages_per_server_core"], closed[name]["messages_per_server_core"]
        if bridge and relay:
            summary[f"bridge_vs_{key}_per_core"] = round(bridge / relay, 3)
            # CPU per message the bridge spends beyond what this relay spends (both on the same fleet)
            summary[f"bridge_extra_cpu_us_per_message_vs_{key}"] = round(1e6 / bridge - 1e6 / relay, 1)
        summary[f"bridge_vs_{key}_wall"] = round(closed["bridge"]["messages_per_second"]
                                                 / max(1e-9, closed[name]["messages_per_second"]), 3)
    opened = {p: r["open"]["latency_ms"] for p, r in paths.items() if "open" in r}
    if "direct" in opened:
        summary["added_latency_ms"] = {
            p: {k: round(lat[k] - opened["direct"][k], 3) if lat[k] is not None and opened["direct"][k] is not None
                else None for k in ("p50", "p99", "p999")}
            for p, lat in opened.items() if p != "direct"}
    return summary


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    cfg, paths, summary = results["config"], results["paths"], results["summary"]
    env = results["environment"]
    lines = [f"# Load benchmark, {results['started']}", "",
             f"{cfg['chargers']:,} chargers, paths {', '.join(paths)}, modes {', '.join(cfg['modes'])}; "
             f"{cfg['seconds']:g} s per measurement after {cfg['warmup']:g} s of warm-up; open loop at "
             f"{cfg['rate']:g} msg/s offered; CSMS-initiated calls at {cfg['csms_rate']:g}/s; "
             f"{cfg['meter_values']} MeterValues (10 sampled values) per transaction.", "",
             f"{env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']}, websockets {env['websockets']}, "
             f"picows {env.get('picows') or 'not installed'}; "
             f"event loops: load generator and sink {env['loops']['loadgen']}, relays {env['loops']['relay']}, "
             f"bridge {env['loops']['bridge']}; RLIMIT_NOFILE {env['nofile']}.", ""]
    if any("closed" in r for r in paths.values()):
        lines += ["## Closed loop (each charger sends its next message as soon as the previous one is answered)", "",
                  "| path | messages/s | msgs per server core | server cores | sink cores | load gen cores "
                  "| other jobs' cores | load gen CPU us/msg | p50 ms | p99 ms | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for path, r in paths.items():
            if "closed" not in r:
                continue
            c = r["closed"]
            server = "sink" if path == "direct" else path
            lines.append(f"| {path} | {_fmt(c['messages_per_second'])} | {_fmt(c['messages_per_server_core'])} | "
                         f"{_fmt(c['cpu'][server]['cores'], 2)} | {_fmt(c['cpu']['sink']['cores'], 2)} | "
                         f"{_fmt(c['cpu']['loadgen']['cores'], 2)} | {_fmt(c['cpu']['other_processes']['cores'], 2)} | "
                         f"{_fmt(c['loadgen_cpu_us_per_message'], 1)} | "
                         f"{_fmt(c['latency_ms']['p50'], 2)} | {_fmt(c['latency_ms']['p99'], 2)} | "
                         f"{sum(c['call_errors'].values())} |")
        for name in RELAYS:
            key = name.replace("-", "_")
            if f"bridge_vs_{key}_per_core" in summary:
                lines += ["", f"Bridge messages per core / {name} messages per core: "
                              f"**{summary[f'bridge_vs_{key}_per_core']:.2f}**"
                              f"{' (target >= 0.65)' if name == 'relay' else ''}; "
                              f"wall-clock ratio {summary[f'bridge_vs_{key}_wall']:.2f}; the bridge's CPU per "
                              f"message beyond the {name}'s: "
                              f"{summary[f'bridge_extra_cpu_us_per_message_vs_{key}']:,.1f} us."]
        lines.append("")
    if any("open" in r for r in paths.values()):
        lines += [f"## Open loop at {cfg['rate']:g} messages/s offered", "",
                  "| path | charger msg/s | + CSMS msg/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
                  "| p99 from schedule ms | server cores | late sends |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for path, r in paths.items():
            if "open" not in r:
                continue
            o = r["open"]
            lat = o["latency_ms"]
            server = "sink" if path == "direct" else path
            lines.append(f"| {path} | {_fmt(o['charger_calls_per_second'])} | "
                         f"{_fmt(o['csms_calls'] / o['seconds'])} | {_fmt(lat['p50'], 3)} | "
                         f"{_fmt(lat['p90'], 3)} | {_fmt(lat['p99'], 3)} | {_fmt(lat['p999'], 3)} | "
                         f"{_fmt(lat['max'], 1)} | {_fmt(o['latency_from_schedule_ms']['p99'], 3)} | "
                         f"{_fmt(o['cpu'][server]['cores'], 2)} | {o['late_sends']} |")
        if "added_latency_ms" in summary:
            lines += ["", "Added latency over the direct path (ms): " + "; ".join(
                f"{p}: p50 {_fmt(a['p50'], 3)}, p99 {_fmt(a['p99'], 3)}, p99.9 {_fmt(a['p999'], 3)}"
                for p, a in summary["added_latency_ms"].items()) + " (target: bridge p99 <= 2 ms)."]
        lines.append("")
    lines += ["## Connect storm and memory", "",
              "| path | connected | booted | s to all connected | s to all booted | attempts | failures "
              "| server RSS KB/charger (idle) | after load | load gen KB/charger |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for path, r in paths.items():
        s, m = r["storm"], r["memory"]
        server = "sink" if path == "direct" else path
        failures = ", ".join(f"{k} x{v}" for k, v in s["failures"].items()) or "none"
        lines.append(f"| {path} | {s['connected']:,} | {s['booted']:,} | {_fmt(s['seconds_to_all_connected'], 2)} | "
                     f"{_fmt(s['seconds_to_all_booted'], 2)} | {s['connection_attempts']:,} | {failures} | "
                     f"{_fmt(m['rss_kb_per_charger'][server], 1)} | "
                     f"{_fmt(m.get('rss_after_load_kb_per_charger', {}).get(server), 1)} | "
                     f"{_fmt(m['rss_kb_per_charger']['loadgen'], 1)} |")
    for path, r in paths.items():
        profile = r.get("closed", {}).get("profile")
        if profile and profile.get("own_percent"):
            lines += ["", f"## Where the {path} spends its time (py-spy, closed loop, {profile['samples']:,} samples)",
                      "", "| function (own time) | % |", "|---|---:|"]
            lines += [f"| `{name}` | {pct} |" for name, pct in profile["own_percent"][:15]]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], target: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    paths = results["paths"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [p for p in paths if "closed" in paths[p]]
    if names:
        width = 0.4
        for offset, (key, label) in enumerate((("messages_per_second", "messages/s"),
                                                ("messages_per_server_core", "messages per server core"))):
            axes[0].bar([i + offset * width for i in range(len(names))],
                        [paths[p]["closed"][key] or 0 for p in names], width, label=label)
        axes[0].set_xticks([i + width / 2 for i in range(len(names))], names)
        axes[0].set_yscale("log")
        axes[0].set_title(f"closed loop, {results['config']['chargers']:,} chargers")
        axes[0].legend()
    names = [p for p in paths if "open" in paths[p]]
    if names:
        width = 0.25
        for offset, key in enumerate(("p50", "p99", "p999")):
            axes[1].bar([i + offset * width for i in range(len(names))],
                        [paths[p]["open"]["latency_ms"][key] or 0 for p in names], width, label=key)
        axes[1].set_xticks([i + width for i in range(len(names))], names)
        axes[1].set_ylabel("ms (log scale)")
        axes[1].set_yscale("log")
        axes[1].set_title(f"open loop latency at {results['config']['rate']:g} msg/s")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return True


def bridge_log_summary(log: Path) -> dict[str, int]:
    """Warnings and errors the bridge logged, by event kind (a healthy run has none)."""
    kinds: Counter[str] = Counter()
    with contextlib.suppress(OSError), log.open("rb") as lines:
        for line in lines:
            if b'"level":"warning"' in line or b'"level":"error"' in line:
                with contextlib.suppress(orjson.JSONDecodeError):
                    kinds[str(orjson.loads(line).get("event"))] += 1
    return dict(kinds)


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=100, help="simulated chargers (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per loop (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each loop (default 2)")
    parser.add_argument("--paths", default=DEFAULT_PATHS, help="comma-separated subset of "
                        "direct,relay,relay-picows,bridge (default direct,relay,bridge; relay-picows needs picows: "
                        "pip install -e '.[bench]')")
    parser.add_argument("--modes", default="closed,open", help="closed, open and/or storm (the storm always "
                        "runs, it connects the fleet; 'storm' alone skips both loops). Default closed,open")
    parser.add_argument("--rate", type=float, default=3000.0, help="open loop: messages/s offered across all "
                        "chargers (default 3000)")
    parser.add_argument("--csms-rate", type=float, default=60.0, help="CSMS-initiated calls per second during "
                        "the loops (default 60)")
    parser.add_argument("--meter-values", type=int, default=20, help="MeterValues per transaction (default 20)")
    parser.add_argument("--storm-timeout", type=float, default=120.0, help="seconds for every charger to "
                        "connect and boot (default 120)")
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                        help="event loop of the load generator and the sink (default: uvloop when installed)")
    parser.add_argument("--relay-loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                        help="event loop of the relay (default: uvloop when installed, as issue 7 calibrated it)")
    parser.add_argument("--relay-backlog", type=int, default=100, help="the relay's listen backlog (default 100, "
                        "asyncio's default, which the bridge gets too: a connect storm overflows it)")
    parser.add_argument("--bridge-uvloop", action="store_true", help="experiment: run the bridge's own entry "
                        "point on uvloop (default: as shipped, asyncio)")
    parser.add_argument("--bridge-src", type=Path, help="run the bridge from this source tree (a folder holding "
                        "ocpp_bridge/, put first on PYTHONPATH), e.g. an exported commit; default: the installed one")
    parser.add_argument("--profile", nargs="?", const="cpu", choices=["cpu", "wall"], help="py-spy the relay and "
                        "the bridge during the closed loop: 'cpu' (default) samples running code, 'wall' idle time "
                        "too (where the wall-clock goes). Adds some load: keep its figures apart")
    parser.add_argument("--nofile", type=int, default=0, help="RLIMIT_NOFILE for every process (default: the "
                        "hard limit, raised to what N chargers need when running as root)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results parent folder "
                        "(default benchmarks/results)")
    parser.add_argument("--smoke", action="store_true", help="5 chargers, about 3 s per path (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.chargers, args.seconds, args.warmup = 5, 1.0, 0.3
        args.rate, args.csms_rate, args.meter_values, args.storm_timeout = 50.0, 10.0, 4, 30.0
    asked = args.paths.split(",")
    unknown_paths = set(asked) - set(PATHS)
    args.paths = [p for p in PATHS if p in asked]
    if "relay-picows" in args.paths and not picows_version():
        print("relay-picows: skipped, picows is not installed (pip install picows, or pip install -e '.[bench]')",
              file=sys.stderr, flush=True)
        args.paths.remove("relay-picows")
    args.modes = [m for m in MODES if m in args.modes.split(",")]
    unknown = set(args.modes) - set(MODES)
    if not args.paths or unknown or unknown_paths or args.chargers < 1 or args.seconds <= 0:
        parser.error("need at least one known path, known modes, --chargers >= 1 and --seconds > 0")
    return args


def picows_version() -> str | None:
    """picows' version when it is installed (the relay-picows path needs it), else None."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("picows")
    except PackageNotFoundError:
        return None


def _environment(loops: dict[str, str], nofile: tuple[int, int]) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "websockets": websockets.__version__, "picows": picows_version(), "machine": platform.machine(),
            "loops": loops,
            "nofile": list(nofile)}


async def drive(run: Run) -> None:
    for path in run.args.paths:
        started = time.perf_counter()
        run.results["paths"][path] = await run_path(run, path)
        print(f"[{path}] done in {time.perf_counter() - started:.1f} s", flush=True)


def _bridge_env(src: Path | None) -> dict[str, str] | None:
    # The closed loop sends far faster per charger than any real charger: lift the per-charger frame-rate limit
    # (docs/security.md) unless the caller's environment sets one, so the figures measure forwarding, not it.
    env = {"OCPP_BRIDGE_FRAME_RATE": "1000000", "OCPP_BRIDGE_FRAME_BURST": "1000000", **os.environ}
    if src is None:
        return env
    path = os.pathsep.join(p for p in (str(src.resolve()), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def start_servers(args: argparse.Namespace, out: Path, state_dir: Path) -> dict[str, Server]:
    python = sys.executable
    servers: dict[str, Server] = {}
    servers["sink"] = Server("sink", [python, str(HERE / "sink.py"), "--loop", args.loop], out / "sink.log")
    servers["sink"].start(reads_port=True)
    upstream = f"ws://127.0.0.1:{servers['sink'].port}/ocpp"
    if "relay" in args.paths:
        servers["relay"] = Server("relay", [python, str(HERE / "relay.py"), "--upstream", upstream,
                                            "--loop", args.relay_loop, "--backlog", str(args.relay_backlog)],
                                   out / "relay.log")
        servers["relay"].start(reads_port=True)
    if "relay-picows" in args.paths:
        servers["relay-picows"] = Server("relay-picows", [python, str(HERE / "relay_picows.py"), "--upstream", upstream,
                                                          "--loop", args.relay_loop, "--backlog",
                                                          str(args.relay_backlog)], out / "relay-picows.log")
        servers["relay-picows"].start(reads_port=True)
    if "bridge" in args.paths:
        port = free_port()
        servers["bridge"] = Server("bridge", bridge_argv(port, upstream, state_dir / "bridge.db", args.bridge_uvloop),
                                   out / "bridge.log", env=_bridge_env(args.bridge_src))
        servers["bridge"].start(reads_port=False)
        servers["bridge"].wait_healthy(port)
    return servers


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that stops every server


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.bridge_src is not None:
        sys.path.insert(0, str(args.bridge_src.resolve()))  # the self-check validates with the same schemas
    nofile = raise_fd_limit(args.nofile or 2 * args.chargers + 1024)
    if nofile[0] < 2 * args.chargers + 64:
        print(f"warning: RLIMIT_NOFILE is {nofile[0]}; a relay or bridge holding {args.chargers} chargers needs "
              f"about {2 * args.chargers + 64}", file=sys.stderr)
    self_check()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / stamp
    out.mkdir(parents=True, exist_ok=True)
    loop_name = sink_module.pick_loop(args.loop)
    relay_loop = args.relay_loop if args.relay_loop != "auto" else loop_name
    loops = {"loadgen": loop_name, "relay": relay_loop, "relay-picows": relay_loop,
             "bridge": "uvloop" if args.bridge_uvloop else "asyncio"}
    results: dict[str, Any] = {
        "started": stamp, "environment": _environment(loops, nofile), "bridge": bridge_source(args.bridge_src),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "paths": {}}
    state_dir = Path(tempfile.mkdtemp(prefix="ocpp-bridge-bench-"))
    servers: dict[str, Server] = {}
    old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        servers = start_servers(args, out, state_dir)
        run = Run(args, servers, out, loop_name, results)
        asyncio.run(drive(run))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in reversed(list(servers.values())):
            server.stop()
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(state_dir, ignore_errors=True)
    if "bridge" in servers:
        results["bridge_log"] = bridge_log_summary(servers["bridge"].log)
    results["summary"] = summarize(results)
    (out / "result.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report = markdown(results)
    (out / "report.md").write_text(report)
    drew = chart(results, out / "chart.png")
    print(report)
    print(f"results in {out}/ (result.json, report.md{', chart.png' if drew else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
