"""The bridge process is replaced mid-transaction; the CSMS must not notice anything but a reconnect.

Bridge #1 is stopped with SIGTERM (exit status 0, the charger's socket closed with 1001 "going away"); bridge #2
starts on the same state file and port; the charger reconnects and carries on with the 1.6 transactionId it
was given. The CSMS sees one transaction: the same 2.0.1 transactionId, seqNo 0, 1, 2, ... without gap or repeat.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .peers import charger, now, within


def meter(value: str) -> list[dict[str, Any]]:
    return [{"timestamp": now(), "sampledValue": [{"value": value, "measurand": "Energy.Active.Import.Register",
                                                   "unit": "Wh", "context": "Sample.Periodic"}]}]


async def test_transaction_survives_a_bridge_restart(bridge_factory, csms, identity, tmp_path):
    state = tmp_path / "restart.db"
    first = bridge_factory(state=state)
    async with charger(first.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="RESTART-1", meter_start=100,
                                                               timestamp=now()))
        local_id = started.transaction_id
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=meter("200")))
        upstream_1 = csms.connections[identity]

        assert await first.aterminate() == 0
        assert await charge_point.closed() == 1001  # going away: reconnect (to another replica)
        await within(upstream_1.wait_closed())

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=meter("300")))
        stopped = await charge_point.call(c16.StopTransaction(transaction_id=local_id, meter_stop=400,
                                                              timestamp=now(), reason="Local", id_tag="RESTART-1"))
        assert stopped.id_tag_info["status"] == "Accepted"

    events = csms.received(identity, "TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert [e["meterValue"][0]["sampledValue"][0]["value"] for e in events[2:4]] == [200, 300]
    assert events[-1]["meterValue"][-1]["sampledValue"][0]["value"] == 400


async def test_remote_stop_after_a_restart_reaches_the_right_transaction(bridge_factory, csms, identity, tmp_path):
    state = tmp_path / "restart.db"
    first = bridge_factory(state=state)
    async with charger(first.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(c16.StartTransaction(connector_id=2, id_tag="RESTART-2", meter_start=0,
                                                               timestamp=now()))
        assert await first.aterminate() == 0
        assert await charge_point.closed() == 1001
    (begin,) = csms.stations[identity].received("TransactionEvent")

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity) as charge_point:
        station = await csms.station(identity)
        # The CSMS-side ChargePoint of this identity is new (new upstream connection): its log starts empty.
        assert station.received() == []
        answer = await within(station.call(c201.RequestStopTransaction(
            transaction_id=begin["transactionInfo"]["transactionId"]), suppress=False))
        assert answer.status == "Accepted"
        assert charge_point.cp.received("RemoteStopTransaction") == [{"transactionId": started.transaction_id}]


async def test_sigterm_with_no_session_exits_cleanly(bridge_factory):
    process = bridge_factory()
    assert process.health()["sessions"] == 0
    assert await process.aterminate() == 0
    stopped = [line["event"] for line in process.log_lines()]
    assert "bridge.stopping" in stopped
    assert "bridge.stopped" in stopped


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_start_in_flight_during_a_restart_is_one_transaction(bridge_factory, csms, identity, tmp_path, how):
    """The bridge stops while the CSMS holds the Started event's answer; the charger never got its id.

    After the restart the charger repeats its StartTransaction (TransactionMessageAttempts): the bridge recognises
    it and resends the same event (same transactionId, same seqNo 0) rather than starting a second transaction.
    """
    state = tmp_path / "inflight.db"
    release = asyncio.Event()

    async def slow_first(payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}

    csms.answer("TransactionEvent", slow_first)
    first = bridge_factory(state=state)
    request = c16.StartTransaction(connector_id=1, id_tag="INFLIGHT", meter_start=10, timestamp=now())
    async with charger(first.ws_url(identity), identity) as charge_point:
        pending = asyncio.create_task(charge_point.call(request))
        await (await csms.station(identity)).expect("TransactionEvent")  # the CSMS holds it
        if how == "SIGTERM":
            assert await first.aterminate() == 0
            assert await charge_point.closed() == 1001
        else:  # a crash: the state file is all that survives
            await asyncio.to_thread(first.kill)
            assert await charge_point.closed() in (1006, None)  # abnormal closure, no close frame
        pending.cancel()  # the answer will never come on this connection
        with pytest.raises(asyncio.CancelledError):
            await pending
    release.set()

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(request)  # the very same request, again
        assert started.id_tag_info["status"] == "Accepted"
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=20,
                                                    timestamp=now()))
    events = csms.received(identity, "TransactionEvent")
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Started", 0), ("Ended", 1)]
    assert events[0] == events[1]  # a repeat the CSMS can recognise, not a second transaction
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1


async def test_csms_dropping_mid_transaction_then_reconnect(bridge, csms, identity):
    """The CSMS drops the link; the charger is closed, reconnects, and the transaction goes on seamlessly."""
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="DROP-1", meter_start=0,
                                                               timestamp=now()))
        await csms.connections[identity].close(1001, "CSMS restarting")
        assert await charge_point.closed() == 1001
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                                meter_value=meter("5")))
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=9,
                                                    timestamp=now()))
    events = csms.received(identity, "TransactionEvent")
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Updated", 1), ("Ended", 2)]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert len(csms.history) == 2  # two upstream connections, one after the other
