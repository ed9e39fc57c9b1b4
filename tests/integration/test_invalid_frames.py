"""Broken frames from either side are answered by the bridge, never forwarded, and the session goes on.

Each peer is answered in its own spelling: a 1.6 charger gets FormationViolation / OccurenceConstraintViolation
(the 1.6-J typos), a 2.0.1 CSMS gets FormatViolation / OccurrenceConstraintViolation / RpcFrameworkError.
The raw peers here are plain websockets connections, so nothing between the test and the bridge fixes a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.exceptions import InternalError, OCPPError
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .peers import RawCsms, charger, exchange, recv_json, within


@contextlib.asynccontextmanager
async def raw_charger(url: str, protocol: str = "ocpp1.6") -> AsyncIterator[ClientConnection]:
    async with connect(url, subprotocols=[Subprotocol(protocol)], open_timeout=5) as ws:
        assert ws.subprotocol == protocol
        yield ws


# --- from the charger -------------------------------------------------------------------------------------------

BOOT_OK = {"chargePointModel": "M", "chargePointVendor": "V"}


@pytest.mark.parametrize(("frame", "message_id", "code"), [
    pytest.param("this is not JSON", "-1", "FormationViolation", id="not-json"),
    pytest.param('[2, "m1", "Heartbeat"', "-1", "FormationViolation", id="truncated-json"),
    pytest.param([2, "m2", "BootNotification", {"chargePointModel": "M"}], "m2", "OccurenceConstraintViolation",
                 id="missing-chargePointVendor"),
    pytest.param([2, "m3", "BootNotification", {**BOOT_OK, "chargePointVendor": 7}], "m3",
                 "TypeConstraintViolation", id="vendor-not-a-string"),
    pytest.param([2, "m4", "BootNotification", {**BOOT_OK, "chargePointVendor": "V" * 21}], "m4",
                 "PropertyConstraintViolation", id="vendor-too-long"),
    pytest.param([2, "m5", "BootNotification", {**BOOT_OK, "colour": "red"}], "m5", "FormationViolation",
                 id="unknown-property"),
    pytest.param([2, "m6", "MakeCoffee", {}], "m6", "NotImplemented", id="unknown-action"),
    pytest.param([2, "m7", "BootNotification", [1, 2]], "m7", "FormationViolation", id="payload-not-object"),
    pytest.param('[2, "m8", "Heartbeat", {}] trailing', "-1", "FormationViolation", id="trailing-garbage"),
    pytest.param('{"not": "an array"}', "-1", "FormationViolation", id="object-not-array"),
    pytest.param("[2]", "-1", "FormationViolation", id="too-short"),
    pytest.param(["2", "m9", "Heartbeat", {}], "m9", "FormationViolation", id="type-id-not-int"),
    pytest.param([2, "i" * 37, "Heartbeat", {}], "-1", "FormationViolation", id="message-id-too-long"),
    pytest.param([2, "m10", "StatusNotification", {"connectorId": "1", "errorCode": "NoError",
                                                    "status": "Available"}], "m10", "TypeConstraintViolation",
                 id="connectorId-as-string"),
    pytest.param([2, "m11", "BootNotification", {**BOOT_OK, "firmwareVersion": None}], "m11",
                 "TypeConstraintViolation", id="null-optional-field"),
    pytest.param('[2, "m12", "DataTransfer", {"vendorId": "v", "data": 1e999999}]', "-1", "FormationViolation",
                 id="infinite-number"),
    pytest.param('[2, "m13", "DataTransfer", {"vendorId": "v", "data": "' + "[" * 5000 + '"}]', None, None,
                 id="brackets-in-a-string-are-fine"),
    pytest.param('[2, "m14", "DataTransfer", {"vendorId": "v", "data": ' + "[" * 5000 + "]" * 5000 + "}]", "-1",
                 "FormationViolation", id="nesting-5000-deep"),
])
async def test_invalid_frame_from_the_charger(bridge, csms, identity, frame, message_id, code):
    async with raw_charger(bridge.ws_url(identity)) as ws:
        answer = await exchange(ws, frame)
        if code is None:  # a control case: a strange but valid frame is carried
            assert answer[:2] == [3, "m13"]
            return
        assert answer[:3] == [4, message_id, code]
        assert isinstance(answer[3], str) and isinstance(answer[4], dict)
        assert "[[[" not in answer[3]  # the bad frame is never echoed
        # The session goes on: a valid Heartbeat is carried and answered.
        answer = await exchange(ws, [2, "hb", "Heartbeat", {}])
        assert answer[:2] == [3, "hb"] and "currentTime" in answer[2]
    # The session is one ordered stream: the Heartbeat arrived, the broken frame before it did not.
    assert csms.received(identity) == [{}]
    assert csms.stations[identity].actions() == ["Heartbeat"]


async def test_several_invalid_frames_then_a_whole_session(bridge, csms, identity):
    async with raw_charger(bridge.ws_url(identity)) as ws:
        for number in range(5):
            error = await exchange(ws, [2, f"bad{number}", "BootNotification", {}])
            assert error[:3] == [4, f"bad{number}", "OccurenceConstraintViolation"]
        answer = await exchange(ws, [2, "boot", "BootNotification", BOOT_OK])
        assert answer[0:2] == [3, "boot"] and answer[2]["status"] == "Accepted"
    assert csms.stations[identity].actions() == ["BootNotification"]


@pytest.mark.parametrize("frame", [
    pytest.param([7, "x1", "Heartbeat", {}], id="type-7"),
    pytest.param([5, "x2", {}], id="2.1-CALLRESULTERROR"),
    pytest.param([6, "x3", "Heartbeat", {}], id="2.1-SEND"),
    pytest.param([3, "nobody-asked", {"status": "Accepted"}], id="stray-CALLRESULT"),
    pytest.param([4, "nobody-asked", "GenericError", "", {}], id="stray-CALLERROR"),
])
async def test_frames_the_charger_may_not_send_are_ignored(bridge, csms, identity, frame):
    async with raw_charger(bridge.ws_url(identity)) as ws:
        await within(ws.send(json.dumps(frame)))  # 1.6-J §4.1.3: ignore unknown types; strays are dropped
        answer = await exchange(ws, [2, "hb", "Heartbeat", {}])
        assert answer[:2] == [3, "hb"]  # the next frame is the Heartbeat's answer: nothing came for type 7
    assert csms.stations[identity].actions() == ["Heartbeat"]


async def test_invalid_answer_from_the_charger_becomes_an_error_for_the_csms(bridge, csms, identity):
    async with raw_charger(bridge.ws_url(identity)) as ws:
        station = await csms.station(identity)
        pending = asyncio.create_task(station.call(c201.ClearCache(), suppress=False))
        request = json.loads(await within(ws.recv()))
        assert request[0] == 2 and request[2:] == ["ClearCache", {}]
        await within(ws.send(json.dumps([3, request[1], {"status": "Maybe"}])))
        with pytest.raises(InternalError):
            await within(pending)


# --- from the CSMS ----------------------------------------------------------------------------------------------


@pytest.fixture
async def raw_csms(csms_port: int) -> AsyncIterator[RawCsms]:
    raw = RawCsms()
    async with serve(raw.handler, "127.0.0.1", csms_port, subprotocols=[Subprotocol("ocpp2.0.1")]):
        yield raw


RESET_OK = {"type": "Immediate"}


@pytest.mark.parametrize(("frame", "message_id", "code"), [
    pytest.param([2, "c1", "Reset", {"type": "Bogus"}], "c1", "PropertyConstraintViolation", id="enum-violation"),
    pytest.param([2, "c2", "Reset", {}], "c2", "OccurrenceConstraintViolation", id="missing-type"),
    pytest.param([2, "c3", "Reset", {"type": 1}], "c3", "TypeConstraintViolation", id="type-not-a-string"),
    pytest.param([2, "c4", "Reset", {**RESET_OK, "colour": "red"}], "c4", "FormatViolation",
                 id="unknown-property"),
    pytest.param([2, "c5", "MakeCoffee", {}], "c5", "NotImplemented", id="unknown-action"),
    pytest.param("{{{", "-1", "RpcFrameworkError", id="not-json"),
    pytest.param([9, "c6", "Reset", RESET_OK], "c6", "MessageTypeNotSupported", id="unknown-message-type"),
    pytest.param([6, "c7", "Reset", RESET_OK], "c7", "MessageTypeNotSupported", id="2.1-SEND-on-2.0.1"),
    pytest.param([2, "c8", "RemoteStartTransaction", {"idTag": "X"}], "c8", "NotImplemented",
                 id="a-1.6-action"),
])
async def test_invalid_call_from_the_csms(bridge, raw_csms, identity, frame, message_id, code):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        error = await exchange(upstream, frame)
        assert error[:3] == [4, message_id, code]
        # The session goes on: a valid call reaches the charger and its answer comes back.
        answer = await exchange(upstream, [2, "ok", "ClearCache", {}])
        assert answer == [3, "ok", {"status": "Accepted"}]
        # The charger received only the valid call: nothing of the broken one.
        assert charge_point.cp.received() == [{}]
        assert charge_point.cp.actions() == ["ClearCache"]


async def test_invalid_answer_from_the_csms_becomes_an_error_for_the_charger(bridge, raw_csms, identity):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        pending = asyncio.create_task(charge_point.call(c16.Heartbeat()))
        request = json.loads(await within(upstream.recv()))
        assert request[0] == 2 and request[2:] == ["Heartbeat", {}]
        await within(upstream.send(json.dumps([3, request[1], {"currentTime": "yesterday"}])))
        # Never a made-up answer: the charger is told the exchange failed.
        with pytest.raises(InternalError):
            await within(pending)


@pytest.mark.parametrize(("csms_code", "charger_code"), [
    ("OccurrenceConstraintViolation", "OccurenceConstraintViolation"),
    ("FormatViolation", "FormationViolation"),
    ("RpcFrameworkError", "FormationViolation"),
    ("MessageTypeNotSupported", "GenericError"),
    ("SecurityError", "SecurityError"),
    ("InternalError", "InternalError"),
])
async def test_csms_error_is_relayed_in_the_charger_spelling(bridge, raw_csms, identity, csms_code, charger_code):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        pending = asyncio.create_task(charge_point.call(c16.Authorize(id_tag="TAG1")))
        request = await recv_json(upstream)
        assert request[2] == "Authorize"
        await within(upstream.send(json.dumps([4, request[1], csms_code, "no", {}])))
        with pytest.raises(OCPPError) as failed:  # never a made-up idTagInfo
            await within(pending)
        assert failed.value.code == charger_code


async def test_stray_answers_from_the_csms_are_dropped(bridge, raw_csms, identity):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        await within(upstream.send(json.dumps([3, "nobody-asked", {"currentTime": "2025-01-01T00:00:00Z"}])))
        await within(upstream.send(json.dumps([4, "nobody-asked-either", "GenericError", "", {}])))
        assert await exchange(upstream, [2, "ok", "ClearCache", {}]) == [3, "ok", {"status": "Accepted"}]
        frames = [json.loads(text) for text in charge_point.cp.raw_received]
        assert [frame[0] for frame in frames] == [2]  # only the ClearCache CALL reached the charger


async def test_csms_frame_over_the_size_limit_closes_only_the_upstream_link(bridge, raw_csms, identity):
    """A CSMS frame over the limit: the bridge closes that link (1009), never hands the frame on, and rides the
    lost link through: the charger stays connected and the bridge dials the CSMS again."""
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        await within(upstream.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "v",
                                                                           "data": "x" * (1 << 20)}])))
        await within(upstream.wait_closed())
        assert upstream.close_code == 1009  # the bridge refused the frame
        again = await raw_csms.next()  # a new upstream link for the same charger
        assert again.request is not None and again.request.path.endswith(f"/{identity}")
        # The session goes on over the new link.
        assert await exchange(again, [2, "ok", "ClearCache", {}]) == [3, "ok", {"status": "Accepted"}]
        assert charge_point.ws.close_code is None
        assert charge_point.cp.actions() == ["ClearCache"]  # nothing of the big frame


async def test_csms_frame_over_the_size_limit_ends_the_session_in_close_mode(close_mode_bridge, raw_csms, identity):
    async with charger(close_mode_bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        await within(upstream.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "v",
                                                                           "data": "x" * (1 << 20)}])))
        await within(upstream.wait_closed())
        assert upstream.close_code == 1009  # the bridge refused the frame
        assert await charge_point.closed() == 1001  # and the charger is told to go away and reconnect
        assert charge_point.cp.received() == []


async def test_two_csms_calls_at_once_are_queued_for_the_charger(bridge, raw_csms, identity):
    """OCPP-J: one outstanding CALL per direction. The CSMS sends two without waiting; the charger gets them
    one after the other and both answers reach the CSMS with their own ids."""
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        upstream = await raw_csms.next()
        await within(upstream.send(json.dumps([2, "first", "ClearCache", {}])))
        await within(upstream.send(json.dumps([2, "second", "ChangeAvailability",
                                               {"operationalStatus": "Inoperative"}])))
        answers = {frame[1]: frame for frame in [await recv_json(upstream), await recv_json(upstream)]}
        assert answers == {"first": [3, "first", {"status": "Accepted"}],
                           "second": [3, "second", {"status": "Accepted"}]}
        assert charge_point.cp.actions() == ["ClearCache", "ChangeAvailability"]


async def test_duplicate_message_id_in_flight_is_refused(bridge, csms, identity):
    release = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"currentTime": "2025-01-01T00:00:00Z"}

    csms.answer("Heartbeat", slow)
    async with raw_charger(bridge.ws_url(identity)) as ws:
        await within(ws.send(json.dumps([2, "dup", "Heartbeat", {}])))
        await (await csms.station(identity)).expect("Heartbeat")  # the first one is in the CSMS's hands
        error = await exchange(ws, [2, "dup", "Heartbeat", {}])
        assert error[:3] == [4, "dup", "ProtocolError"]
        release.set()
        assert await recv_json(ws) == [3, "dup", {"currentTime": "2025-01-01T00:00:00Z"}]
    assert csms.received(identity, "Heartbeat") == [{}]


async def test_frame_over_the_size_limit_closes_1009(bridge, csms, identity):
    async with raw_charger(bridge.ws_url(identity)) as ws:
        await within(ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * (1 << 20)}])))
        with pytest.raises(ConnectionClosed):
            await within(ws.recv())
        assert ws.close_code == 1009  # message too big
    assert csms.received(identity) == []


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize(("frame", "code"), [
    pytest.param([2, "p1", "BootNotification", {"reason": "PowerUp"}], "OccurrenceConstraintViolation",
                 id="missing-chargingStation"),
    pytest.param("not JSON", "RpcFrameworkError", id="not-json"),
    pytest.param([2, "p1", "Heartbeat", {"extra": 1}], "FormatViolation", id="unknown-property"),
])
async def test_invalid_frame_from_a_2x_station_is_refused_in_2x_spelling(bridge, csms_factory, identity, protocol,
                                                                       frame, code):
    csms = await csms_factory(subprotocols=[protocol])
    async with raw_charger(bridge.ws_url(identity), protocol) as ws:
        error = await exchange(ws, frame)
        assert error[0] == 4 and error[2] == code
        answer = await exchange(ws, [2, "hb", "Heartbeat", {}])
        assert answer[:2] == [3, "hb"]
    assert csms.stations[identity].actions() == ["Heartbeat"]
