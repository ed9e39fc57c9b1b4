"""Micro-benchmark of the sans-I/O core: how many frames per second one CPU core translates.

Why this exists: the bridge's capacity per replica is bounded by the core (parse, validate, translate,
validate the output, serialize) long before the sockets are. This measures the core alone, without asyncio,
sockets or a store, so a regression in the translation path shows up as a number, not as a vague "slower".

How it works: a recorder drives one :class:`TranslatingSession` per simulated charger through a realistic mix
(heartbeats, status changes, local and remote starts, MeterValues with 10 sampled values every minute, stops,
GetVariables and RequestStart/StopTransaction from the CSMS), answering every call the bridge makes on behalf
of the CSMS and the charger. The frames it fed in are kept as pre-serialized text. Each timed replay then feeds
exactly those frames into fresh sessions (ids come from a counter, so the bridge produces the same ids and the
recorded answers match); the output of one replay is checked against the recording before timing starts.

"Translated frames" = frames fed into the core (from the charger and from the CSMS, calls and answers alike).

    python benchmarks/core_bench.py                 # 3 s per setting
    python benchmarks/core_bench.py --seconds 10 --json result.json
    python benchmarks/core_bench.py --smoke         # ~0.5 s in all, for CI
    python benchmarks/core_bench.py --profile       # cProfile of the default-settings replay
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import platform
import pstats
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ocpp_bridge.core import validate
from ocpp_bridge.core.events import (
    Emit,
    Event,
    FrameFromCharger,
    FrameFromCsms,
    Persist,
    SendToCharger,
    SendToCsms,
    SessionStarted,
)
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.session import TranslatingSession
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerState

T0 = 1_700_000_000.0
METER_INTERVAL = 60.0  # seconds between MeterValues (MeterValueSampleInterval)
TARGET_ISSUE = 20_000
TARGET_STRETCH = 50_000
_BAD_EMITS = frozenset({"bug", "frame.invalid", "call.timeout", "frame.stray", "meter.unmapped"})


def _key_table() -> Any:
    try:
        from ocpp_bridge.mappings import load_key_table
    except ImportError:  # an old checkout without the packaged key table
        return None
    return load_key_table()


def settings(validate_output: bool) -> CoreSettings:
    keys = _key_table()
    if keys is None:
        return CoreSettings(validate_output=validate_output)
    return CoreSettings(validate_output=validate_output, keys=keys)


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(now * 1000) % 1000:03d}Z"


# --- recording ------------------------------------------------------------------------------------------------


@dataclass
class Trace:
    """What one simulated charger's session consisted of: the frames fed in and the frames that came out."""

    identity: str
    events: list[Event] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    meter_frames: int = 0  # frames of MeterValues exchanges (the charger's call, the CSMS's answer, ...)


def _counter() -> Callable[[], str]:
    """Message and transaction ids from a counter: a replay mints exactly the ids its recording did."""
    ids = itertools.count(1)
    return lambda: f"b{next(ids)}"


