"""Nothing lost (docs/durability.md, issue 4): the per-charger queue, CSMS outages, store failures, restarts.

What the charger is answered and when, what the CSMS receives and in which order, and what the store is asked to
keep, while the CSMS refuses, does not answer, or cannot be reached at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core import outbox
from ocpp_bridge.core.events import (
    CloseCharger,
    Emit,
    ExchangeDone,
    Persist,
    PersistFailed,
    SendToCharger,
    UpstreamConnected,
    UpstreamLost,
)
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerMeta, ChargerState, QueuedMessage, Record, TxRecord
from tests.playbook import T0, Frame, Playbook

TAG = "04A1B2C3"
START = {"connectorId": 1, "idTag": TAG, "meterStart": 1000, "timestamp": "2024-05-01T10:00:00Z"}


def _mv(local_id: int | None = None, minute: int = 15, value: str = "1500", connector: int = 1) -> dict[str, Any]:
    payload: dict[str, Any] = {"connectorId": connector, "meterValue": [
        {"timestamp": f"2024-05-01T10:{minute:02d}:00Z", "sampledValue": [{"value": value}]}]}
    if local_id is not None:
        payload["transactionId"] = local_id
    return payload


def _stop(local_id: int, **fields: Any) -> dict[str, Any]:
    return {"transactionId": local_id, "meterStop": 5000, "timestamp": "2024-05-01T11:00:00Z", **fields}


def _status(connector: int, status: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": status,
            "timestamp": "2024-05-01T10:00:00Z"}


def _lost(pb: Playbook) -> None:
    pb.feed(UpstreamLost(pb.now))


def _back(pb: Playbook) -> None:
    pb.feed(UpstreamConnected(pb.now))


def _authorize(pb: Playbook, id_tag: str, status: str, **info: Any) -> None:
    """The CSMS decides about ``id_tag`` while it is reachable (the bridge keeps the decision)."""
    uid = pb.charger_sends("Authorize", {"idTag": id_tag})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": status, **info}})
    assert pb.charger_receives_result(uid)["idTagInfo"]["status"] == status


def _offline_authorize(pb: Playbook, id_tag: str) -> dict[str, Any]:
    uid = pb.charger_sends("Authorize", {"idTag": id_tag})
    assert not pb.to_csms
    info: dict[str, Any] = pb.charger_receives_result(uid)["idTagInfo"]
    return info


def _answered(pb: Playbook, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send, and check the charger is answered at once (before the CSMS has answered anything)."""
    uid = pb.charger_sends(action, payload)
    return pb.charger_receives_result(uid)


def _deliver_all(pb: Playbook) -> list[Frame]:
    """Accept whatever the bridge sends the CSMS, one call at a time, until it stops; return those calls."""
    calls = []
    while pb.to_csms:
        assert len(pb.to_csms) == 1, "more than one message in flight"
        call = pb.to_csms.pop(0)
        assert call.type_id == 2, call.raw
        calls.append(call)
        pb.csms_answers(call, {})
    return calls


def _writes(pb: Playbook, since: int = 0) -> list[Persist]:
    return [c for c in pb.commands[since:] if isinstance(c, Persist)]


def _queued(records: tuple[Record, ...] | list[Record]) -> list[QueuedMessage]:
    return [r for r in records if isinstance(r, QueuedMessage) and not r.delivered]


def _closes(pb: Playbook) -> list[CloseCharger]:
    return [c for c in pb.commands if isinstance(c, CloseCharger)]


def _emitted(pb: Playbook, kind: str) -> list[dict[str, Any]]:
    return [e.fields for e in pb.emitted if e.kind == kind]


def _store(pb: Playbook, until: int | None = None) -> ChargerState:
    """What a store holds after applying the session's writes (up to command ``until``): a restart's view."""
    meta = ChargerMeta(pb.session.identity)
    transactions: dict[int, TxRecord] = {}
    queue: dict[int, QueuedMessage] = {}
    for write in [c for c in pb.commands[:until] if isinstance(c, Persist)]:
        for record in write.records:
            if isinstance(record, ChargerMeta):
                meta = record.snapshot()
            elif isinstance(record, TxRecord):
                transactions[record.local_id] = record.snapshot()
            elif record.delivered:
                queue.pop(record.seq, None)
            else:
                queue[record.seq] = record.snapshot()
    return ChargerState(meta, tuple(transactions.values()), tuple(sorted(queue.values(), key=lambda q: q.seq)))


# --- delivery: in order, one at a time, retried for ever ---------------------------------------------------


