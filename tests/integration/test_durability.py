"""Nothing lost (issue 4, docs/durability.md): CSMS outages, CSMS restarts, kill -9 and a failing store.

Real processes and sockets only: ``ocpp-bridge serve`` subprocesses between a CSMS and 1.6 chargers in the test
process. Every test here takes the ``store`` fixture, so each runs against every state-store backend listed in
``conftest.STORE_BACKENDS`` (SQLite today; Redis joins there). Waiting is always on what a peer received, with a
deadline; the only plain sleeps are the outage itself and the chargers' own pacing, which are the scenario.

Numbers worth reading in the output (``pytest -s``): the peak upstream reconnect rate after a CSMS restart with
500 chargers, and how many in-flight events the kill -9 loop saw delivered twice (allowed: at-least-once, an
identical repeat with the same seqNo).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call as c16

from .conftest import BridgeProcess, StoreBackend, free_port
from .peers import (
    TIMEOUT,
    LeanCsms,
    RawCharger16,
    charger,
    check_one_transaction,
    collapse_repeats,
    meter_readings,
    now,
    within,
)


def meter(value: int, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    return [{"timestamp": now(), "sampledValue": [{"value": str(value), "measurand": "Energy.Active.Import.Register",
                                                   "unit": "Wh", "context": context}]}]


def log_events(*processes: BridgeProcess) -> list[str]:
    return [line["event"] for process in processes for line in process.log_lines()]


# --- a: a 60 s CSMS outage mid-transaction ---------------------------------------------------------------------

OUTAGE = 60.0  # seconds; the one long test of the suite


async def test_csms_stopped_for_60_s_mid_transaction(bridge_factory, csms, store, identity):
    """The CSMS goes away for a minute while a transaction runs. The charger stays connected; its MeterValues,
    StopTransaction and StatusNotifications are acknowledged once stored, its Heartbeat is answered by the
    bridge's clock, a BootNotification gets Pending (never a made-up Accepted), Authorize gets the CSMS's own
    earlier decision. When the CSMS is back (reconnect back-off capped at 5 s here), it receives everything in
    order: the Updated and Ended events flagged offline, seqNo contiguous, the final meter value, and of the
    connector's statuses only the newest (coalesced)."""
    process = bridge_factory(state=store.state, env={"OCPP_BRIDGE_RECONNECT_MAX": "5"})
    async with charger(process.ws_url(identity), identity) as charge_point:
        boot = await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert boot.status == "Accepted"
        authorized = await charge_point.call(c16.Authorize(id_tag="OUTAGE-1"))
        assert authorized.id_tag_info["status"] == "Accepted"
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="OUTAGE-1", meter_start=100,
                                                               timestamp=now()))
        assert started.id_tag_info["status"] == "Accepted"
        local_id = started.transaction_id
        await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=meter(150)))
        online = await csms.transaction_events(identity, 3)  # Started, Updated (Charging), Updated (150)
        await charge_point.call(c16.Heartbeat())  # a round trip through the CSMS: every answer before it is in
        statuses_before = len(csms.received(identity, "StatusNotification"))

        await csms.stop()
        down_at = time.monotonic()

        async def at(second: float) -> None:  # the charger's own pacing through the outage
            await asyncio.sleep(max(0.0, down_at + second - time.monotonic()))

        acknowledged: list[int] = []
        for second, value in ((2, 200), (12, 300), (22, 400), (32, 500), (42, 600)):
            await at(second)
            await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=local_id,
                                                    meter_value=meter(value)))
            acknowledged.append(value)
            heartbeat = await charge_point.call(c16.Heartbeat())  # the bridge's clock
            moment = datetime.fromisoformat(heartbeat.current_time.replace("Z", "+00:00"))
            assert abs(moment - datetime.now(UTC)) < timedelta(seconds=5)
        await at(45)
        cached = await charge_point.call(c16.Authorize(id_tag="OUTAGE-1"))  # the CSMS's own earlier decision
        assert cached.id_tag_info["status"] == "Accepted"
        unknown = await charge_point.call(c16.Authorize(id_tag="NEVER-DECIDED"))  # no decision: the policy
        assert unknown.id_tag_info["status"] == "Invalid"
        await at(48)
        stopped = await charge_point.call(c16.StopTransaction(transaction_id=local_id, meter_stop=700,
                                                              timestamp=now(), reason="Local"))
        assert stopped is not None
        for status in ("Finishing", "Available"):
            await charge_point.call(c16.StatusNotification(connector_id=1, error_code="NoError", status=status))
        rebooted = await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert (rebooted.status, rebooted.interval) == ("Pending", 60)  # boot_retry_interval, not Accepted
        await at(OUTAGE)
        assert charge_point.ws.close_code is None, "the charger was disconnected during the outage"

        await csms.start()
        back_at = time.monotonic()
        events = await csms.until_ended(identity, timeout=30)
        await csms.wait_received(identity, "StatusNotification", statuses_before + 1, timeout=TIMEOUT)
        print(f"\nCSMS outage {back_at - down_at:.1f} s; events delivered "
              f"{time.monotonic() - back_at:.1f} s after it came back")
        assert charge_point.ws.close_code is None

    assert online == events[:3]
    events, repeats = collapse_repeats(events)
    assert repeats == 0, "nothing was in flight when the CSMS stopped: no repeat expected"
    check_one_transaction(events)
    offline = events[3:]
    assert [e["eventType"] for e in offline] == ["Updated"] * len(acknowledged) + ["Ended"]
    assert all(e.get("offline") is True for e in offline), [e.get("offline") for e in offline]
    assert not any("offline" in e for e in events[:3])
    assert [meter_readings(e) for e in offline[:-1]] == [[v] for v in acknowledged]  # every one, in order
    ended = offline[-1]
    assert meter_readings(ended)[-1] == 700
    assert ended["meterValue"][-1]["sampledValue"][0]["context"] == "Transaction.End"
    # The statuses of connector 1 sent during the outage were coalesced: only the newest is replayed.
    statuses = csms.received(identity, "StatusNotification")[statuses_before:]
    assert [s["connectorStatus"] for s in statuses] == ["Available"]
    assert len(csms.received(identity, "BootNotification")) == 1  # the Pending boot never reached the CSMS
    assert "outage.closing_charger" not in log_events(process)