class Recorder:
    """Drives a session, playing the CSMS and the charger, and records every frame fed into it."""

    def __init__(self, identity: str, upstream: Version, core: CoreSettings) -> None:
        self.trace = Trace(identity)
        self.now = T0
        self.session = TranslatingSession(identity, upstream, core, _counter())
        self.session.feed(SessionStarted(T0, ChargerState.empty(identity)))
        self._inbox: deque[tuple[type[FrameFromCharger] | type[FrameFromCsms], bytes]] = deque()
        self._answers: dict[str, list[Any]] = {}
        self._ids = itertools.count(1)
        self.to_csms: list[list[Any]] = []  # CALLs the CSMS received

    def _feed(self, kind: type[FrameFromCharger] | type[FrameFromCsms], text: bytes) -> None:
        self.now += 0.005
        event = kind(text.decode(), self.now)
        self.trace.events.append(event)
        for command in self.session.feed(event):
            if isinstance(command, SendToCsms | SendToCharger):
                self.trace.outputs.append(command.text)
                self._route(command)
            elif isinstance(command, Emit) and command.kind in _BAD_EMITS:
                raise RuntimeError(f"{self.trace.identity}: the core emitted {command.kind} {command.fields}")

    def _route(self, command: SendToCsms | SendToCharger) -> None:
        frame = orjson.loads(command.text)
        if frame[0] != 2:
            self._answers[frame[1]] = frame
        elif isinstance(command, SendToCsms):
            self.to_csms.append(frame)
            self._inbox.append((FrameFromCsms, orjson.dumps([3, frame[1], _csms_answer(frame[2], frame[3])])))
        else:
            self._inbox.append((FrameFromCharger, orjson.dumps([3, frame[1], _charger_answer(frame[2], frame[3])])))

    def _call(self, kind: type[FrameFromCharger] | type[FrameFromCsms], action: str,
              payload: dict[str, Any]) -> dict[str, Any]:
        unique_id = f"{'cp' if kind is FrameFromCharger else 'cs'}{next(self._ids)}"
        self._feed(kind, orjson.dumps([2, unique_id, action, payload]))
        while self._inbox:
            self._feed(*self._inbox.popleft())
        answer = self._answers.pop(unique_id, None)
        if answer is None or answer[0] != 3:
            raise RuntimeError(f"{self.trace.identity}: {action} was answered {answer}")
        result: dict[str, Any] = answer[2]
        return result

    def charger(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        before = len(self.trace.events)
        result = self._call(FrameFromCharger, action, payload)
        if action == "MeterValues":
            self.trace.meter_frames += len(self.trace.events) - before
        return result

    def csms(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call(FrameFromCsms, action, payload)


def _csms_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    stamp = "2024-05-01T10:00:00.000Z"
    if action == "BootNotification":
        return {"currentTime": stamp, "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": stamp}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    if action == "TransactionEvent" and "idToken" in payload:
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


_CONFIGURATION = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "ConnectionTimeOut": "90"}


def _charger_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    if action == "GetConfiguration":
        return {"configurationKey": [{"key": k, "readonly": False, "value": _CONFIGURATION[k]}
                                     for k in payload.get("key", _CONFIGURATION) if k in _CONFIGURATION]}
    return {"status": "Accepted"}


# --- the traffic mix --------------------------------------------------------------------------------------------

_MEASURANDS = (  # (measurand, phase, unit, base value): 10 sampled values per MeterValues
    ("Energy.Active.Import.Register", None, "Wh", 0),
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
_GET_VARIABLES = {"getVariableData": [
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}},
    {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}},
]}


def _meter_values(now: float, transaction_id: int, energy: int, minute: int) -> dict[str, Any]:
    samples = []
    for measurand, phase, unit, base in _MEASURANDS:
        value = energy if measurand.startswith("Energy") else base + (minute % 7) / 10
        sample = {"value": str(value), "context": "Sample.Periodic", "measurand": measurand, "unit": unit,
                  "location": "Outlet"}
        if phase is not None:
            sample["phase"] = phase
        samples.append(sample)
    return {"connectorId": 1, "transactionId": transaction_id,
            "meterValue": [{"timestamp": _stamp(now), "sampledValue": samples}]}


def _status(rec: Recorder, status: str) -> None:
    rec.charger("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status,
                                       "timestamp": _stamp(rec.now)})