def test_queued_messages_are_delivered_strictly_in_order_one_at_a_time() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    assert _answered(pb, "MeterValues", _mv(local_id, 15)) == {}
    assert _answered(pb, "StatusNotification", _status(2, "Unavailable")) == {}
    assert _answered(pb, "MeterValues", _mv(local_id, 30)) == {}
    assert _answered(pb, "StopTransaction", _stop(local_id)) == {}
    assert len(pb.session.outbox) == 4  # all four answered, the CSMS has accepted none of them yet
    delivered = [(c.action, c.payload.get("eventType"), c.payload.get("seqNo")) for c in _deliver_all(pb)]
    assert delivered == [("TransactionEvent", "Updated", 1), ("StatusNotification", None, None),
                         ("TransactionEvent", "Updated", 2), ("TransactionEvent", "Ended", 3)]
    assert not pb.session.outbox.items
    # every acceptance is recorded: the store deletes exactly what the CSMS accepted, and nothing else
    assert {r.seq for r in pb.persisted if isinstance(r, QueuedMessage) and r.delivered} == \
        {r.seq for r in pb.persisted if isinstance(r, QueuedMessage)}
    pb.nothing_pending()


def test_a_failing_message_holds_back_everything_queued_behind_it() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    _answered(pb, "MeterValues", _mv(local_id, 15))
    head = pb.csms_receives("TransactionEvent")
    _answered(pb, "MeterValues", _mv(local_id, 30))
    _answered(pb, "StatusNotification", _status(1, "Charging"))
    pb.csms_fails(head, "GenericError")
    pb.advance(CoreSettings().retry_delay(1) - 1)
    assert not pb.to_csms  # nothing overtakes the message backing off
    pb.advance(1)
    again = pb.csms_receives("TransactionEvent")
    assert again.payload == head.payload
    pb.csms_answers(again, {})
    assert [c.payload.get("seqNo") for c in _deliver_all(pb)] == [2, None, 3]


def test_retry_back_off_doubles_up_to_retry_max_and_never_gives_up() -> None:
    settings = CoreSettings(retry_interval=10.0, retry_max=60.0)
    pb = Playbook.translated(settings=settings)
    _answered(pb, "MeterValues", _mv())
    call = pb.csms_receives("MeterValues")
    _answered(pb, "StatusNotification", _status(1, "Available"))  # queued behind it
    delays = []
    for attempt in range(1, 10):
        if attempt % 3 == 0:
            pb.advance(settings.call_timeout)  # no answer at all is a failure too
        else:
            pb.csms_fails(call, "InternalError" if attempt % 2 else "FormatViolation")
        retry = _emitted(pb, "queue.retry")[-1]
        assert (retry["action"], retry["attempts"]) == ("MeterValues", attempt)
        delays.append(retry["delay"])
        assert not pb.to_charger  # the charger was answered long ago and hears nothing of this
        pb.advance(retry["delay"] - 0.5)
        assert not pb.to_csms
        pb.advance(0.5)
        again = pb.csms_receives("MeterValues")
        assert again.payload == call.payload
        assert again.unique_id != call.unique_id
        call = again
    assert delays == [10, 20, 40, 60, 60, 60, 60, 60, 60]
    # the attempt count is stored with the message (a restart continues the back-off), the message is kept
    stored = [r for r in pb.persisted if isinstance(r, QueuedMessage) and r.action == "MeterValues"][-1]
    assert (stored.attempts, stored.delivered) == (9, False)
    pb.csms_answers(call, {})
    assert pb.csms_receives("StatusNotification").payload["connectorStatus"] == "Available"


def test_a_growing_queue_is_reported_at_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "QUEUE_ALERT_STEP", 3)
    pb = Playbook.translated()
    _lost(pb)
    for connector in range(1, 8):
        pb.advance(10)
        _answered(pb, "StatusNotification", _status(connector, "Available"))
    growing = _emitted(pb, "queue.growing")
    assert [(g["depth"], g["oldest_age"]) for g in growing] == [(3, 20.0), (6, 50.0)]


def test_default_back_off_is_message_attempt_interval_doubling_to_five_minutes() -> None:
    settings = CoreSettings()
    assert [settings.retry_delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 300, 300, 300]


def test_one_charger_message_is_one_store_write_before_the_answer_and_before_any_send() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    mark = len(pb.commands)
    uid = pb.charger_sends("MeterValues", _mv(local_id))
    commands = pb.commands[mark:]
    kinds = [type(c).__name__ for c in commands if not isinstance(c, Emit | ExchangeDone)]
    assert kinds[:3] == ["Persist", "SendToCharger", "SendToCsms"]
    (write,) = _writes(pb, mark)
    tx = next(r for r in write.records if isinstance(r, TxRecord))
    assert (tx.last_answer, tx.seq_no) == ({}, 2)  # the answer the charger gets, and the spent seqNo
    assert [q.payload["seqNo"] for q in _queued(write.records)] == [1]
    assert write.wait  # the charger's answer depends on it
    assert pb.charger_receives_result(uid) == {}