async def test_outage_beyond_the_grace_window_closes_the_charger_and_keeps_its_queue(bridge_factory, csms, store,
                                                                                   identity):
    """After outage_grace (2 s here) of continuous outage the bridge falls back to the Local Controller rule: it
    closes the charger (1001) so the charger queues for itself. What the bridge had acknowledged stays stored
    and reaches the CSMS when the charger next connects."""
    process = bridge_factory(state=store.state, env={"OCPP_BRIDGE_OUTAGE_GRACE": "2"})
    async with charger(process.ws_url(identity), identity) as charge_point:
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="GRACE-1", meter_start=0,
                                                               timestamp=now()))
        await csms.transaction_events(identity, 1)
        await charge_point.call(c16.Heartbeat())  # the Started event's acceptance is recorded
        await csms.stop()
        down_at = time.monotonic()
        await charge_point.call(c16.MeterValues(connector_id=1, transaction_id=started.transaction_id,
                                                meter_value=meter(10)))
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=20,
                                                    timestamp=now()))
        assert await charge_point.closed(timeout=10) == 1001
        closed_after = time.monotonic() - down_at
    assert closed_after >= 1.9, f"closed {closed_after:.1f} s into the outage, before the grace window"
    assert "outage.closing_charger" in log_events(process)
    assert csms.received(identity, "TransactionEvent")[1:] == []

    await csms.start()
    async with charger(process.ws_url(identity), identity) as charge_point:  # the charger comes back
        events = await csms.until_ended(identity)
        assert charge_point.cp.received() == []
    assert [(e["eventType"], e["seqNo"], e.get("offline")) for e in events] == [
        ("Started", 0, None), ("Updated", 1, True), ("Ended", 2, True)]
    check_one_transaction(events)
    assert meter_readings(events[-1])[-1] == 20


# --- b: 500 chargers and a CSMS restart ------------------------------------------------------------------------

FLEET = 500
CSMS_DOWN = 3.0  # seconds between stopping the CSMS and starting it again


