"""A 1.6 charger's whole day through the bridge process, as a 2.0.1 CSMS sees it.

>> charger sends 1.6 (ocpp v16 ChargePoint)  --  bridge subprocess  --  << CSMS receives 2.0.1 (ocpp v201 ChargePoint)

StatusNotification, MeterValues and StopTransaction are answered once the bridge has stored them; the CSMS gets
them just after (docs/durability.md), so the tests wait for the CSMS's recording with a deadline. A charger that
disconnects takes its upstream link with it: a test waits for delivery before it hangs up.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .peers import charger, now, within

T_START = "2025-03-01T10:00:00.123456+00:00"
T_STOP = "2025-03-01T11:00:00+01:00"


def sample(value: str, context: str = "Sample.Periodic", measurand: str = "Energy.Active.Import.Register",
           unit: str = "Wh", stamp: str | None = None) -> dict[str, Any]:
    return {"timestamp": stamp or now(),
            "sampledValue": [{"value": value, "context": context, "measurand": measurand, "unit": unit}]}


async def test_full_session_one_transaction(bridge, csms, identity):
    csms.answer("Heartbeat", {"currentTime": "2025-03-01T09:59:59.000Z"})
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        # Boot: 1.6's flat fields become chargingStation; 1.6 has no reason, the bridge says PowerUp.
        boot = await charge_point.call(c16.BootNotification(
            charge_point_model="Wallbox-22", charge_point_vendor="ACME", charge_point_serial_number="SN-0001",
            firmware_version="4.2.0"))
        assert boot.status == "Accepted"
        assert boot.interval == 300
        station = await csms.station(identity)
        assert station.received("BootNotification") == [{
            "reason": "PowerUp",
            "chargingStation": {"model": "Wallbox-22", "vendorName": "ACME", "serialNumber": "SN-0001",
                                "firmwareVersion": "4.2.0"},
        }]

        # Heartbeat: the CSMS's clock is the charger's.
        heartbeat = await charge_point.call(c16.Heartbeat())
        assert heartbeat.current_time == "2025-03-01T09:59:59.000Z"
        assert station.received("Heartbeat") == [{}]

        # Status: connector 0 is the station (NotifyEvent AvailabilityState), connector 1 is EVSE 1 connector 1.
        await charge_point.call(c16.StatusNotification(connector_id=0, error_code="NoError", status="Available"))
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Available",
                                                       timestamp="2025-03-01T09:59:00Z"))
        notify = await csms.wait_received(identity, "NotifyEvent", 1)
        await csms.wait_received(identity, "StatusNotification", 1)
        assert len(notify) == 1
        assert notify[0]["eventData"][0]["component"] == {"name": "ChargingStation"}
        assert notify[0]["eventData"][0]["variable"] == {"name": "AvailabilityState"}
        assert notify[0]["eventData"][0]["actualValue"] == "Available"
        assert station.received("StatusNotification") == [{
            "timestamp": "2025-03-01T09:59:00.000Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}]

        # Authorize: an 8-hex-digit tag is an ISO14443 UID.
        authorized = await charge_point.call(c16.Authorize(id_tag="04A2B3C4"))
        assert authorized.id_tag_info["status"] == "Accepted"
        assert station.received("Authorize") == [{"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}]

        # Start: TransactionEvent Started, seqNo 0, with the token and the EVSE.
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="04A2B3C4", meter_start=1000,
                                                               timestamp=T_START))
        assert isinstance(started.transaction_id, int)
        assert started.id_tag_info["status"] == "Accepted"  # the CSMS's answer to the Started event
        events = await csms.transaction_events(identity, 1)
        assert len(events) == 1
        begin = events[0]
        tx_id = begin["transactionInfo"]["transactionId"]
        assert isinstance(tx_id, str) and tx_id
        assert begin["eventType"] == "Started"
        assert begin["seqNo"] == 0
        assert begin["triggerReason"] == "Authorized"
        assert begin["timestamp"] == "2025-03-01T10:00:00.123Z"  # the charger's time, millisecond precision
        assert begin["idToken"] == {"idToken": "04A2B3C4", "type": "ISO14443"}
        assert begin["evse"] == {"id": 1, "connectorId": 1}
        assert begin["meterValue"][0]["sampledValue"][0]["value"] == 1000
        assert begin["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"

        # Charging: the connector goes Occupied and the charging state change is an Updated event.
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        statuses = await csms.wait_received(identity, "StatusNotification", 3)  # Available, Preparing, Charging
        assert [s["connectorStatus"] for s in statuses] == ["Available", "Occupied", "Occupied"]

        # Meter values during the transaction: Updated events, numbered on.
        for value in ("1500", "2250"):
            await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                                    meter_value=[sample(value)]))

        # Stop: Ended with the 1.6 reason as stoppedReason.
        stopped = await charge_point.call(c16.StopTransaction(
            transaction_id=started.transaction_id, meter_stop=3000, timestamp=T_STOP, reason="EVDisconnected"))
        assert stopped is not None
        await csms.until_ended(identity, tx_id)

    events = station.received("TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {tx_id}
    charging, meter1, meter2, end = events[1:]
    assert charging["triggerReason"] == "ChargingStateChanged"
    assert charging["transactionInfo"]["chargingState"] == "Charging"
    assert [m["triggerReason"] for m in (meter1, meter2)] == ["MeterValuePeriodic", "MeterValuePeriodic"]
    assert [m["meterValue"][0]["sampledValue"][0]["value"] for m in (meter1, meter2)] == [1500, 2250]
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert end["timestamp"] == "2025-03-01T10:00:00.000Z"  # +01:00 normalised to UTC
    assert end["meterValue"][-1]["sampledValue"][0]["value"] == 3000
    assert end["meterValue"][-1]["sampledValue"][0]["context"] == "Transaction.End"


@pytest.mark.parametrize(("csms_status", "charger_status"), [
    ("Accepted", "Accepted"),
    ("Blocked", "Blocked"),
    ("Expired", "Expired"),
    ("ConcurrentTx", "ConcurrentTx"),
    ("Unknown", "Invalid"),  # 2.0.1 statuses 1.6 lacks become Invalid
    ("NoCredit", "Invalid"),
])
async def test_authorize_decision_is_the_csms(session16, csms, csms_status, charger_status):
    csms.answer("Authorize", {"idTokenInfo": {"status": csms_status}})
    answer = await session16.link.call(c16.Authorize(id_tag="TAG-DECIDE"))
    assert answer.id_tag_info["status"] == charger_status
    assert session16.station.received("Authorize") == [{"idToken": {"idToken": "TAG-DECIDE", "type": "Local"}}]


async def test_start_transaction_gets_the_csms_token_decision(session16, csms):
    csms.answer("TransactionEvent", lambda p: {"idTokenInfo": {"status": "Blocked"}} if "idToken" in p else {})
    started = await session16.link.call(c16.StartTransaction(connector_id=2, id_tag="BLOCKED-1", meter_start=0,
                                                             timestamp=now()))
    assert started.id_tag_info["status"] == "Blocked"
    (event,) = await csms.transaction_events(session16.identity, 1)
    assert event["eventType"] == "Started"
    assert event["evse"] == {"id": 2, "connectorId": 1}


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
async def test_boot_not_accepted_reaches_the_charger(bridge, csms, identity, status):
    csms.answer("BootNotification", {"currentTime": "2025-01-01T00:00:00Z", "interval": 17, "status": status})
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        boot = await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    assert (boot.status, boot.interval, boot.current_time) == (status, 17, "2025-01-01T00:00:00Z")


@pytest.mark.parametrize(("authorized_before", "charger_status"), [(False, "Invalid"), (True, "Accepted")])
async def test_failed_started_event_is_retried_by_the_bridge(bridge_factory, csms, identity, authorized_before,
                                                             charger_status):
    """The CSMS fails the Started event. Never a fabricated acceptance: the charger gets the CSMS's own earlier
    decision about the token (auth cache) or, for a token it never decided about, the unknown-token policy
    (Invalid). The event itself is the bridge's to deliver: it retries after retry_interval with the very same
    event (same transactionId, same seqNo 0), and the charger never repeats anything."""
    process = bridge_factory(env={"OCPP_BRIDGE_RETRY_INTERVAL": "0.5"})
    csms.errors_allowed = True
    failures = iter([True])

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        if next(failures, False):
            raise RuntimeError("CSMS database is down")
        return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}

    async with charger(process.ws_url(identity), identity) as charge_point:
        if authorized_before:
            authorized = await charge_point.call(c16.Authorize(id_tag="RETRY-1"))
            assert authorized.id_tag_info["status"] == "Accepted"
        csms.answer("TransactionEvent", flaky)
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="RETRY-1", meter_start=5,
                                                               timestamp=T_START))
        assert started.id_tag_info["status"] == charger_status
        first, second = await csms.transaction_events(identity, 2)
        assert first == second  # the bridge's own retry: same transactionId, same seqNo 0
        assert first["seqNo"] == 0 and first["eventType"] == "Started"
        assert csms.errors_sent() and csms.errors_sent()[0][2] == "InternalError"  # the one failure, and only it
        assert len(csms.errors_sent()) == 1
        assert charge_point.cp.received() == []  # the late Accepted stops nothing the charger was not told to run
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=6,
                                                    timestamp=now()))
        events = await csms.until_ended(identity)
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Started", 0), ("Ended", 1)]
    retries = [line for line in process.log_lines() if line["event"] == "queue.retry"]
    assert [(r["action"], r["attempts"]) for r in retries] == [("TransactionEvent", 1)]


async def test_meter_values_outside_a_transaction_are_meter_values(session16, csms):
    await session16.link.call(c16.MeterValues(connector_id=1, meter_value=[
        sample("230.1", context="Sample.Clock", measurand="Voltage", unit="V")]))
    (request,) = await csms.wait_received(session16.identity, "MeterValues", 1)
    assert request["evseId"] == 1
    value = request["meterValue"][0]["sampledValue"][0]
    assert value["value"] == 230.1
    assert value["measurand"] == "Voltage"
    assert session16.station.received("TransactionEvent") == []


async def test_data_transfer_from_the_charger(session16, csms):
    csms.answer("DataTransfer", {"status": "Accepted", "data": {"balance": 12.5}})
    answer = await session16.link.call(c16.DataTransfer(vendor_id="com.acme", message_id="balance",
                                                        data="card=42"))
    assert answer.status == "Accepted"
    assert answer.data == '{"balance":12.5}'  # 1.6 data is a string: the JSON text of the 2.0.1 value
    assert session16.station.received("DataTransfer") == [
        {"vendorId": "com.acme", "messageId": "balance", "data": "card=42"}]


async def test_charger_disconnect_closes_the_upstream(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
        upstream = csms.connections[identity]
    await within(upstream.wait_closed())
    assert upstream.close_code == 1000


@pytest.mark.parametrize(("csms_code", "charger_code"), [(1000, 1000), (1001, 1001), (1008, 1008), (1011, 1011),
                                                         (4000, 1001)])
async def test_csms_closing_closes_the_charger_in_close_mode(close_mode_bridge, csms, identity, csms_code,
                                                             charger_code):
    """outage_mode = "close": the Local Controller rule; the CSMS's close code is relayed where RFC 6455 allows."""
    async with charger(close_mode_bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
        await csms.connections[identity].close(csms_code, "bye")
        assert await charge_point.closed() == charger_code
    assert len(csms.handshakes) == 1  # nobody reconnects for a charger that is gone


@pytest.mark.parametrize("csms_code", [1000, 1001, 1008, 1011, 4000])
async def test_csms_closing_is_ridden_through(bridge, csms, identity, csms_code):
    """Default outage_mode = "ride-through": whatever code the CSMS closes with, the charger stays connected
    and the bridge opens the upstream link again by itself, with the subprotocol the session uses."""
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
        first = csms.connections[identity]
        await first.close(csms_code, "bye")
        handshakes = await csms.handshakes_of(identity, 2)
        assert handshakes[1].subprotocols == ["ocpp2.0.1"]
        await csms.station(identity)  # the new link is open...
        # ...and carries the charger's calls. A call can reach the bridge in the moment between the CSMS
        # accepting the link and the bridge reading the CSMS's handshake answer: it is answered as offline then.
        for _ in range(20):
            await charge_point.call(c16.Heartbeat())
            if len(csms.received(identity, "Heartbeat")) >= 2:
                break
            await asyncio.sleep(0.05)
        await csms.wait_received(identity, "Heartbeat", 2)
        assert charge_point.ws.close_code is None
        assert csms.connections[identity] is not first
    assert len(csms.history) == 2


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_csms_refusing_the_station_on_reconnect_closes_the_charger(bridge, csms_factory, identity, status):
    """Ride-through ends when the CSMS no longer accepts the station: the charger is closed with 1008."""
    refusing: list[int] = []
    csms = await csms_factory(gate=lambda handshake: refusing[0] if refusing else None)
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
        refusing.append(status)
        await csms.connections[identity].close(1001, "restarting")
        assert await charge_point.closed() == 1008  # policy violation: the CSMS refused this station
    assert len(csms.handshakes) == 2  # the refusal is final: no further attempts


async def test_many_chargers_at_once(bridge, csms, new_identity):
    identities = [new_identity() for _ in range(20)]

    async def one_day(identity: str) -> int:
        async with charger(bridge.ws_url(identity), identity) as charge_point:
            await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="FLEET", meter_start=0,
                                                                   timestamp=now()))
            await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                                    meter_value=[sample("10")]))
            await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=20,
                                                        timestamp=now()))
            await csms.until_ended(identity, timeout=20)  # delivered before the charger hangs up
            return int(started.transaction_id)

    await within(asyncio.gather(*(one_day(i) for i in identities)), timeout=30)
    transaction_ids = set()
    for identity in identities:
        events = csms.received(identity, "TransactionEvent")
        assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Updated", 1), ("Ended", 2)]
        ids = {e["transactionInfo"]["transactionId"] for e in events}
        assert len(ids) == 1
        transaction_ids |= ids
    assert len(transaction_ids) == len(identities)  # no two chargers share a transaction


