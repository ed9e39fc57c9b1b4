"""A lean CSMS sink for the load benchmark: answers every CALL at once, and calls the chargers at a set rate.

Why this exists: the load benchmark (``load.py``) needs a CSMS at the far end of every path that costs as little
as possible, so the figures show the relay or the bridge in between, not the CSMS. This one answers every
CALL with a schema-valid CALLRESULT picked from answers precomputed per action (the clock in them is refreshed
once a second), without parsing the payload: the messageId and action are read from the frame's prefix. Only
the rare frames it needs to understand (a transaction starting or ending) are looked into.

It speaks OCPP 2.0.1 (and 2.1, same answers) to the bridge and to 2.0.1 chargers, and OCPP 1.6 to whatever
connects with ``ocpp1.6`` (the bare relay's path), so each path's sink does the same amount of work. At the rate
it is told (``rate R`` on stdin), it sends CSMS-initiated calls to the connected chargers in turn, one
outstanding call per connection at most: every second call is GetVariables (1.6: GetConfiguration), the others
RequestStartTransaction when the charger has no transaction, else RequestStopTransaction for the one it has
(1.6: RemoteStartTransaction / RemoteStopTransaction).

The WebSocket layer is websockets' sans-I/O ``ServerProtocol`` driven from an ``asyncio.Protocol``: no task,
queue or future per connection or per message.

Control (one line each on stdin; answers are one JSON line on stdout):
    rate R      CSMS-initiated calls per second across all connections (0 stops them)
    stats       counters since the last reset, as JSON
    reset       zero the counters
EOF on stdin (the benchmark went away) stops the sink, as SIGTERM does.

    python benchmarks/sink.py [--port 0] [--loop auto|uvloop|asyncio]   # prints "PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import resource
import signal
import sys
import time
from collections import Counter
from typing import Any, Final

import orjson
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

SUBPROTOCOLS: Final = [Subprotocol("ocpp2.0.1"), Subprotocol("ocpp2.1"), Subprotocol("ocpp1.6")]
MAX_FRAME: Final = 1 << 20
TICK: Final = 0.01  # seconds between CSMS-call scheduling rounds
_TX_ID: Final = re.compile(rb'"transactionId":"([^"]{1,36})"')
_ID_TAG: Final = b'"idTag":'

# --- answers, precomputed per action --------------------------------------------------------------------------

_EMPTY: Final = b"{}"
_ANSWERS_2X: Final = {  # action -> payload (bytes); BootNotification and Heartbeat carry the clock (below)
    "StatusNotification": _EMPTY,
    "MeterValues": _EMPTY,
    "NotifyEvent": _EMPTY,
    "NotifyReport": _EMPTY,
    "NotifyMonitoringReport": _EMPTY,
    "SecurityEventNotification": _EMPTY,
    "FirmwareStatusNotification": _EMPTY,
    "LogStatusNotification": _EMPTY,
    "Authorize": b'{"idTokenInfo":{"status":"Accepted"}}',
    "DataTransfer": b'{"status":"UnknownVendorId"}',
    "TransactionEvent": _EMPTY,  # with an idToken in the request: _ACCEPTED_2X
}
_ANSWERS_16: Final = {
    "StatusNotification": _EMPTY,
    "MeterValues": _EMPTY,
    "FirmwareStatusNotification": _EMPTY,
    "DiagnosticsStatusNotification": _EMPTY,
    "Authorize": b'{"idTagInfo":{"status":"Accepted"}}',
    "DataTransfer": b'{"status":"UnknownVendorId"}',
    "StopTransaction": _EMPTY,  # with an idTag in the request: _ACCEPTED_16
}
_ACCEPTED_2X: Final = b'{"idTokenInfo":{"status":"Accepted"}}'
_ACCEPTED_16: Final = b'{"idTagInfo":{"status":"Accepted"}}'
_START_16: Final = b'{"transactionId":%d,"idTagInfo":{"status":"Accepted"}}'

# --- CSMS-initiated calls -------------------------------------------------------------------------------------

GET_VARIABLES: Final = {"getVariableData": [
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}},
    {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}},
]}
GET_CONFIGURATION: Final = {"key": ["HeartbeatInterval", "MeterValueSampleInterval", "ConnectionTimeOut"]}
_CALL: Final = b'[2,"%b","%b",%b]'
_GET_2X: Final = b"GetVariables", orjson.dumps(GET_VARIABLES)
_GET_16: Final = b"GetConfiguration", orjson.dumps(GET_CONFIGURATION)
_START_2X: Final = b'{"idToken":{"idToken":"%08X","type":"ISO14443"},"remoteStartId":%d,"evseId":1}'
_START_16_CALL: Final = b'{"connectorId":1,"idTag":"%08X"}'
_STOP_2X: Final = b'{"transactionId":"%b"}'
_STOP_16_CALL: Final = b'{"transactionId":%d}'


def clock() -> bytes:
    """RFC 3339, millisecond precision, UTC (what strict CSMSs emit)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)).encode() + b".%03dZ" % (int(now * 1000) % 1000)