async def test_csms_restart_with_500_chargers(bridge_factory, store, new_identity):
    """A CSMS restart (every deploy) with 500 chargers connected. No charger socket is closed (the grace window
    is the default 600 s); every session dials the CSMS again by itself, with jittered exponential back-off,
    so the reconnects are spread out rather than all in the same instant; every upstream link comes back."""
    csms = await LeanCsms(free_port()).start()
    process = await asyncio.to_thread(bridge_factory, upstream=f"ws://127.0.0.1:{csms.port}/ocpp",
                                      state=store.state)
    chargers = [RawCharger16(process.ws_url(identity), identity) for identity in
                (new_identity() for _ in range(FLEET))]
    gate = asyncio.Semaphore(50)  # a fleet coming online, 50 handshakes at a time

    async def come_online(one: RawCharger16) -> None:
        async with gate:
            await one.connect(timeout=20)
        boot = await one.call("BootNotification", {"chargePointModel": "M", "chargePointVendor": "V"}, timeout=20)
        assert boot["status"] == "Accepted"

    try:
        await within(asyncio.gather(*(come_online(one) for one in chargers)), 120)
        assert len(csms.live) == FLEET

        await csms.stop()
        down_at = time.monotonic()
        # During the outage every charger is still served: its Heartbeat is answered by the bridge's clock.
        beats = await within(asyncio.gather(*(one.call("Heartbeat", {}, timeout=20) for one in chargers)), 30)
        assert all("currentTime" in beat for beat in beats)
        await asyncio.sleep(max(0.0, down_at + CSMS_DOWN - time.monotonic()))  # the outage itself
        await csms.start()
        restarted_at = time.monotonic()

        def all_back() -> bool:
            return len({identity for identity, moment in csms.connects if moment >= restarted_at}) == FLEET

        await csms.until(all_back, timeout=90)
        closed = [one.identity for one in chargers if not one.open]
        assert not closed, f"{len(closed)} charger sockets were closed, e.g. {closed[:3]}"
        # Every upstream link carries the charger's calls again.
        await within(asyncio.gather(*(one.call("Heartbeat", {}, timeout=20) for one in chargers)), 60)
        after = {identity for identity, action, at in csms.calls if action == "Heartbeat" and at >= restarted_at}
        assert len(after) == FLEET
        events = log_events(process)  # before the chargers hang up
    finally:
        for one in chargers:
            with contextlib.suppress(Exception):
                await one.close()
        await csms.stop()

    reconnects = sorted(moment - restarted_at for _, moment in csms.connects if moment >= restarted_at)
    buckets = collections.Counter(int(moment * 10) for moment in reconnects)  # 100 ms buckets
    peak_bucket, peak = buckets.most_common(1)[0]
    spread = reconnects[-1] - reconnects[0]
    print(f"\n{FLEET} upstream reconnects after a {CSMS_DOWN:g} s CSMS restart: first {reconnects[0]:.2f} s, "
          f"last {reconnects[-1]:.2f} s after it came back (spread {spread:.2f} s); peak {peak} reconnects per "
          f"100 ms (at +{peak_bucket / 10:.1f} s), {len(buckets)} buckets used")
    assert len(reconnects) == FLEET  # exactly one new link per charger: nobody dialled twice successfully
    assert spread > 1.0, "reconnects were not spread out: is the back-off jittered?"
    assert events.count("upstream.reconnected") == FLEET
    assert "outage.closing_charger" not in events and "session.closed" not in events


# --- c: kill -9 at random points -------------------------------------------------------------------------------

ROUNDS = 10  # bridge lives, each ended by kill -9
PER_ROUND = 5  # chargers running one transaction each per bridge life: 50 transactions, each hit by a kill
STEP = 0.1  # seconds between a charger's messages


