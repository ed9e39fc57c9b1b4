"""2.0.1 and 2.1 stations share the endpoint with 1.6 chargers and pass through untranslated.

>> a 2.x station (ocpp v201/v21 ChargePoint)  --  bridge (validates, never translates)  --  << CSMS, same version
"""

from __future__ import annotations

import json

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.v21 import call as c21
from ocpp.v201 import call as c201
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from .peers import charger, now, within

CALLS = {"ocpp2.0.1": c201, "ocpp2.1": c21}


def calls_of(frames: list[str]) -> list[str]:
    return [text for text in frames if json.loads(text)[0] == 2]


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_2x_station_passes_through_untranslated(bridge, csms_factory, identity, protocol):
    csms = await csms_factory(subprotocols=[protocol])
    call = CALLS[protocol]
    async with charger(bridge.ws_url(identity), identity, protocol=protocol) as station_side:
        boot = await station_side.call(call.BootNotification(
            charging_station={"model": "Native-2x", "vendor_name": "ACME", "firmware_version": "9.9"},
            reason="ApplicationReset"))
        assert boot.status == "Accepted"
        await station_side.call(call.TransactionEvent(
            event_type="Started", timestamp=now(), trigger_reason="Authorized", seq_no=0,
            transaction_info={"transaction_id": "native-tx-1"}, evse={"id": 1, "connector_id": 1},
            id_token={"id_token": "ABCDEF01", "type": "ISO14443"}))
        csms_side = await csms.station(identity)
        assert csms.connections[identity].subprotocol == protocol
        # The CSMS received the station's frames byte for byte: same text, same message ids.
        assert calls_of(csms_side.raw_received) == calls_of(station_side.cp.raw_sent)
        assert csms_side.received("BootNotification") == [{
            "chargingStation": {"model": "Native-2x", "vendorName": "ACME", "firmwareVersion": "9.9"},
            "reason": "ApplicationReset"}]
        assert csms_side.received("TransactionEvent")[0]["transactionInfo"] == {"transactionId": "native-tx-1"}

        # A CSMS call reaches the station unchanged, and its answer comes back.
        answer = await within(csms_side.call(call.Reset(type="OnIdle", evse_id=1), suppress=False))
        assert answer.status == "Accepted"
        assert station_side.cp.received("Reset") == [{"type": "OnIdle", "evseId": 1}]
        assert calls_of(station_side.cp.raw_received) == calls_of(csms_side.raw_sent)


async def test_2x_station_error_answer_passes_through(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity, protocol="ocpp2.0.1") as station_side:
        csms_side = await csms.station(identity)
        # The station has no handler for GetDisplayMessages: its own CALLERROR reaches the CSMS.
        with pytest.raises(OcppNotImplemented):
            await within(csms_side.call(c201.GetDisplayMessages(request_id=7), suppress=False))
        station_side.cp.errors_sent.clear()  # that CALLERROR was the point of this test


async def test_station_offering_both_gets_what_the_csms_speaks(bridge, csms, identity):
    """A station offering ocpp2.1 and ocpp2.0.1 to a 2.0.1-only CSMS ends up on 2.0.1 on both sides."""
    async with charger(bridge.ws_url(identity), identity, protocol="ocpp2.0.1",
                       offer=["ocpp2.1", "ocpp2.0.1"]) as station_side:
        await station_side.call(c201.Heartbeat())
        assert csms.connections[identity].subprotocol == "ocpp2.0.1"
        assert csms.handshakes[-1].subprotocols == ["ocpp2.1", "ocpp2.0.1"]
        assert csms.stations[identity].received("Heartbeat") == [{}]


async def test_2_1_station_and_a_2_0_1_only_csms_is_502(bridge, csms, identity):
    with pytest.raises(InvalidStatus) as refused:
        await within(connect(bridge.ws_url(identity), subprotocols=[Subprotocol("ocpp2.1")]))
    assert refused.value.response.status_code == 502
    assert identity not in csms.stations