def answers(version16: bool, now: bytes) -> dict[bytes, bytes]:
    """The precomputed answer payload per action (as bytes keys, the way they are read off the wire)."""
    table = dict(_ANSWERS_16 if version16 else _ANSWERS_2X)
    table["BootNotification"] = b'{"currentTime":"%b","interval":300,"status":"Accepted"}' % now
    table["Heartbeat"] = b'{"currentTime":"%b"}' % now
    return {action.encode(): payload for action, payload in table.items()}


def split_call(data: bytes) -> tuple[bytes, bytes] | None:
    """(messageId, action) of a compact CALL ``[2,"id","Action",...``; None when it is not one."""
    if not data.startswith(b'[2,"'):
        return None
    end = data.find(b'"', 4)
    if end < 0 or data[end:end + 3] != b'","':
        return _split_slowly(data)
    action_end = data.find(b'"', end + 3)
    if action_end < 0:
        return _split_slowly(data)
    return data[4:end], data[end + 3:action_end]


def _split_slowly(data: bytes) -> tuple[bytes, bytes] | None:
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
        return str(frame[1]).encode(), str(frame[2]).encode()
    return None


# --- the sink -------------------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # charger-initiated CALLs answered, by action
        self.not_implemented = 0
        self.csms_sent: Counter[str] = Counter()
        self.csms_results = 0
        self.csms_remote = 0  # results of RequestStart/StopTransaction (1.6: RemoteStart/Stop)
        self.csms_accepted = 0  # ... that said Accepted
        self.csms_errors = 0
        self.csms_latencies: list[float] = []
        self.unreadable = 0

    def as_dict(self, connections: int) -> dict[str, Any]:
        lat = sorted(self.csms_latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return {"connections": connections, "calls_answered": sum(self.calls.values()), "by_action": dict(self.calls),
                "not_implemented": self.not_implemented, "csms_calls_sent": dict(self.csms_sent),
                "csms_results": self.csms_results, "csms_remote_results": self.csms_remote,
                "csms_remote_accepted": self.csms_accepted,
                "csms_errors": self.csms_errors, "unreadable": self.unreadable,
                "csms_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "count": len(lat)}}


class Sink:
    def __init__(self) -> None:
        self.now = clock()
        self.tables = {True: answers(True, self.now), False: answers(False, self.now)}
        self.connections: list[SinkConnection] = []
        self.stats = Stats()
        self.rate = 0.0
        self._budget = 0.0
        self._cursor = 0
        self._ids = 0
        self._tx16 = 0
        self._remote_start = 0
        self._last = time.monotonic()

    def refresh_clock(self) -> None:
        self.now = clock()
        self.tables = {True: answers(True, self.now), False: answers(False, self.now)}
        asyncio.get_running_loop().call_later(1.0, self.refresh_clock)

    def next_tx16(self) -> int:
        self._tx16 += 1
        return self._tx16

    def tick(self) -> None:
        """Send the CSMS-initiated calls that are due, round-robin over connections without one outstanding."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self._budget = min(self._budget + self.rate * (now - self._last), max(1.0, self.rate))
        self._last = now
        connections = self.connections
        tried = 0
        while self._budget >= 1 and connections and tried < len(connections):
            self._cursor = (self._cursor + 1) % len(connections)
            connection = connections[self._cursor]
            tried += 1
            if connection.pending is None and connection.open:
                self._send_call(connection, now)
                self._budget -= 1
        if tried >= len(connections):
            self._budget = min(self._budget, 1.0)  # every charger is busy: do not pile up a burst
        loop.call_later(TICK, self.tick)

    def _send_call(self, connection: SinkConnection, now: float) -> None:
        self._ids += 1
        message_id = b"s%d" % self._ids
        remote = self._ids % 2 == 0  # every second call starts or stops a transaction, the others read variables
        v16 = connection.v16
        if not remote:
            action, payload = _GET_16 if v16 else _GET_2X
        elif connection.tx is None:
            self._remote_start += 1
            tag = 0x0B000000 + self._remote_start % 0xFFFFFF
            action = b"RemoteStartTransaction" if v16 else b"RequestStartTransaction"
            payload = _START_16_CALL % tag if v16 else _START_2X % (tag, self._remote_start)
        else:
            action = b"RemoteStopTransaction" if v16 else b"RequestStopTransaction"
            payload = _STOP_16_CALL % connection.tx if v16 else _STOP_2X % connection.tx
        connection.pending = (message_id, now, remote)
        self.stats.csms_sent[action.decode()] += 1
        connection.send(_CALL % (message_id, action, payload))


class SinkConnection(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.ws = ServerProtocol(subprotocols=SUBPROTOCOLS, max_size=MAX_FRAME)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.v16 = False
        self.tx: Any = None  # the charger's current transaction (1.6 int / 2.x id bytes), None when idle
        self.pending: tuple[bytes, float, bool] | None = None  # (id, sent at, remote start/stop?) of our call
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if type(event) is Frame:
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(ValueError):
                self.sink.connections.remove(self)

    def _handshake(self, request: Request) -> None:
        response = self.ws.accept(request)
        self.ws.send_response(response)
        if response.status_code == 101:
            self.open = True
            self.v16 = self.ws.subprotocol == "ocpp1.6"
            self.sink.connections.append(self)

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:  # end of stream: the closing handshake is done (or failed)
                self.transport.close()
                return
        if self.ws.state is State.CLOSED:
            self.transport.close()

    def send(self, text: bytes) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_text(text)
            self._flush()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.CONT:
            if not frame.fin:
                self._fragments.append(frame.data)
                return
            data = b"".join([*self._fragments, frame.data]) if self._fragments else frame.data
            self._fragments.clear()
            self._message(data)

    def _message(self, data: bytes) -> None:
        kind = data[1:2]
        if kind == b"2":
            self._call(data)
        elif kind in (b"3", b"4"):
            self._answer(data, kind == b"3")
        else:
            self.sink.stats.unreadable += 1

    def _call(self, data: bytes) -> None:
        sink = self.sink
        parts = split_call(data)
        if parts is None:
            sink.stats.unreadable += 1
            return
        message_id, action = parts
        payload = sink.tables[self.v16].get(action)
        if self.v16:
            if action == b"StartTransaction":
                self.tx = sink.next_tx16()
                payload = _START_16 % self.tx
            elif action == b"StopTransaction":
                self.tx = None
                if _ID_TAG in data:
                    payload = _ACCEPTED_16
        elif action == b"TransactionEvent":
            if b'"idToken":' in data:
                payload = _ACCEPTED_2X
            if b'"eventType":"Started"' in data:
                match = _TX_ID.search(data)
                self.tx = match.group(1) if match else None
            elif b'"eventType":"Ended"' in data:
                self.tx = None
        if payload is None:
            sink.stats.not_implemented += 1
            self.send(b'[4,"%b","NotImplemented","",{}]' % message_id)
            return
        sink.stats.calls[action.decode()] += 1
        self.send(b'[3,"%b",%b]' % (message_id, payload))

    def _answer(self, data: bytes, ok: bool) -> None:
        pending = self.pending
        if pending is None or not data.startswith(b'"%b"' % pending[0], 3):
            self.sink.stats.unreadable += 1
            return
        self.pending = None
        stats = self.sink.stats
        stats.csms_latencies.append(time.monotonic() - pending[1])
        if ok:
            stats.csms_results += 1
            if pending[2]:
                stats.csms_remote += 1
                if b'"Accepted"' in data:
                    stats.csms_accepted += 1
        else:
            stats.csms_errors += 1


# --- process plumbing -----------------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pick_loop(choice: str) -> str:
    """Install uvloop when asked (or when installed, for ``auto``); returns the loop in use."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("uvloop is not installed (pip install -e '.[bench]')") from None
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


async def _control(sink: Sink, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line:
            break
        if line[0] == "rate" and len(line) == 2:
            sink.rate = max(0.0, float(line[1]))
            print(orjson.dumps({"rate": sink.rate}).decode(), flush=True)
        elif line[0] == "stats":
            print(orjson.dumps(sink.stats.as_dict(len(sink.connections))).decode(), flush=True)
        elif line[0] == "reset":
            sink.stats = Stats()
            print('{"reset":true}', flush=True)
    stop.set()


async def serve(port: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    sink.rate = rate
    server = await loop.create_server(lambda: SinkConnection(sink), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sink.refresh_clock()
    sink.tick()
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    control = asyncio.create_task(_control(sink, stop))
    await stop.wait()
    control.cancel()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--rate", type=float, default=0.0, help="CSMS-initiated calls per second (default 0)")
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"])
    args = parser.parse_args(argv)
    raise_fd_limit()
    pick_loop(args.loop)
    asyncio.run(serve(args.port, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
