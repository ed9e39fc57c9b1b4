"""Several bridge replicas on one real redis-server (issue 4 item 6).

A charger that reconnects to another replica mid-transaction just carries on; one live session per identity
across replicas; queued messages a dead replica leaves behind are delivered by the replica the charger reaches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ocpp.v16 import call as call16

from tests.integration.peers import charger, within


def now() -> str:
    return datetime.now(UTC).isoformat()


def meter(transaction_id: int, wh: int) -> Any:
    return call16.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=[
        {"timestamp": now(), "sampledValue": [{"value": str(wh), "unit": "Wh",
                                               "measurand": "Energy.Active.Import.Register"}]}])


async def test_transaction_moves_to_another_replica_when_the_first_dies(
        bridge_factory: Any, csms: Any, identity: str, redis_url: str) -> None:
    replica_a = bridge_factory(state=redis_url)
    replica_b = bridge_factory(state=redis_url)
    async with charger(replica_a.ws_url(identity), identity) as link:
        await link.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        started = await link.call(call16.StartTransaction(connector_id=1, id_tag="04A1B2C3", meter_start=1000,
                                                          timestamp=now()))
        await link.call(meter(started.transaction_id, 1500))
        await csms.transaction_events(identity, 2)
        replica_a.kill()  # kill -9: no goodbye, no flush
        assert await link.closed() is not None
    async with charger(replica_b.ws_url(identity), identity) as link:  # the load balancer picks B now
        await link.call(meter(started.transaction_id, 1800))
        answer = await link.call(call16.StopTransaction(transaction_id=started.transaction_id, meter_stop=2000,
                                                        timestamp=now()))
        assert answer is not None
        received = await csms.until_ended(identity)
    # At-least-once (docs/durability.md): the one event A had in flight when it died may arrive again from B,
    # identical and with the same seqNo. Anything else would be a lost or duplicated transaction event.
    by_seq: dict[int, dict[str, Any]] = {}
    for event in received:
        assert by_seq.setdefault(event["seqNo"], event) == event, f"two different events with seqNo {event['seqNo']}"
    assert len(received) - len(by_seq) <= 1
    events = [by_seq[n] for n in sorted(by_seq)]
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Ended"]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {events[0]["transactionInfo"]["transactionId"]}
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3]  # one transaction upstream, contiguous
    final = events[-1]["meterValue"][-1]["sampledValue"][-1]
    assert final["value"] == 2000 and final["context"] == "Transaction.End"


async def test_a_newer_connection_on_another_replica_takes_over(
        bridge_factory: Any, csms: Any, identity: str, redis_url: str) -> None:
    replica_a = bridge_factory(state=redis_url)
    replica_b = bridge_factory(state=redis_url)
    async with charger(replica_a.ws_url(identity), identity) as first:
        await first.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        async with charger(replica_b.ws_url(identity), identity) as second:
            # The older session (on A) is closed by its replica once B has taken the charger over.
            assert await within(first.closed(timeout=10), 12) is not None
            await second.call(call16.Heartbeat())
            assert replica_a.health()["sessions"] == 0 and replica_b.health()["sessions"] == 1
    handshakes = await csms.handshakes_of(identity, 2)
    assert len(handshakes) == 2  # one upstream connection per live session, the old one closed