async def test_a_charger_cannot_touch_another_chargers_transaction(bridge, csms, new_identity):
    a, b = new_identity(), new_identity()
    async with charger(bridge.ws_url(a), a) as charger_a, charger(bridge.ws_url(b), b) as charger_b:
        started = await charger_a.call(c16.StartTransaction(connector_id=1, id_tag="OWNER-A", meter_start=0,
                                                            timestamp=now()))
        tx_a = (await csms.transaction_events(a, 1))[0]["transactionInfo"]["transactionId"]

        # B's CSMS connection names A's transaction: unknown on B.
        answer = await within(csms.stations[b].call(c201.RequestStopTransaction(transaction_id=tx_a),
                                                    suppress=False))
        assert answer.status == "Rejected"
        assert charger_a.cp.received() == [] and charger_b.cp.received() == []

        # B stops A's 1.6 id: whatever that is, it is B's business and never A's transaction.
        await charger_b.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=99,
                                                 timestamp=now()))
        adopted = await csms.until_ended(b)  # an id B never got: carried as B's own Started + Ended pair
        assert [e["eventType"] for e in adopted] == ["Started", "Ended"]
        assert tx_a not in {e["transactionInfo"]["transactionId"] for e in adopted}

        # A's transaction goes on, numbered on from where it was.
        await charger_a.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                             meter_value=[sample("50")]))
        await csms.transaction_events(a, 2)
    events = csms.received(a, "TransactionEvent")
    assert [(e["eventType"], e["seqNo"], e["transactionInfo"]["transactionId"]) for e in events] == [
        ("Started", 0, tx_a), ("Updated", 1, tx_a)]


async def test_csms_that_never_answers_is_an_error_for_the_charger(bridge_factory, csms, identity):
    process = bridge_factory(env={"OCPP_BRIDGE_CALL_TIMEOUT": "1"})
    late = asyncio.Event()

    async def never(payload: dict[str, Any]) -> dict[str, Any]:
        await late.wait()
        return {"currentTime": "2025-01-01T00:00:00Z"}

    csms.answer("Heartbeat", never)
    async with charger(process.ws_url(identity), identity) as charge_point:
        with pytest.raises(InternalError):  # never a made-up answer
            await charge_point.call(c16.Heartbeat())
        late.set()  # the CSMS answers after all: too late, the bridge must not hand it on
        authorized = await charge_point.call(c16.Authorize(id_tag="AFTER-TIMEOUT"))
        assert authorized.id_tag_info["status"] == "Accepted"
        frames = [json.loads(text) for text in charge_point.cp.raw_received]
    assert [frame[0] for frame in frames] == [4, 3]  # one CALLERROR, one CALLRESULT (Authorize), no stray answer
    assert "currentTime" not in frames[1][2]