def _transaction(rec: Recorder, number: int, meter_values: int, energy: int) -> int:
    """One charging session; every second one is started and stopped by the CSMS. Returns the meter reading."""
    remote = number % 2 == 1
    tag = f"{0x04A1B2C3 + number:08X}"
    rec.charger("Heartbeat", {})
    if remote:
        rec.csms("RequestStartTransaction", {"idToken": {"idToken": tag, "type": "ISO14443"},
                                             "remoteStartId": number, "evseId": 1})
    _status(rec, "Preparing")
    if not remote:
        rec.charger("Authorize", {"idTag": tag})
    started = rec.charger("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": energy,
                                               "timestamp": _stamp(rec.now)})
    transaction_id = started["transactionId"]
    tx_id = rec.to_csms[-1][3]["transactionInfo"]["transactionId"]
    _status(rec, "Charging")
    for minute in range(meter_values):
        rec.now += METER_INTERVAL
        energy += 184
        rec.charger("MeterValues", _meter_values(rec.now, transaction_id, energy, minute))
        if minute == meter_values // 2:
            rec.charger("Heartbeat", {})
            rec.csms("GetVariables", _GET_VARIABLES)
    stop: dict[str, Any] = {"transactionId": transaction_id, "meterStop": energy, "timestamp": _stamp(rec.now)}
    if remote:
        rec.csms("RequestStopTransaction", {"transactionId": tx_id})
        stop["reason"] = "Remote"
    else:
        stop |= {"idTag": tag, "reason": "Local"}
    rec.charger("StopTransaction", stop)
    _status(rec, "Finishing")
    _status(rec, "Available")
    rec.now += 300
    return energy


def record(chargers: int, transactions: int, meter_values: int, upstream: Version) -> list[Trace]:
    traces = []
    for index in range(chargers):
        rec = Recorder(f"CP-{index:04d}", upstream, settings(validate_output=True))
        rec.charger("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "AC-22"})
        _status(rec, "Available")
        energy = 1000 * index
        for number in range(transactions):
            energy = _transaction(rec, number, meter_values, energy)
        traces.append(rec.trace)
    return traces


# --- replaying ----------------------------------------------------------------------------------------------


def _schedule(traces: list[Trace]) -> list[tuple[int, Event]]:
    """All chargers' frames interleaved round-robin, as a busy bridge sees them."""
    columns = [[(index, event) for event in trace.events] for index, trace in enumerate(traces)]
    return [item for row in itertools.zip_longest(*columns) for item in row if item is not None]


def replay(traces: list[Trace], schedule: list[tuple[int, Event]], core: CoreSettings, upstream: Version,
           outputs: list[list[str]] | None = None) -> tuple[int, int]:
    """Feed every recorded frame into fresh sessions; returns (frames fed, records persisted)."""
    feeds = []
    for trace in traces:
        session = TranslatingSession(trace.identity, upstream, core, _counter())
        session.feed(SessionStarted(T0, ChargerState.empty(trace.identity)))
        feeds.append(session.feed)
    records = 0
    for index, event in schedule:
        for command in feeds[index](event):
            if type(command) is Persist:
                records += len(command.records)  # the shell would hand these to the store
            elif outputs is not None and isinstance(command, SendToCsms | SendToCharger):
                outputs[index].append(command.text)
    return len(schedule), records


def verify(traces: list[Trace], schedule: list[tuple[int, Event]], core: CoreSettings, upstream: Version) -> None:
    outputs: list[list[str]] = [[] for _ in traces]
    replay(traces, schedule, core, upstream, outputs)
    for trace, produced in zip(traces, outputs, strict=True):
        if produced != trace.outputs:
            raise SystemExit(f"replay of {trace.identity} diverged from the recording: the benchmark is broken")


@dataclass
class Result:
    setting: str
    frames: int
    records: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds

    @property
    def frames_per_cpu_second(self) -> float:
        return self.frames / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")

    @property
    def us_per_frame(self) -> float:
        return 1e6 * self.wall_seconds / self.frames

    @property
    def cpu_us_per_frame(self) -> float:
        return 1e6 * self.cpu_seconds / self.frames

    def as_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "frames": self.frames, "records_persisted": self.records,
                "wall_seconds": round(self.wall_seconds, 4), "cpu_seconds": round(self.cpu_seconds, 4),
                "frames_per_second": round(self.frames_per_second, 1),
                "frames_per_cpu_second": round(self.frames_per_cpu_second, 1),
                "us_per_frame": round(self.us_per_frame, 2), "cpu_us_per_frame": round(self.cpu_us_per_frame, 2)}