def test_a_delivery_is_written_behind_and_nothing_waits_for_it() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", _mv(local_id))
    event = pb.csms_receives("TransactionEvent")
    mark = len(pb.commands)
    pb.csms_answers(event, {})
    (delivered,) = _writes(pb, mark)
    assert not delivered.wait and [(q.delivered, q.payload["seqNo"]) for q in delivered.records] == [(True, 1)]
    # a delivery the store refused rides along with the next write, which is waited for as usual
    pb.feed(PersistFailed(pb.now, delivered.records))
    mark = len(pb.commands)
    pb.charger_sends("MeterValues", _mv(local_id, 16))
    (write,) = _writes(pb, mark)
    assert write.wait and [(q.seq, q.delivered) for q in write.records if isinstance(q, QueuedMessage)] == [
        (delivered.records[0].seq, True), (delivered.records[0].seq + 1, False)]


# --- a crash at any moment ---------------------------------------------------------------------------------


def test_a_crash_after_the_write_before_the_answer_neither_loses_nor_duplicates() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    uid = pb.charger_sends("MeterValues", _mv(local_id))
    answer_at = next(i for i, c in enumerate(pb.commands) if isinstance(c, SendToCharger) and f'"{uid}"' in c.text)
    # kill -9 right after the write, before the answer left: the charger retries on the restarted bridge
    restarted = Playbook.translated(state=_store(pb, until=answer_at))
    assert "queue.replay" in restarted.emitted_kinds()
    retry = restarted.charger_sends("MeterValues", _mv(local_id))
    assert restarted.charger_receives_result(retry) == {}
    assert [(c.payload["eventType"], c.payload["seqNo"]) for c in _deliver_all(restarted)] == [("Updated", 1)]
    assert not restarted.session.outbox.items


@pytest.mark.parametrize("csms_says", ["Accepted", "Blocked"])
def test_a_start_repeated_after_a_crash_gets_the_csms_answer_to_the_replayed_started(csms_says: str) -> None:
    pb = Playbook.translated()
    pb.charger_sends("StartTransaction", START)  # a token the CSMS never decided about before
    started = pb.csms_receives("TransactionEvent")  # the bridge dies before the CSMS answers
    restarted = Playbook.translated(state=_store(pb))
    replayed = restarted.csms_receives("TransactionEvent")
    assert replayed.payload == started.payload  # identical, same seqNo: the CSMS can tell it is a repeat
    retry = restarted.charger_sends("StartTransaction", START)
    assert not restarted.to_charger  # the CSMS is reachable and may still answer: its answer decides
    restarted.csms_answers(replayed, {"idTokenInfo": {"status": csms_says}})
    assert restarted.charger_receives_result(retry) == {"transactionId": 1, "idTagInfo": {"status": csms_says}}
    restarted.nothing_pending()  # no second Started, and nothing to stop: the charger was told what the CSMS said


def test_a_start_repeated_after_a_crash_is_answered_from_the_cache_if_the_csms_stays_silent() -> None:
    pb = Playbook.translated()
    _authorize(pb, TAG, "Accepted")
    pb.charger_sends("StartTransaction", START)
    pb.csms_receives("TransactionEvent")
    restarted = Playbook.translated(state=_store(pb))
    replayed = restarted.csms_receives("TransactionEvent")
    restarted.advance(5)
    retry = restarted.charger_sends("StartTransaction", START)
    restarted.advance(CoreSettings().call_timeout - 5)  # the replayed Started times out
    assert restarted.charger_receives_result(retry) == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    restarted.advance(CoreSettings().retry_delay(1))
    assert restarted.csms_receives("TransactionEvent").payload == replayed.payload  # still owed, still sent


def test_a_start_repeated_after_a_crash_while_the_csms_is_unreachable_is_answered_at_once() -> None:
    pb = Playbook.translated()
    _authorize(pb, TAG, "Blocked")
    pb.charger_sends("StartTransaction", START)
    pb.csms_receives("TransactionEvent")
    restarted = Playbook.translated(state=_store(pb))
    restarted.to_csms.clear()  # the replay went out just before the link dropped
    _lost(restarted)
    retry = restarted.charger_sends("StartTransaction", START)
    assert restarted.charger_receives_result(retry) == {"transactionId": 1, "idTagInfo": {"status": "Blocked"}}


