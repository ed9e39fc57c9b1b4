"""``ocpp-bridge demo`` runs a whole session through the real bridge and shows the key translations.

The demo is the first thing a new user runs after ``pip install``; these tests keep it working (exit 0, every
translation it promises appears in the transcript) and keep its failure clean (exit 1 with a reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from ocpp_bridge import demo
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.demo import run_demo

KEY_TRANSLATIONS = (
    "BootNotification -> BootNotification",
    "Authorize -> Authorize",
    "StartTransaction -> TransactionEvent(Started)",
    "MeterValues -> TransactionEvent(Updated)",
    "StatusNotification -> StatusNotification + TransactionEvent(Updated)",
    "StopTransaction -> TransactionEvent(Ended)",
    "RemoteStartTransaction <- RequestStartTransaction",
    "RemoteStopTransaction <- RequestStopTransaction",
    '"triggerReason": "RemoteStart"',
    f'"remoteStartId": {demo.REMOTE_START_ID}',
    '"triggerReason": "RemoteStop"',
    '"measurand": "Voltage"',
)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one key/value per line, whatever terminal runs the tests


@pytest.mark.parametrize("upstream", ["ocpp2.0.1", "ocpp2.1"])
def test_demo_runs_a_whole_session(upstream: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(upstream) == 0
    out = capsys.readouterr().out
    for text in KEY_TRANSLATIONS:
        assert text in out, f"{text!r} missing from the transcript"
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("demo finished: 2 transactions")
    assert "seqNo" in summary


def test_demo_prints_two_columns_within_the_terminal_width(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert run_demo() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("OCPP 1.6") and "| OCPP 2.0.1" in lines[0]
    assert max(len(line) for line in lines[:-1]) <= 100  # the summary line is not wrapped


def test_demo_fails_cleanly_when_the_csms_rejects_the_station(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rejected: dict[str, Any] = {"currentTime": "2024-05-01T10:00:00.000Z", "interval": 300, "status": "Rejected"}
    monkeypatch.setitem(demo._CSMS_ANSWERS, "BootNotification", lambda _: rejected)
    assert run_demo() == 1
    captured = capsys.readouterr()
    assert "demo FAILED: BootNotification answered" in captured.err
    assert "BootNotification -> BootNotification" in captured.out  # the transcript so far is still shown


def test_demo_refuses_an_upstream_protocol_it_cannot_speak(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo("ocpp1.6") == 1
    assert "ocpp2.0.1 or ocpp2.1" in capsys.readouterr().err


def test_demo_command_exits_zero() -> None:
    done = subprocess.run([sys.executable, "-m", "ocpp_bridge.cli", "demo"], check=False, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    assert done.returncode == 0, done.stderr
    assert "TransactionEvent(Started)" in done.stdout
    assert "demo finished" in done.stdout


def test_demo_times_out_with_a_reason(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    accept_only = demo.SimulatedCharger.answer

    def never_starts(self: demo.SimulatedCharger, call: Any) -> dict[str, Any] | None:
        if call.action == "RemoteStartTransaction":
            return {"status": "Accepted"}  # ... and then the charger does nothing
        return accept_only(self, call)

    monkeypatch.setattr(demo.SimulatedCharger, "answer", never_starts)
    monkeypatch.setattr(demo, "DEMO_TIMEOUT", 1.5)
    assert run_demo() == 1
    assert "timed out after 1.5 s (last exchange through the bridge: #11 RemoteStartTransaction" \
        in capsys.readouterr().err


def test_queued_deliveries_are_shown_with_the_charger_call_they_came_from() -> None:
    """The bridge answers the charger once it has stored a message and delivers it afterwards, in order, maybe
    after the charger's next call or in the middle of a CSMS-initiated exchange; the transcript still pairs each
    delivery (and its retries) with the 1.6 call it came from."""
    transcript = demo.Transcript()

    def frame(direction: str, *parts: Any) -> None:
        transcript.record(direction, json.dumps(list(parts)))

    def updated(stamp: str, trigger: str) -> dict[str, Any]:
        return {"eventType": "Updated", "timestamp": stamp, "triggerReason": trigger, "seqNo": 1,
                "transactionInfo": {"transactionId": "tx-1"}}

    frame("charger>bridge", 2, "c1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                            "status": "Charging", "timestamp": "2024-05-01T10:00:00Z"})
    frame("bridge>charger", 3, "c1", {})
    frame("bridge>csms", 2, "u1", "StatusNotification", {"timestamp": "2024-05-01T10:00:00.000Z",
                                                         "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1})
    frame("charger>bridge", 2, "c2", "MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [
        {"timestamp": "2024-05-01T10:01:00Z", "sampledValue": [{"value": "10"}]}]})
    frame("bridge>charger", 3, "c2", {})
    frame("csms>bridge", 3, "u1", {})
    frame("bridge>csms", 2, "u2", "TransactionEvent", updated("2024-05-01T10:00:00.000Z", "ChargingStateChanged"))
    frame("csms>bridge", 4, "u2", "InternalError", "", {})
    frame("csms>bridge", 2, "s1", "RequestStopTransaction", {"transactionId": "tx-1"})
    frame("bridge>charger", 2, "b1", "RemoteStopTransaction", {"transactionId": 1})
    frame("bridge>csms", 2, "u3", "TransactionEvent", updated("2024-05-01T10:00:00.000Z", "ChargingStateChanged"))
    frame("csms>bridge", 3, "u3", {})
    frame("bridge>csms", 2, "u4", "TransactionEvent", updated("2024-05-01T10:01:00.000Z", "MeterValuePeriodic"))
    frame("charger>bridge", 3, "b1", {"status": "Accepted"})
    frame("bridge>csms", 3, "s1", {"status": "Accepted"})
    frame("csms>bridge", 3, "u4", {})

    exchanges = transcript.exchanges()
    assert [e.title() for e in exchanges] == [
        "StatusNotification -> StatusNotification + TransactionEvent(Updated)",
        "MeterValues -> TransactionEvent(Updated)",
        "RemoteStopTransaction <- RequestStopTransaction   [CSMS-initiated]",
    ]
    assert [[f[1] for _, f in e.frames] for e in exchanges] == [
        ["c1", "c1", "u1", "u1", "u2", "u2", "u3", "u3"],  # the refused event and its retry stay with the status
        ["c2", "c2", "u4", "u4"],
        ["s1", "b1", "b1", "s1"],
    ]
    lines = transcript.render(Version.V201, 160)
    assert sum("CALLRESULT, once stored" in line for line in lines) == 2
    assert sum("CALL, from the queue" in line for line in lines) == 4
