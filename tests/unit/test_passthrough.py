"""2.x chargers: frames pass byte for byte, but every frame in either direction is validated first."""

from __future__ import annotations

import orjson
import pytest

from ocpp_bridge.core.events import Emit, FrameFromCharger, FrameFromCsms, SendToCharger, SendToCsms
from ocpp_bridge.core.passthrough import MAX_TRACKED_CALLS, PassthroughSession
from ocpp_bridge.core.rpc import Version

BOOT = '[2,"b-1","BootNotification",{"chargingStation":{"model":"M","vendorName":"V"},"reason":"PowerUp"}]'


def sends(commands: list[object], kind: type) -> list[str]:
    return [c.text for c in commands if isinstance(c, kind)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [Version.V201, Version.V21])
def test_valid_exchange_is_forwarded_verbatim(version: Version) -> None:
    session = PassthroughSession("CS-1", version)
    assert sends(session.feed(FrameFromCharger(BOOT, 1.0)), SendToCsms) == [BOOT]
    answer = '[3, "b-1", {"currentTime":"2024-01-01T00:00:00Z","interval":60,"status":"Accepted"}]'
    assert sends(session.feed(FrameFromCsms(answer, 1.0)), SendToCharger) == [answer]  # spacing kept


def test_invalid_call_is_answered_not_forwarded() -> None:
    session = PassthroughSession("CS-1", Version.V201)
    commands = session.feed(FrameFromCharger('[2,"x","BootNotification",{"reason":"PowerUp"}]', 1.0))
    assert sends(commands, SendToCsms) == []
    error = orjson.loads(sends(commands, SendToCharger)[0])
    assert error[:3] == [4, "x", "OccurrenceConstraintViolation"]  # 2.x spelling
    assert any(isinstance(c, Emit) and c.kind == "frame.invalid" for c in commands)


def test_invalid_csms_call_is_refused_toward_the_csms() -> None:
    session = PassthroughSession("CS-1", Version.V201)
    commands = session.feed(FrameFromCsms('[2,"r","Reset",{"type":"Bogus"}]', 1.0))
    assert sends(commands, SendToCharger) == []
    assert orjson.loads(sends(commands, SendToCsms)[0])[:3] == [4, "r", "PropertyConstraintViolation"]


def test_invalid_answer_becomes_internal_error_for_the_caller() -> None:
    session = PassthroughSession("CS-1", Version.V201)
    session.feed(FrameFromCsms('[2,"r","Reset",{"type":"Immediate"}]', 1.0))
    commands = session.feed(FrameFromCharger('[3,"r",{"status":"Maybe"}]', 1.0))
    assert orjson.loads(sends(commands, SendToCsms)[0])[:3] == [4, "r", "InternalError"]


def test_stray_answer_is_dropped() -> None:
    session = PassthroughSession("CS-1", Version.V201)
    commands = session.feed(FrameFromCsms('[3,"never-asked",{}]', 1.0))
    assert sends(commands, SendToCharger) == [] and sends(commands, SendToCsms) == []


@pytest.mark.parametrize(("version", "answered"), [(Version.V201, True), (Version.V21, False)])
def test_unknown_message_type(version: Version, answered: bool) -> None:
    session = PassthroughSession("CS-1", version)
    commands = session.feed(FrameFromCharger('[7,"z",{}]', 1.0))
    assert sends(commands, SendToCsms) == []
    replies = sends(commands, SendToCharger)
    assert (orjson.loads(replies[0])[2] == "MessageTypeNotSupported") if answered else replies == []


def test_malformed_json_gets_minus_one() -> None:
    session = PassthroughSession("CS-1", Version.V21)
    reply = orjson.loads(sends(session.feed(FrameFromCharger('[2,"a",', 1.0)), SendToCharger)[0])
    assert reply[:3] == [4, "-1", "RpcFrameworkError"]


def test_open_calls_are_bounded() -> None:
    session = PassthroughSession("CS-1", Version.V201)
    for n in range(MAX_TRACKED_CALLS + 10):
        session.feed(FrameFromCsms(f'[2,"c{n}","ClearCache",{{}}]', 1.0))
    assert len(session.csms.open_calls) == MAX_TRACKED_CALLS