def test_a_restored_queue_is_replayed_in_seq_order_when_the_session_starts() -> None:
    def event(seq_no: int, kind: str, minute: int) -> dict[str, Any]:
        return {"eventType": kind, "timestamp": f"2024-05-01T10:{minute:02d}:00.000Z", "seqNo": seq_no,
                "triggerReason": "MeterValuePeriodic" if kind == "Updated" else "StopAuthorized",
                "transactionInfo": {"transactionId": "tx-12"},
                "meterValue": [{"timestamp": f"2024-05-01T10:{minute:02d}:00.000Z", "sampledValue": [{"value": 9}]}]}

    status = {"timestamp": "2024-05-01T10:20:00.000Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
    readings = {"evseId": 0, "meterValue": [{"timestamp": "2024-05-01T09:00:00.000Z",
                                             "sampledValue": [{"value": 1}]}]}
    record = TxRecord(identity="CP-1", local_id=12, tx_id="tx-12", connector_id=1, evse_id=1, evse_connector_id=1,
                      id_token=TAG, id_token_type="ISO14443", meter_start=0, started_at="2024-05-01T10:00:00.000Z",
                      start_hash="h", seq_no=3, ended=True)
    queue = (
        QueuedMessage("CP-1", 6, "TransactionEvent", event(2, "Ended", 30), T0 - 50, local_id=12),
        QueuedMessage("CP-1", 4, "TransactionEvent", event(1, "Updated", 15), T0 - 100, local_id=12, attempts=3),
        QueuedMessage("CP-1", 5, "StatusNotification", status, T0 - 80, key="status:1"),
        QueuedMessage("CP-1", 3, "MeterValues", readings, T0 - 120, delivered=True),  # accepted already
        QueuedMessage("CP-2", 2, "MeterValues", readings, T0 - 200),  # another charger's: never sent from here
    )
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1", next_queue_seq=7), (record,), queue))
    assert _emitted(pb, "queue.replay")[-1]["depth"] == 3
    calls = _deliver_all(pb)
    assert [c.payload for c in calls] == [queue[1].payload, queue[2].payload, queue[0].payload]
    assert [r.seq for r in pb.persisted if isinstance(r, QueuedMessage) and r.delivered] == [4, 5, 6]
    _answered(pb, "StatusNotification", _status(1, "Available"))
    assert [r.seq for r in pb.persisted if isinstance(r, QueuedMessage) and not r.delivered] == [7]


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_a_charger_retrying_after_a_lost_answer_gets_the_same_answer_and_nothing_is_queued(offline: bool) -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    if offline:
        _lost(pb)
    for action, payload in (("MeterValues", _mv(local_id)), ("StopTransaction", _stop(local_id, idTag=TAG))):
        first = _answered(pb, action, payload)
        mark, depth = len(pb.commands), len(pb.session.outbox)
        assert _answered(pb, action, payload) == first  # the same request again, under a new messageId
        assert not [q for w in _writes(pb, mark) for q in _queued(w.records)]
        assert len(pb.session.outbox) == depth
    assert _emitted(pb, "transaction.retry_answered")
    if offline:
        _back(pb)
    events = [(c.payload["eventType"], c.payload["seqNo"]) for c in _deliver_all(pb)]
    assert events == [("Updated", 1), ("Ended", 2)]  # one Updated, one Ended: never a second Ended
    pb.nothing_pending()


# --- CSMS outages: what the charger is answered -------------------------------------------------------------


def test_heartbeat_during_an_outage_is_answered_with_the_bridge_clock() -> None:
    pb = Playbook.translated()
    pb.advance(90.5)
    _lost(pb)
    assert _emitted(pb, "upstream.lost")
    assert _answered(pb, "Heartbeat", {}) == {"currentTime": "2023-11-14T22:14:50.500Z"}  # T0 + 90.5 s
    pb.nothing_pending()


def test_a_heartbeat_in_flight_when_the_link_drops_is_answered_with_the_bridge_clock() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_receives("Heartbeat")
    pb.advance(2)
    _lost(pb)
    assert pb.charger_receives_result(uid) == {"currentTime": "2023-11-14T22:13:22.000Z"}


def test_boot_during_an_outage_is_pending_never_a_fabricated_acceptance() -> None:
    meta = ChargerMeta("CP-1", boot_reason="RemoteReset")
    pb = Playbook.translated(settings=CoreSettings(boot_retry_interval=45), state=ChargerState(meta))
    _lost(pb)
    answer = _answered(pb, "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert answer == {"status": "Pending", "currentTime": "2023-11-14T22:13:20.000Z", "interval": 45}
    pb.nothing_pending()
    assert pb.session.meta.boot_reason == "RemoteReset"  # still owed to the CSMS with the real BootNotification
    _back(pb)
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "RemoteReset"


@pytest.mark.parametrize(("accept_unknown", "unknown"), [(False, "Invalid"), (True, "Accepted")])
def test_authorize_during_an_outage_uses_only_the_csms_own_decisions(accept_unknown: bool, unknown: str) -> None:
    pb = Playbook.translated(settings=CoreSettings(accept_unknown_tokens=accept_unknown))
    _authorize(pb, TAG, "Accepted")
    _authorize(pb, "04D4E5F6", "Blocked")
    _lost(pb)
    assert _offline_authorize(pb, TAG) == {"status": "Accepted"}
    assert _offline_authorize(pb, "04D4E5F6") == {"status": "Blocked"}  # whatever the policy for unknown tokens
    assert _offline_authorize(pb, "04FFFFFF") == {"status": unknown}
    assert [f["status"] for f in _emitted(pb, "auth.offline_cached")] == ["Accepted", "Blocked"]
    assert [f["status"] for f in _emitted(pb, "auth.offline_unknown")] == [unknown]
    pb.nothing_pending()


def test_a_cached_decision_is_used_only_until_the_expiry_the_csms_gave() -> None:
    pb = Playbook.translated(settings=CoreSettings(auth_cache_ttl=100.0))
    _authorize(pb, TAG, "Accepted", cacheExpiryDateTime="2023-11-14T23:13:20Z")  # T0 + 1 h
    _authorize(pb, "04D4E5F6", "Accepted")  # no expiry given: auth_cache_ttl
    _lost(pb)
    pb.advance(99)
    assert _offline_authorize(pb, TAG)["status"] == "Accepted"
    assert _offline_authorize(pb, "04D4E5F6")["status"] == "Accepted"
    pb.advance(2)
    assert _offline_authorize(pb, "04D4E5F6")["status"] == "Invalid"
    pb.advance(3500)
    assert _offline_authorize(pb, TAG)["status"] == "Invalid"


@pytest.mark.parametrize(("decided", "told"), [(None, "Invalid"), ("Accepted", "Accepted"), ("Blocked", "Blocked")])
def test_start_during_an_outage_is_answered_at_once_from_the_cache(decided: str | None, told: str) -> None:
    pb = Playbook.translated()
    if decided is not None:
        _authorize(pb, TAG, decided)
    _lost(pb)
    assert _answered(pb, "StartTransaction", START) == {"transactionId": 1, "idTagInfo": {"status": told}}
    assert [q.payload["eventType"] for q in pb.session.outbox.items] == ["Started"]
    _back(pb)
    started = pb.csms_receives("TransactionEvent")
    assert started.payload["offline"] is True
    assert started.payload["seqNo"] == 0
    pb.csms_answers(started, {"idTokenInfo": {"status": told}})
    pb.nothing_pending()  # the CSMS agrees with what the charger was told: nothing to undo


def test_start_requested_by_the_csms_is_accepted_during_an_outage() -> None:
    pb = Playbook.translated()
    request = pb.csms_sends("RequestStartTransaction", {"idToken": {"idToken": TAG, "type": "ISO14443"},
                                                         "remoteStartId": 7, "evseId": 1})
    pb.charger_answers(pb.charger_receives("RemoteStartTransaction"), {"status": "Accepted"})
    assert pb.csms_receives_result(request)["status"] == "Accepted"
    _lost(pb)
    assert _answered(pb, "StartTransaction", START)["idTagInfo"] == {"status": "Accepted"}
    _back(pb)
    started = pb.csms_receives("TransactionEvent")
    assert (started.payload["triggerReason"], started.payload["transactionInfo"]["remoteStartId"]) == (
        "RemoteStart", 7)


def test_data_transfer_during_an_outage_is_a_callerror_the_charger_retries() -> None:
    pb = Playbook.translated()
    _lost(pb)
    uid = pb.charger_sends("DataTransfer", {"vendorId": "com.acme", "data": "x"})
    error = pb.charger_receives_error("GenericError", uid)
    assert "unreachable" in error.raw[3]
    pb.nothing_pending()


# --- CSMS outages: what the CSMS receives afterwards ------------------------------------------------------------


def test_events_produced_during_an_outage_carry_offline_and_contiguous_seq_no_and_replay_in_order() -> None:
    pb = Playbook.translated()
    local_id, tx_id = pb.start()  # seqNo 0, delivered
    _answered(pb, "MeterValues", _mv(local_id, 15))  # produced while the CSMS was reachable ...
    in_flight = pb.csms_receives("TransactionEvent")  # ... and in flight when the link drops
    _lost(pb)
    assert _answered(pb, "StatusNotification", _status(1, "Charging")) == {}
    assert _answered(pb, "MeterValues", _mv(local_id, 30)) == {}
    assert _answered(pb, "StopTransaction", _stop(local_id, reason="Local", idTag=TAG)) == {}
    pb.nothing_pending()  # nothing reaches a CSMS that is not there
    _back(pb)
    assert _emitted(pb, "upstream.restored")[-1]["queue"] == 5
    calls = _deliver_all(pb)
    assert calls[0].payload == in_flight.payload
    assert [(c.action, c.payload.get("eventType"), c.payload.get("seqNo"), c.payload.get("offline"))
            for c in calls] == [
        ("TransactionEvent", "Updated", 1, None),  # E12: offline only for what was produced offline
        ("StatusNotification", None, None, None),
        ("TransactionEvent", "Updated", 2, True),  # ChargingStateChanged
        ("TransactionEvent", "Updated", 3, True),
        ("TransactionEvent", "Ended", 4, True),
    ]
    assert {c.payload["transactionInfo"]["transactionId"] for c in calls if c.action == "TransactionEvent"} == {
        tx_id}
    pb.nothing_pending()


def test_statuses_queued_during_an_outage_are_coalesced_per_connector() -> None:
    pb = Playbook.translated()
    _lost(pb)
    for connector, status in [(1, "Available"), (2, "Available"), (1, "Unavailable"), (2, "Reserved"),
                              (1, "Preparing")]:
        assert _answered(pb, "StatusNotification", _status(connector, status)) == {}
    assert len(pb.session.outbox) == 2
    superseded = [r for r in pb.persisted if isinstance(r, QueuedMessage) and r.delivered]
    assert len(superseded) == 3  # removed from the store: replaced by a newer status, not lost
    _back(pb)
    assert [(c.payload["evseId"], c.payload["connectorStatus"]) for c in _deliver_all(pb)] == [
        (2, "Reserved"), (1, "Occupied")]


def test_a_status_being_delivered_is_not_replaced_only_the_ones_waiting() -> None:
    pb = Playbook.translated()
    _answered(pb, "StatusNotification", _status(1, "Available"))
    in_flight = pb.csms_receives("StatusNotification")
    _answered(pb, "StatusNotification", _status(1, "Preparing"))
    _answered(pb, "StatusNotification", _status(1, "Unavailable"))
    removed = [r.seq for r in pb.persisted if isinstance(r, QueuedMessage) and r.delivered]
    assert removed == [2]  # the waiting Preparing; the one in flight stays until the CSMS accepts it
    pb.csms_answers(in_flight, {})
    assert [c.payload["connectorStatus"] for c in _deliver_all(pb)] == ["Unavailable"]
    assert "bug" not in pb.emitted_kinds()


def test_a_message_in_flight_when_the_link_drops_is_sent_again_without_counting_an_attempt() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    _answered(pb, "MeterValues", _mv(local_id))
    call = pb.csms_receives("TransactionEvent")
    _lost(pb)
    assert not _emitted(pb, "queue.retry")
    assert pb.session.outbox.items[0].attempts == 0
    pb.advance(120)
    assert not pb.to_csms
    _back(pb)
    again = pb.csms_receives("TransactionEvent")  # at once: no back-off after a reconnect
    assert again.payload == call.payload
    assert again.unique_id != call.unique_id
    pb.csms_answers(again, {})
    pb.nothing_pending()
    assert not pb.session.outbox.items


def test_a_retry_backing_off_when_the_link_drops_is_sent_at_once_after_reconnect() -> None:
    pb = Playbook.translated()
    _answered(pb, "MeterValues", _mv())
    call = pb.csms_receives("MeterValues")
    pb.csms_fails(call, "InternalError")
    _lost(pb)
    _back(pb)
    assert pb.csms_receives("MeterValues").payload == call.payload
    assert pb.session.outbox.items[0].attempts == 1


# --- the CSMS's late decision about a start the charger was told it may run --------------------------------


@pytest.mark.parametrize("how", ["offline", "timeout", "callerror"])
def test_a_start_the_csms_refuses_later_is_stopped_on_the_charger(how: str) -> None:
    pb = Playbook.translated()
    _authorize(pb, TAG, "Accepted")
    if how == "offline":
        _lost(pb)
    uid = pb.charger_sends("StartTransaction", START)
    if how == "timeout":
        started = pb.csms_receives("TransactionEvent")
        pb.advance(CoreSettings().call_timeout)
    elif how == "callerror":
        pb.csms_fails(pb.csms_receives("TransactionEvent"), "InternalError")
    assert pb.charger_receives_result(uid) == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    if how == "offline":
        _back(pb)
    else:
        pb.advance(CoreSettings().retry_delay(1))
    started = pb.csms_receives("TransactionEvent")
    pb.csms_answers(started, {"idTokenInfo": {"status": "Blocked"}})
    stop = pb.charger_receives("RemoteStopTransaction")
    assert stop.payload == {"transactionId": 1}  # the charger's own (1.6) id
    deauthorized = _emitted(pb, "transaction.deauthorized")[-1]
    assert (deauthorized["local_id"], deauthorized["status"]) == (1, "Blocked")
    pb.charger_answers(stop, {"status": "Accepted"})
    assert _emitted(pb, "transaction.remote_stop_sent")[-1]["accepted"] is True
    pb.nothing_pending()
    # the CSMS's newer decision replaces the cached one
    _lost(pb)
    assert _offline_authorize(pb, TAG) == {"status": "Blocked"}
    # the charger ends the transaction as told: one Ended, delivered when the CSMS is back
    assert _answered(pb, "StopTransaction", _stop(1, reason="DeAuthorized")) == {}
    _back(pb)
    ended = pb.csms_receives("TransactionEvent")
    assert (ended.payload["eventType"], ended.payload["transactionInfo"]["stoppedReason"]) == ("Ended",
                                                                                               "DeAuthorized")


def test_a_refusal_of_a_start_the_charger_was_refused_too_needs_no_stop() -> None:
    pb = Playbook.translated()
    _lost(pb)
    assert _answered(pb, "StartTransaction", START)["idTagInfo"] == {"status": "Invalid"}
    _back(pb)
    pb.csms_answers(pb.csms_receives("TransactionEvent"), {"idTokenInfo": {"status": "Blocked"}})
    pb.nothing_pending()
    assert not _emitted(pb, "transaction.deauthorized")


# --- giving up on the CSMS: the Local Controller rule ---------------------------------------------------------


def test_after_the_grace_window_the_charger_is_closed_and_its_queue_kept() -> None:
    pb = Playbook.translated(settings=CoreSettings(outage_grace=600.0))
    local_id, _ = pb.start()
    _lost(pb)
    _answered(pb, "MeterValues", _mv(local_id))
    pb.advance(599)
    assert not _closes(pb)
    pb.advance(1)
    assert [(c.code, c.reason) for c in _closes(pb)] == [
        (1001, "CSMS unreachable for longer than the grace window")]
    assert _emitted(pb, "outage.closing_charger")[-1]["queue"] == 1
    assert [q.payload["eventType"] for q in pb.session.outbox.items] == ["Updated"]  # kept for the next session
    assert not [r for r in pb.persisted if isinstance(r, QueuedMessage) and r.delivered and r.local_id == local_id
                and r.payload["eventType"] == "Updated"]


def test_a_csms_back_within_the_grace_window_keeps_the_charger() -> None:
    pb = Playbook.translated()
    _lost(pb)
    pb.advance(300)
    _back(pb)
    pb.advance(600)
    _lost(pb)  # a new outage starts a new grace window
    pb.advance(599)
    assert not _closes(pb)
    pb.advance(1)
    assert len(_closes(pb)) == 1


def test_outage_mode_close_closes_the_charger_at_once() -> None:
    pb = Playbook.translated(settings=CoreSettings(outage_mode="close"))
    local_id, _ = pb.start()
    _answered(pb, "MeterValues", _mv(local_id))
    pb.csms_receives("TransactionEvent")
    _lost(pb)
    assert [c.code for c in _closes(pb)] == [1001]
    assert len(pb.session.outbox) == 1  # the queue stays stored


def test_a_queue_beyond_max_queue_during_an_outage_closes_the_charger() -> None:
    pb = Playbook.translated(settings=CoreSettings(max_queue=3))
    _lost(pb)
    for connector in (1, 2, 3):
        _answered(pb, "StatusNotification", _status(connector, "Available"))
    pb.advance(0)
    assert not _closes(pb)
    mark = len(pb.commands)
    assert _answered(pb, "StatusNotification", _status(4, "Available")) == {}  # stored, so acknowledged
    pb.advance(0)
    closes = [i for i, c in enumerate(pb.commands) if isinstance(c, CloseCharger)]
    answers = [i for i, c in enumerate(pb.commands) if isinstance(c, SendToCharger)]
    assert len(closes) == 1
    assert mark < answers[-1] < closes[0]  # after the answer
    assert pb.commands[closes[0]] == CloseCharger(1001, "more than 3 messages queued")
    assert len(pb.session.outbox) == 4


def test_a_long_queue_while_the_csms_is_reachable_does_not_close_the_charger() -> None:
    pb = Playbook.translated(settings=CoreSettings(max_queue=2))
    for connector in (1, 2, 3, 4):
        _answered(pb, "StatusNotification", _status(connector, "Available"))
    pb.advance(1)
    assert not _closes(pb)
    assert len(_deliver_all(pb)) == 4


# --- store failures ----------------------------------------------------------------------------------------------


def test_records_the_store_refused_go_again_with_the_next_write_in_their_current_version() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    _lost(pb)
    mark = len(pb.commands)
    _answered(pb, "MeterValues", _mv(local_id, 15))
    (refused,) = _writes(pb, mark)
    (first,) = _queued(refused.records)
    mark = len(pb.commands)
    pb.feed(PersistFailed(pb.now, refused.records))
    assert not _writes(pb, mark)  # kept for the next write, not retried in a loop
    _answered(pb, "MeterValues", _mv(local_id, 30))
    (write,) = _writes(pb, mark)
    tx = [r for r in write.records if isinstance(r, TxRecord)]
    meta = [r for r in write.records if isinstance(r, ChargerMeta)]
    assert [(r.local_id, r.seq_no) for r in tx] == [(local_id, 3)]  # the current version, not the refused one
    assert meta == []  # a MeterValues writes no charger record: the queue counter is rebuilt at load
    assert [q.seq for q in _queued(write.records)] == [first.seq, first.seq + 1]
    mark = len(pb.commands)
    _answered(pb, "MeterValues", _mv(local_id, 45))
    (write,) = _writes(pb, mark)
    assert [q.seq for q in _queued(write.records)] == [first.seq + 2]  # written once: not carried along any more


def test_after_a_refused_write_the_charger_retry_is_recognised_and_the_records_written_again() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    mark = len(pb.commands)
    payload = _mv(local_id)
    pb.charger_sends("MeterValues", payload)  # the shell turns this answer into a CALLERROR: nothing stored
    (refused,) = _writes(pb, mark)
    pb.feed(PersistFailed(pb.now, refused.records))
    pb.to_charger.clear()
    mark = len(pb.commands)
    assert _answered(pb, "MeterValues", payload) == {}  # the store works again: the retry is answered ...
    (write,) = _writes(pb, mark)
    assert {type(r).__name__ for r in write.records} == {"TxRecord", "QueuedMessage"}
    assert [q.payload["seqNo"] for q in _queued(write.records)] == [1]  # ... with the refused write, once
    assert len(pb.session.outbox) == 1  # the event, still in flight from the first attempt
    assert [c.payload["seqNo"] for c in _deliver_all(pb)] == [1]


def test_a_refused_acceptance_record_is_written_again_as_delivered() -> None:
    pb = Playbook.translated()
    _answered(pb, "MeterValues", _mv())
    call = pb.csms_receives("MeterValues")
    mark = len(pb.commands)
    pb.csms_answers(call, {})
    (refused,) = _writes(pb, mark)
    pb.feed(PersistFailed(pb.now, refused.records))
    mark = len(pb.commands)
    _answered(pb, "StatusNotification", _status(1, "Available"))
    (write,) = _writes(pb, mark)
    again = [r for r in write.records if isinstance(r, QueuedMessage) and r.action == "MeterValues"]
    assert [(r.seq, r.delivered) for r in again] == [(1, True)]  # deleted from the store, never sent twice


# --- upstream protocol ------------------------------------------------------------------------------------------


def test_the_queue_works_the_same_toward_a_2_1_csms() -> None:
    pb = Playbook.translated(Version.V21)
    local_id, _ = pb.start()
    _lost(pb)
    _answered(pb, "StopTransaction", _stop(local_id))
    _back(pb)
    ended = pb.csms_receives("TransactionEvent")
    assert (ended.payload["eventType"], ended.payload["seqNo"], ended.payload["offline"]) == ("Ended", 1, True)
    pb.csms_fails(ended, "InternalError")
    pb.advance(CoreSettings().retry_delay(1))
    assert pb.csms_receives("TransactionEvent").payload == ended.payload


def test_a_status_report_the_csms_does_not_support_cannot_block_transaction_data() -> None:
    from ocpp_bridge.core.outbox import PERMANENT_ATTEMPTS

    pb = Playbook.translated()
    pb.boot()
    pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted"})
    pb.charger_receives_result()
    status = pb.csms_receives("StatusNotification")
    pb.csms_answers(status, {})
    notify = pb.csms_receives("NotifyEvent")
    uid = pb.charger_sends("MeterValues", {"connectorId": 0, "meterValue": [
        {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": "7"}]}]})
    assert pb.charger_receives_result(uid) == {}
    for attempt in range(1, PERMANENT_ATTEMPTS + 1):
        pb.csms_fails(notify, "NotSupported", "no NotifyEvent here")
        if attempt < PERMANENT_ATTEMPTS:
            pb.advance(pb.session.settings.retry_delay(attempt))
            notify = pb.csms_receives("NotifyEvent")
    assert "queue.refused" in pb.emitted_kinds()
    meter = pb.csms_receives("MeterValues")  # the money behind it moves on
    assert meter.payload["meterValue"][0]["sampledValue"][0]["value"] == 7


def test_transaction_data_is_never_set_aside_whatever_the_csms_answers() -> None:
    from ocpp_bridge.core.outbox import PERMANENT_ATTEMPTS

    pb = Playbook.translated()
    pb.boot()
    uid = pb.charger_sends("MeterValues", {"connectorId": 0, "meterValue": [
        {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": "7"}]}]})
    pb.charger_receives_result(uid)
    meter = pb.csms_receives("MeterValues")
    for attempt in range(1, PERMANENT_ATTEMPTS + 3):
        pb.csms_fails(meter, "NotSupported")
        pb.advance(pb.session.settings.retry_delay(attempt))
        meter = pb.csms_receives("MeterValues")  # sent again, every time
    assert "queue.refused" not in pb.emitted_kinds()


def test_queue_numbers_after_a_restart_follow_the_highest_stored_message() -> None:
    """The counter is not written with each queued message; the stored queue itself says where to go on."""
    pb = Playbook.translated()
    local_id, _ = pb.start()
    _lost(pb)
    for minute in (15, 30, 45):
        _answered(pb, "MeterValues", _mv(local_id, minute))
    written = {q.seq: q for command in pb.commands if isinstance(command, Persist)
               for q in _queued(command.records)}
    stored_meta = ChargerMeta("CP-1", next_queue_seq=1)  # as if the charger record was written long before
    tx = pb.session.ledger.get(local_id)
    assert tx is not None
    restarted = Playbook.translated(state=ChargerState(stored_meta, (tx.snapshot(),),
                                                       tuple(written[seq] for seq in sorted(written))))
    _lost(restarted)
    mark = len(restarted.commands)
    _answered(restarted, "MeterValues", _mv(local_id, 50))
    (write,) = _writes(restarted, mark)
    assert [q.seq for q in _queued(write.records)] == [max(written) + 1]  # never a number still in the queue