async def test_kill_9_at_random_points_loses_and_duplicates_nothing(bridge_factory, csms, store, new_identity):
    """50 transactions; during each the bridge is killed with SIGKILL at a random point (Authorize, start,
    meter values, stop) and restarted on the same state. The chargers behave as 1.6 chargers do: reconnect and
    send the unanswered message again, same content, then carry on. The CSMS (answering TransactionEvents after
    a random 0-50 ms, so that events are in flight when the kill comes) must receive every transaction once:
    one transactionId per 1.6 transaction, one Started, at least one Updated, one Ended with the final meter
    value, seqNo contiguous from 0, every meter value the charger had acknowledged. The only repeat allowed is
    the identical re-delivery of an event in flight at the kill (same seqNo); they are counted and printed."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"\nkill -9 loop seed {seed}")

    async def slow_answer(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(rng.uniform(0, 0.05))
        return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}

    csms.answer("TransactionEvent", slow_answer)
    process = await asyncio.to_thread(bridge_factory, state=store.state)
    port = process.port
    chargers = [RawCharger16(process.ws_url(identity), identity) for identity in
                (new_identity() for _ in range(PER_ROUND))]
    # per charger: the transactions it ran, as it saw them
    expected: dict[str, list[dict[str, Any]]] = {one.identity: [] for one in chargers}
    sends: collections.Counter[str] = collections.Counter()

    async def one_transaction(one: RawCharger16, number: int, kill_at: float) -> None:
        meters = [number * 10_000 + 100 * (step + 1) for step in range(rng.randint(1, 3))]
        span = (len(meters) + 1) * STEP  # the pauses before each MeterValues and before the Stop
        await asyncio.sleep(rng.uniform(kill_at - span + 0.01, kill_at - 0.01))  # the kill falls inside this one
        connections = one.connections
        deadline = time.monotonic() + 60
        tag = f"TAG-{one.identity[-6:]}"
        answer, count = await one.call_until_answered("Authorize", {"idTag": tag}, deadline)
        sends["Authorize"] += count - 1
        assert answer["idTagInfo"]["status"] == "Accepted"
        start = {"connectorId": 1, "idTag": tag, "meterStart": number * 10_000, "timestamp": now()}
        answer, count = await one.call_until_answered("StartTransaction", start, deadline)
        sends["StartTransaction"] += count - 1
        assert answer["idTagInfo"]["status"] == "Accepted", answer  # never anything the CSMS did not decide
        local_id = answer["transactionId"]
        for value in meters:
            await asyncio.sleep(STEP)
            request = {"connectorId": 1, "transactionId": local_id, "meterValue": meter(value)}
            _, count = await one.call_until_answered("MeterValues", request, deadline)
            sends["MeterValues"] += count - 1
        await asyncio.sleep(STEP)
        stop = {"transactionId": local_id, "meterStop": number * 10_000 + 9_999, "timestamp": now(),
                "reason": "Local"}
        _, count = await one.call_until_answered("StopTransaction", stop, deadline)
        sends["StopTransaction"] += count - 1
        expected[one.identity].append({"local_id": local_id, "meter_start": start["meterStart"],
                                       "meters": meters, "meter_stop": stop["meterStop"],
                                       "hit": one.connections > connections})

    started_at = time.monotonic()
    try:
        for round_number in range(ROUNDS):
            kill_at = rng.uniform(0.5, 0.8)
            runs = [asyncio.create_task(one_transaction(one, round_number * PER_ROUND + index + 1, kill_at))
                    for index, one in enumerate(chargers)]
            await asyncio.sleep(kill_at)
            await asyncio.to_thread(process.kill)  # kill -9
            process = await asyncio.to_thread(bridge_factory, state=store.state, port=port)
            await within(asyncio.gather(*runs), 60)
        # The last events may still be on their way: wait until every Ended is in.
        for one in chargers:
            await csms.wait_received(one.identity, "TransactionEvent", ROUNDS, lambda e: e["eventType"] == "Ended",
                                     timeout=30)
    finally:
        for one in chargers:
            with contextlib.suppress(Exception):
                await one.close()
    elapsed = time.monotonic() - started_at

    total_repeats = 0
    for one in chargers:
        events, repeats = collapse_repeats(csms.received(one.identity, "TransactionEvent"))
        assert repeats <= ROUNDS, f"{one.identity}: {repeats} repeats, more than one per kill"
        total_repeats += repeats
        by_transaction: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_transaction.setdefault(event["transactionInfo"]["transactionId"], []).append(event)
        ran = expected[one.identity]
        assert len(ran) == ROUNDS
        assert len(by_transaction) == ROUNDS, (
            f"{one.identity}: {ROUNDS} 1.6 transactions became {len(by_transaction)} upstream")
        assert len({t["local_id"] for t in ran}) == ROUNDS  # and as many distinct 1.6 ids
        for (tx_id, tx_events), seen in zip(by_transaction.items(), ran, strict=True):
            check_one_transaction(tx_events)
            where = f"{one.identity} transaction {seen['local_id']} ({tx_id})"
            kinds = [e["eventType"] for e in tx_events]
            assert kinds == ["Started"] + ["Updated"] * len(seen["meters"]) + ["Ended"], (where, kinds)
            assert meter_readings(tx_events[0]) == [seen["meter_start"]], where
            assert [meter_readings(e) for e in tx_events[1:-1]] == [[v] for v in seen["meters"]], where
            assert meter_readings(tx_events[-1])[-1] == seen["meter_stop"], where
    errors = [frame for one in chargers for frame in one.errors]
    hit = sum(seen["hit"] for ran in expected.values() for seen in ran)
    print(f"kill -9 loop: {ROUNDS * PER_ROUND} transactions, {ROUNDS} kills, {elapsed:.1f} s; identical "
          f"re-deliveries of an in-flight event: {total_repeats}; charger re-sends after a kill: {dict(sends)}; "
          f"CALLERRORs: {len(errors)}; transactions whose charger had to reconnect: {hit}")
    assert not errors, errors[:3]
    assert hit == ROUNDS * PER_ROUND  # every transaction was cut by a kill


# --- d: the store refuses writes -------------------------------------------------------------------------------


@contextlib.contextmanager
def writes_refused(store: StoreBackend) -> Iterator[None]:
    """Make the store refuse the bridge's writes until the block ends.

    SQLite: a second connection holds the write lock (BEGIN EXCLUSIVE); the bridge's writes fail with
    "database is locked" after its busy_timeout (5 s). (Making the file read-only does not work as root.)
    Redis: CLIENT PAUSE WRITE holds every write (and key expiry) on the server; the bridge's writes fail when
    its client's socket timeout (5 s) runs out, as with an unreachable Redis.
    """
    if store.name == "sqlite":
        db = sqlite3.connect(store.state, isolation_level=None, timeout=1)
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
    elif store.name == "redis":
        import redis

        client = redis.Redis.from_url(str(store.state))
        client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
        try:
            yield
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
            client.close()
    else:
        pytest.skip(f"no write-failure injection for the {store.name} store yet")


async def test_store_refusing_writes_acknowledges_nothing_and_recovers_without_restart(bridge_factory, csms, store,
                                                                                       identity, request):
    """While the store refuses writes, the charger's MeterValues and StopTransaction get CALLERROR
    InternalError (so it retries) and a store.error is logged; once the store works again, the charger's retry
    (same content) is accepted, and the CSMS receives each event once. Same bridge process and same charger
    connection throughout."""
    process = bridge_factory(state=store.state)
    async with charger(process.ws_url(identity), identity) as charge_point:
        charge_point.cp._response_timeout = 30  # a locked SQLite write blocks for its busy_timeout (5 s)
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="STORE-1", meter_start=0,
                                                               timestamp=now()))
        local_id = started.transaction_id
        await csms.transaction_events(identity, 1)
        await charge_point.call(c16.Heartbeat())  # the Started event's acceptance is recorded

        reading = c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=meter(111))
        with writes_refused(store), pytest.raises(InternalError):
            await charge_point.call(reading, timeout=30)
        assert await charge_point.call(reading, timeout=30) is not None  # the retry, same content: {}
        updated = await csms.wait_received(identity, "TransactionEvent", 1, lambda e: e["eventType"] == "Updated")
        assert meter_readings(updated[0]) == [111]

        stop = c16.StopTransaction(transaction_id=local_id, meter_stop=222, timestamp=now(), reason="Local")
        with writes_refused(store), pytest.raises(InternalError):
            await charge_point.call(stop, timeout=30)
        await charge_point.call(stop, timeout=30)
        events = await csms.until_ended(identity, timeout=30)
        await charge_point.call(c16.Heartbeat())  # the session is healthy
        assert charge_point.ws.close_code is None

    assert process.alive()
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Updated", 1), ("Ended", 2)]
    check_one_transaction(events)
    assert meter_readings(events[1]) == [111]
    assert meter_readings(events[2])[-1] == 222
    lines = process.log_lines()
    errors = [line for line in lines if line["event"] == "store.error"]
    assert len(errors) >= 2, errors
    if store.name == "sqlite":
        assert all("locked" in line["error"] for line in errors), errors
    assert [line["event"] for line in lines].count("bridge.listening") == 1  # no restart