def measure(traces: list[Trace], schedule: list[tuple[int, Event]], core: CoreSettings, upstream: Version,
            seconds: float, setting: str) -> Result:
    replay(traces, schedule, core, upstream)  # warm-up: caches, branch predictors, allocator
    frames = records = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while True:
        fed, persisted = replay(traces, schedule, core, upstream)
        frames += fed
        records += persisted
        wall = time.perf_counter() - wall0
        if wall >= seconds:
            break
    return Result(setting, frames, records, wall, time.process_time() - cpu0)


# --- command line ---------------------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per setting (default 3)")
    parser.add_argument("--chargers", type=int, default=10, help="simulated chargers (default 10)")
    parser.add_argument("--transactions", type=int, default=4, help="transactions per charger (default 4)")
    parser.add_argument("--meter-values", type=int, default=30,
                        help="MeterValues per transaction, one a minute (default 30)")
    parser.add_argument("--upstream", default="ocpp2.0.1", choices=["ocpp2.0.1", "ocpp2.1"])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true", help="a quick run (~0.5 s) that only checks it works")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one setting and exit")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.chargers, args.transactions = 0.2, 2, 2
    return args


def _table(results: list[Result], traces: list[Trace], schedule: list[tuple[int, Event]]) -> str:
    share = sum(t.meter_frames for t in traces) / len(schedule)
    lines = [f"core benchmark: {len(traces)} chargers, {len(schedule)} frames per replay "
             f"({share:.0%} in MeterValues exchanges, 10 sampled values each), one core, no I/O, no store",
             f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs",
             "",
             f"{'setting':<24}{'frames':>9}{'frames/s':>11}{'us/frame':>10}{'frames/CPU-s':>14}{'CPU us/frame':>14}",
             "-" * 82]
    for r in results:
        lines.append(f"{r.setting:<24}{r.frames:>9}{r.frames_per_second:>11,.0f}{r.us_per_frame:>10.1f}"
                     f"{r.frames_per_cpu_second:>14,.0f}{r.cpu_us_per_frame:>14.1f}")
    rate = results[0].frames_per_cpu_second  # CPU time: not skewed by other load on the machine
    verdict = "meets the stretch target" if rate >= TARGET_STRETCH else \
        "meets the issue target" if rate >= TARGET_ISSUE else "is BELOW the issue target"
    lines += ["", f"targets: >= {TARGET_ISSUE:,} frames/s (issue), >= {TARGET_STRETCH:,} (stretch); "
              f"with the default settings the core {verdict} (judged on frames/CPU-s)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    upstream = Version(args.upstream)
    for version in (Version.V16, upstream):
        validate.warm(version)
    traces = record(args.chargers, args.transactions, args.meter_values, upstream)
    schedule = _schedule(traces)
    # The default (incoming frames validated, own output not re-checked) first: it is what the targets judge.
    configurations = [("validate_output=False", settings(False)), ("validate_output=True", settings(True))]
    for _, core in configurations:
        verify(traces, schedule, core, upstream)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(measure, traces, schedule, configurations[0][1], upstream, args.seconds, "profile")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    results = [measure(traces, schedule, core, upstream, args.seconds, name) for name, core in configurations]
    print(_table(results, traces, schedule))
    if args.json is not None:
        share = sum(t.meter_frames for t in traces) / len(schedule)
        report = {"frames_per_second": round(results[0].frames_per_second, 1),
                  "results": [r.as_dict() for r in results],
                  "mix": {"chargers": len(traces), "frames_per_replay": len(schedule),
                          "meter_values_share": round(share, 3), "sampled_values_per_meter_value": 10},
                  "upstream": upstream.value, "python": platform.python_version(), "cpus": os.cpu_count(),
                  "targets": {"issue": TARGET_ISSUE, "stretch": TARGET_STRETCH}}
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
