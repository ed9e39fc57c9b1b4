"""The bridge process is replaced mid-transaction; the CSMS must not notice anything but a reconnect.

Bridge #1 is stopped with SIGTERM (exit status 0, the charger's socket closed with 1001 "going away"); bridge #2
starts on the same state file and port; the charger reconnects and carries on with the 1.6 transactionId it
was given. The CSMS sees one transaction: the same 2.0.1 transactionId, seqNo 0, 1, 2, ... without gap. Delivery
is at-least-once (docs/durability.md): the one event in flight when a bridge stops may reach the CSMS again,
identical, with the same seqNo; any other repeat, or two different events with one seqNo, fails.

The CSMS dropping its link is not a restart of anything: the bridge rides it through (the charger stays
connected) and reconnects upstream by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .peers import charger, check_one_transaction, collapse_repeats, meter_readings, now, within


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
        await csms.transaction_events(identity, 3)  # Started, Updated (Charging), Updated (200)
        upstream_1 = csms.connections[identity]

        assert await first.aterminate() == 0
        assert await charge_point.closed() == 1001  # going away: reconnect (to another replica)
        await within(upstream_1.wait_closed())

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=meter("300")))
        stopped = await charge_point.call(c16.StopTransaction(transaction_id=local_id, meter_stop=400,
                                                              timestamp=now(), reason="Local", id_tag="RESTART-1"))
        assert stopped.id_tag_info is None  # answered once stored: there is no CSMS decision to hand on yet
        await csms.until_ended(identity)

    events, repeats = collapse_repeats(csms.received(identity, "TransactionEvent"))
    assert repeats <= 1  # at most the event in flight at the SIGTERM
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    check_one_transaction(events)
    assert [meter_readings(e)[0] for e in events[2:4]] == [200, 300]
    assert meter_readings(events[-1])[-1] == 400


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

    The Started event was stored before it was sent, so bridge #2 replays it from the store (identical: same
    transactionId, same seqNo 0). The charger repeats its StartTransaction (TransactionMessageAttempts): the
    bridge recognises it by content and answers the same transaction, never a second one. The token was
    authorized by the CSMS just before, so the answer is the CSMS's own decision whether or not the replayed
    event's answer has arrived yet.
    """
    state = tmp_path / "inflight.db"
    release = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}

    # the CSMS never answers during the stop: a short drain, then the charger is closed with 1001
    first = bridge_factory(state=state, env={"OCPP_BRIDGE_DRAIN_TIMEOUT": "1"})
    request = c16.StartTransaction(connector_id=1, id_tag="INFLIGHT", meter_start=10, timestamp=now())
    async with charger(first.ws_url(identity), identity) as charge_point:
        authorized = await charge_point.call(c16.Authorize(id_tag="INFLIGHT"))
        assert authorized.id_tag_info["status"] == "Accepted"
        csms.answer("TransactionEvent", slow)
        pending = asyncio.create_task(charge_point.call(request))
        await csms.expect(identity, "TransactionEvent")  # the CSMS holds it
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
        await csms.until_ended(identity)
    events = csms.received(identity, "TransactionEvent")
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Started", 0), ("Ended", 1)]
    assert events[0] == events[1]  # a repeat the CSMS can recognise, not a second transaction
    check_one_transaction(collapse_repeats(events)[0])


async def test_repeated_start_after_a_crash_gets_the_csms_decision_on_the_replayed_event(bridge_factory, csms,
                                                                                         identity, tmp_path):
    """As above without an earlier Authorize, and the CSMS slow (0.5 s) to answer the replayed Started event.

    docs/durability.md: the charger is answered from the auth cache or the unknown-token policy only "if the
    CSMS answers CALLERROR, or not within call_timeout, or is unreachable". Here the CSMS is reachable and
    answers Accepted well within call_timeout, so the repeated StartTransaction must get Accepted, not the
    unknown-token policy's Invalid (which makes a 1.6 charger with StopTransactionOnInvalidId stop at once).
    """
    state = tmp_path / "inflight.db"
    release = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        await asyncio.sleep(0.5)  # a slow CSMS, well inside call_timeout (20 s)
        return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}

    csms.answer("TransactionEvent", slow)
    first = bridge_factory(state=state)
    request = c16.StartTransaction(connector_id=1, id_tag="NEVER-SEEN", meter_start=10, timestamp=now())
    async with charger(first.ws_url(identity), identity) as charge_point:
        pending = asyncio.create_task(charge_point.call(request))
        await csms.expect(identity, "TransactionEvent")
        await asyncio.to_thread(first.kill)
        assert await charge_point.closed() in (1006, None)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    release.set()

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(request, timeout=15)
        assert started.id_tag_info["status"] == "Accepted", "the CSMS accepted the token; the charger was told " \
            f"{started.id_tag_info['status']}"


async def test_csms_dropping_mid_transaction_is_ridden_through(bridge, csms, identity):
    """The CSMS drops the link mid-transaction. The charger stays connected; what it sends meanwhile is
    acknowledged once stored and delivered after the bridge has reconnected upstream, flagged offline (E12),
    numbered on; the transaction goes on without the charger noticing."""
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="DROP-1", meter_start=0,
                                                               timestamp=now()))
        csms.hold = asyncio.Event()  # the CSMS comes back slowly: the bridge's reconnect waits in the handshake
        await csms.connections[identity].close(1001, "CSMS restarting")
        # The bridge dials again only after it has noted the loss: what the charger sends from now on is
        # produced while the CSMS is unreachable.
        await csms.handshakes_of(identity, 2)
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                                meter_value=meter("5")))
        heartbeat = await charge_point.call(c16.Heartbeat())  # answered by the bridge's clock meanwhile
        assert heartbeat.current_time
        assert csms.received(identity, "TransactionEvent")[1:] == []  # nothing delivered while down
        csms.hold.set()
        await csms.transaction_events(identity, 2)  # replayed once the link is back: the bridge is online again
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=9,
                                                    timestamp=now()))
        events = await csms.until_ended(identity)
        assert charge_point.ws.close_code is None  # never disconnected
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Updated", 1), ("Ended", 2)]
    assert [e.get("offline", False) for e in events] == [False, True, False]
    check_one_transaction(events)
    assert meter_readings(events[1]) == [5]
    assert len(csms.history) == 2  # two upstream connections, one after the other
    assert csms.received(identity, "Heartbeat") == []  # the Heartbeat during the outage never reached the CSMS
