"""StartTransaction / MeterValues / StopTransaction -> TransactionEvent (mapping reference §2.3, §3.4, §3.5, §4).

What the CSMS sees (events, seqNos, ids), what the charger is answered, and that each answer to the charger
is preceded by the Persist that makes it durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from ocpp_bridge.core.events import Emit, ExchangeDone, Persist, SendToCharger, SendToCsms
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerMeta, ChargerState, QueuedMessage, TxRecord
from tests.playbook import Frame, Playbook

START = {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000, "timestamp": "2024-05-01T10:00:00Z"}


def _mv(value: str = "1500", context: str = "Sample.Periodic", stamp: str = "2024-05-01T10:15:00Z",
        **extra: Any) -> dict[str, Any]:
    return {"timestamp": stamp, "sampledValue": [{"value": value, "context": context, **extra}]}


def _stop(local_id: int, **fields: Any) -> dict[str, Any]:
    return {"transactionId": local_id, "meterStop": 5000, "timestamp": "2024-05-01T11:00:00Z", **fields}


def _persist_precedes_answer(pb: Playbook, unique_id: str) -> None:
    """Before the CALLRESULT for ``unique_id`` reaches the charger, the transaction record holding exactly that
    answer has been persisted (a crash after the answer can never lose what the charger was told)."""
    last_saved: TxRecord | None = None
    for command in pb.commands:
        if isinstance(command, Persist):
            last_saved = next((r for r in command.records if isinstance(r, TxRecord)), last_saved)
        if isinstance(command, SendToCharger) and command.text.startswith(f'[3,"{unique_id}",'):
            answer = orjson.loads(command.text)[2]
            assert last_saved is not None, f"the answer to {unique_id} was sent before any record was persisted"
            assert last_saved.last_answer == answer, "the record persisted last does not hold this answer"
            return
    raise AssertionError(f"no answer to {unique_id} was sent")


def _write_before_answer(pb: Playbook, unique_id: str) -> Persist:
    """The store write that immediately precedes the CALLRESULT for ``unique_id`` (only log lines between)."""
    write: Persist | None = None
    for command in pb.commands:
        if isinstance(command, Persist):
            write = command
        elif isinstance(command, SendToCharger) and command.text.startswith(f'[3,"{unique_id}",'):
            assert write is not None, f"the answer to {unique_id} was sent before anything was persisted"
            return write
        elif not isinstance(command, Emit | ExchangeDone):
            write = None
    raise AssertionError(f"no answer to {unique_id} was sent right after a store write")


def _queued_in(write: Persist) -> list[QueuedMessage]:
    return [r for r in write.records if isinstance(r, QueuedMessage) and not r.delivered]


def _retried(pb: Playbook, failed: Frame, attempt: int = 1) -> Frame:
    """After a failed delivery of ``failed``: a queue.retry, nothing for the charger, nothing upstream until the
    back-off elapsed, then the identical message under a new messageId."""
    retry = [e for e in pb.emitted if e.kind == "queue.retry"][-1]
    delay = CoreSettings().retry_delay(attempt)
    assert retry.fields["attempts"] == attempt
    assert retry.fields["delay"] == delay
    assert not pb.to_charger, "a failed delivery must not reach the charger"
    pb.advance(delay - 0.5)
    assert not pb.to_csms, "retried before the back-off elapsed"
    pb.advance(0.5)
    again = pb.csms_receives(failed.action)
    assert again.payload == failed.payload  # same seqNo, same transactionId, same everything
    assert again.unique_id != failed.unique_id
    return again


def _answer_event(pb: Playbook, payload: dict[str, Any] | None = None) -> Frame:
    event = pb.csms_receives("TransactionEvent")
    pb.csms_answers(event, payload or {})
    return event


# --- StartTransaction ------------------------------------------------------------------------------------


def test_start_transaction_becomes_transaction_event_started() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", {**START, "timestamp": "2024-01-01T10:00:00.123456+01:00",
                                                "reservationId": 42})
    event = pb.csms_receives("TransactionEvent")
    tx_id = event.payload["transactionInfo"]["transactionId"]
    assert event.payload == {
        "eventType": "Started",
        "timestamp": "2024-01-01T09:00:00.123Z",  # UTC, millisecond precision, the charger's own clock
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": tx_id, "chargingState": "EVConnected"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
        "meterValue": [{"timestamp": "2024-01-01T09:00:00.123Z", "sampledValue": [{
            "value": 1000, "context": "Transaction.Begin", "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"}}]}],
        "reservationId": 42,
    }
    assert isinstance(tx_id, str)
    assert 0 < len(tx_id) <= 36
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    result = pb.charger_receives_result(uid)
    assert result == {"transactionId": result["transactionId"], "idTagInfo": {"status": "Accepted"}}
    assert type(result["transactionId"]) is int
    assert result["transactionId"] > 0
    pb.nothing_pending()


def test_start_is_persisted_before_it_is_sent_and_before_it_is_answered() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", START)
    first_up = next(i for i, c in enumerate(pb.commands) if isinstance(c, SendToCsms))
    assert any(isinstance(c, Persist) and any(isinstance(r, TxRecord) for r in c.records)
               for c in pb.commands[:first_up])
    _answer_event(pb, {"idTokenInfo": {"status": "Accepted"}})
    _persist_precedes_answer(pb, uid)
    saved = [r for r in pb.persisted if isinstance(r, TxRecord)][-1]
    assert saved.identity == "CP-1"
    assert saved.last_answer == pb.charger_receives_result(uid)


def test_each_transaction_gets_a_new_positive_id_and_transaction_id() -> None:
    pb = Playbook.translated()
    first = pb.start(connector=1)
    second = pb.start(connector=2, stamp="2024-05-01T10:01:00Z")
    assert first[0] > 0
    assert second[0] > 0
    assert first[0] != second[0]
    assert first[1] != second[1]


@pytest.mark.parametrize(("status", "expected"), [("Accepted", "Accepted"), ("Blocked", "Blocked"),
                                                  ("NoCredit", "Invalid"), ("Unknown", "Invalid")])
def test_start_answer_carries_the_csms_decision(status: str, expected: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", START)
    _answer_event(pb, {"idTokenInfo": {"status": status}})
    assert pb.charger_receives_result(uid)["idTagInfo"] == {"status": expected}


def test_start_answer_without_id_token_info_uses_the_csms_authorize_decision() -> None:
    pb = Playbook.translated()
    auth = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"}})
    pb.charger_receives_result(auth)
    uid = pb.charger_sends("StartTransaction", START)
    _answer_event(pb, {})
    assert pb.charger_receives_result(uid)["idTagInfo"] == {"status": "Accepted"}


def test_start_answer_without_any_decision_is_never_an_invented_acceptance() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", START)
    _answer_event(pb, {})
    assert pb.charger_receives_result(uid)["idTagInfo"] == {"status": "Invalid"}


@pytest.mark.parametrize(("status", "state"), [("Charging", "Charging"), ("SuspendedEV", "SuspendedEV"),
                                               ("SuspendedEVSE", "SuspendedEVSE"), ("Preparing", "EVConnected")])
def test_started_charging_state_follows_the_last_status(status: str, state: str) -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status})
    pb.csms_answers(pb.csms_receives("StatusNotification"), {})
    pb.charger_receives_result()
    pb.charger_sends("StartTransaction", START)
    assert pb.csms_receives("TransactionEvent").payload["transactionInfo"]["chargingState"] == state


def test_start_after_a_remote_start_carries_remote_start_id() -> None:
    meta = ChargerMeta("CP-1", remote_starts=[{"idTag": "04A1B2C3", "connectorId": 1, "remoteStartId": 7}])
    pb = Playbook.translated(state=ChargerState(meta))
    uid = pb.charger_sends("StartTransaction", START)
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["triggerReason"] == "RemoteStart"
    assert event.payload["transactionInfo"]["remoteStartId"] == 7
    pb.csms_answers(event, {})
    assert pb.charger_receives_result(uid)["idTagInfo"] == {"status": "Accepted"}  # the CSMS asked for it
    pb.charger_sends("StartTransaction", {**START, "connectorId": 2, "timestamp": "2024-05-01T10:30:00Z"})
    assert pb.csms_receives("TransactionEvent").payload["triggerReason"] == "Authorized"  # used once


def _authorized(pb: Playbook, status: str) -> None:
    """The CSMS decides about the token through Authorize (the auth cache keeps its decision)."""
    uid = pb.charger_sends("Authorize", {"idTag": START["idTag"]})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": status}})
    assert pb.charger_receives_result(uid) == {"idTagInfo": {"status": status}}


def _remote_started(pb: Playbook) -> None:
    """The CSMS asks for this start itself (RequestStartTransaction -> RemoteStartTransaction, accepted)."""
    request = pb.csms_sends("RequestStartTransaction", {"idToken": {"idToken": START["idTag"], "type": "ISO14443"},
                                                         "remoteStartId": 7, "evseId": 1})
    pb.charger_answers(pb.charger_receives("RemoteStartTransaction"), {"status": "Accepted"})
    assert pb.csms_receives_result(request)["status"] == "Accepted"


# what the charger is told when the CSMS does not answer the Started: never an acceptance the CSMS did not give
FALLBACKS = [
    pytest.param(lambda pb: None, "Invalid", id="unknown-token-policy"),
    pytest.param(lambda pb: _authorized(pb, "Accepted"), "Accepted", id="csms-accepted-it-earlier"),
    pytest.param(lambda pb: _authorized(pb, "Blocked"), "Blocked", id="csms-blocked-it-earlier"),
    pytest.param(_remote_started, "Accepted", id="csms-requested-the-start"),
]


@pytest.mark.parametrize(("before", "told"), FALLBACKS)
def test_start_after_csms_error_is_answered_from_its_earlier_decision_and_the_event_retried(
        before: Callable[[Playbook], None], told: str) -> None:
    pb = Playbook.translated()
    before(pb)
    first = pb.charger_sends("StartTransaction", START)
    event = pb.csms_receives("TransactionEvent")
    assert not pb.to_charger  # the charger waits for the CSMS's answer to the Started event
    pb.csms_fails(event, "FormatViolation", "try again")
    answer = pb.charger_receives_result(first)  # not the CALLERROR: the transaction exists and is stored
    assert answer == {"transactionId": 1, "idTagInfo": {"status": told}}
    _persist_precedes_answer(pb, first)
    again = _retried(pb, event)
    pb.csms_answers(again, {"idTokenInfo": {"status": told}})
    pb.nothing_pending()  # the charger was answered once, and the event is delivered: no RemoteStop either
    assert not pb.session.outbox.items
    # the charger's own retry (its answer got lost) gets the same answer and no second Started
    retry = pb.charger_sends("StartTransaction", START)
    assert pb.charger_receives_result(retry) == answer
    pb.nothing_pending()


def test_start_retried_after_a_lost_answer_gets_the_same_answer_without_a_new_event() -> None:
    pb = Playbook.translated()
    first = pb.charger_sends("StartTransaction", START)
    _answer_event(pb, {"idTokenInfo": {"status": "Accepted"}})
    answer = pb.charger_receives_result(first)
    retry = pb.charger_sends("StartTransaction", START)
    assert pb.charger_receives_result(retry) == answer
    pb.nothing_pending()
    assert "transaction.retry_answered" in pb.emitted_kinds()


def test_start_repeated_while_its_started_is_unanswered_waits_for_the_csms_without_a_new_event() -> None:
    pb = Playbook.translated()
    first = pb.charger_sends("StartTransaction", START)
    event = pb.csms_receives("TransactionEvent")
    pb.advance(10)
    retry = pb.charger_sends("StartTransaction", START)  # the charger gave up waiting for the first answer
    assert not pb.to_charger  # held: one call at a time (OCPP-J 4.1.1)
    assert not pb.to_csms  # no second Started
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    answer = {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    assert pb.charger_receives_result(first) == answer  # the late answer to the first attempt
    assert pb.charger_receives_result(retry) == answer  # and the same answer to the retry
    pb.advance(60)
    pb.nothing_pending()  # answered once; the timers of both attempts are gone


def test_start_repeated_after_later_messages_of_its_transaction_is_not_a_new_transaction() -> None:
    pb = Playbook.translated()
    first = pb.charger_sends("StartTransaction", START)
    _answer_event(pb, {"idTokenInfo": {"status": "Accepted"}})
    answer = pb.charger_receives_result(first)
    pb.charger_sends("MeterValues", {"connectorId": 1, "meterValue": [_mv()]})  # joins by connector
    _answer_event(pb)
    pb.charger_receives_result()
    repeat = pb.charger_sends("StartTransaction", START)
    assert pb.charger_receives_result(repeat) == answer
    pb.nothing_pending()  # no second Started


@pytest.mark.parametrize(("before", "told"), FALLBACKS)
def test_start_timeout_is_answered_from_the_csms_earlier_decision_and_the_event_retried(
        before: Callable[[Playbook], None], told: str) -> None:
    pb = Playbook.translated()
    before(pb)
    first = pb.charger_sends("StartTransaction", START)
    event = pb.csms_receives("TransactionEvent")
    pb.advance(19.5)
    assert not pb.to_charger  # still waiting for the CSMS (call_timeout 20 s)
    pb.advance(0.5)
    assert pb.charger_receives_result(first) == {"transactionId": 1, "idTagInfo": {"status": told}}
    assert "call.timeout" in pb.emitted_kinds()
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})  # too late: a stray, never matched
    assert "frame.stray" in pb.emitted_kinds()
    pb.nothing_pending()
    again = _retried(pb, event)
    pb.csms_answers(again, {"idTokenInfo": {"status": told}})
    pb.nothing_pending()
    retry = pb.charger_sends("StartTransaction", START)
    assert pb.charger_receives_result(retry)["idTagInfo"] == {"status": told}
    pb.nothing_pending()


def test_start_not_answered_at_once_by_the_csms_does_not_make_the_charger_wait_past_the_call_timeout() -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Available"})
    backlog = pb.csms_receives("StatusNotification")  # in flight, unanswered: the Started queues behind it
    pb.charger_receives_result()
    uid = pb.charger_sends("StartTransaction", START)
    assert not pb.to_csms  # one queued message in flight at a time
    pb.advance(10)
    pb.csms_answers(backlog, {})
    event = pb.csms_receives("TransactionEvent")
    pb.advance(10)  # 20 s after the StartTransaction, 10 s after its event was sent
    assert pb.charger_receives_result(uid)["idTagInfo"] == {"status": "Invalid"}
    pb.csms_answers(event, {"idTokenInfo": {"status": "Invalid"}})
    pb.nothing_pending()


# --- MeterValues ---------------------------------------------------------------------------------------


def test_meter_values_in_a_transaction_become_updated_events_with_contiguous_seq_no() -> None:
    pb = Playbook.translated()
    local_id, tx_id = pb.start()
    seq_nos = []
    for minute in (15, 30, 45):
        uid = pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id,
                                               "meterValue": [_mv(stamp=f"2024-05-01T10:{minute}:00Z")]})
        event = _answer_event(pb)
        assert event.payload["eventType"] == "Updated"
        assert event.payload["transactionInfo"]["transactionId"] == tx_id
        assert event.payload["timestamp"] == f"2024-05-01T10:{minute}:00.000Z"
        seq_nos.append(event.payload["seqNo"])
        assert pb.charger_receives_result(uid) == {}
        _persist_precedes_answer(pb, uid)
    assert seq_nos == [1, 2, 3]
    pb.nothing_pending()


@pytest.mark.parametrize(("context", "trigger"), [
    ("Sample.Periodic", "MeterValuePeriodic"),
    ("Sample.Clock", "MeterValueClock"),
    ("Trigger", "Trigger"),
    ("Interruption.Begin", "AbnormalCondition"),
    ("Interruption.End", "AbnormalCondition"),
    ("Other", "MeterValuePeriodic"),
])
def test_meter_values_trigger_reason_follows_the_reading_context(context: str, trigger: str) -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id,
                                     "meterValue": [_mv(context=context)]})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["triggerReason"] == trigger
    assert event.payload["meterValue"][0]["sampledValue"][0]["context"] == context


def test_meter_values_without_transaction_id_on_a_busy_connector_join_the_transaction() -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start(connector=2)
    pb.charger_sends("MeterValues", {"connectorId": 2, "meterValue": [_mv()]})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["transactionInfo"]["transactionId"] == tx_id
    assert event.payload["seqNo"] == 1


def test_sampled_values_are_converted() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [{
        "timestamp": "2024-05-01T12:15:00+02:00",
        "sampledValue": [
            {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh", "location": "Outlet"},
            {"value": "16", "measurand": "Current.Import", "unit": "A", "phase": "L1", "context": "Sample.Periodic"},
            {"value": "49.9", "measurand": "Frequency", "unit": "Hertz"},
            {"value": "3", "measurand": "Power.Active.Import", "unit": "Celcius"},
        ],
    }]})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["meterValue"] == [{
        "timestamp": "2024-05-01T10:15:00.000Z",
        "sampledValue": [
            {"value": 1234.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"},
             "location": "Outlet"},
            {"value": 16, "measurand": "Current.Import", "unitOfMeasure": {"unit": "A"}, "phase": "L1",
             "context": "Sample.Periodic"},
            {"value": 49.9, "measurand": "Frequency", "unitOfMeasure": {"unit": "Hz"}},
            {"value": 3, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "Celsius"}},
        ],
    }]


def test_huge_sampled_value_still_reaches_the_csms_as_a_number() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    uid = pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id,
                                           "meterValue": [_mv(value="1" * 30)]})
    event = _answer_event(pb)
    assert event.payload["meterValue"][0]["sampledValue"][0]["value"] == pytest.approx(float("1" * 30))
    assert pb.charger_receives_result(uid) == {}
    assert "bug" not in pb.emitted_kinds()


@pytest.mark.parametrize("measurand", ["Temperature", "RPM"])
def test_measurands_2_0_1_lacks_are_dropped_with_a_trace(measurand: str) -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [{
        "timestamp": "2024-05-01T10:15:00Z",
        "sampledValue": [{"value": "35", "measurand": measurand, "unit": "Celcius"}, {"value": "1500"}],
    }]})
    samples = pb.csms_receives("TransactionEvent").payload["meterValue"][0]["sampledValue"]
    assert samples == [{"value": 1500}]
    unmapped = [e for e in pb.emitted if e.kind == "meter.unmapped"]
    assert unmapped[-1].fields["measurand"] == measurand
    assert unmapped[-1].fields["value"] == "35"


def test_meter_values_with_nothing_2_0_1_can_carry_are_answered_without_an_event() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    uid = pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id,
                                           "meterValue": [_mv(value="35", measurand="Temperature")]})
    assert pb.charger_receives_result(uid) == {}
    pb.nothing_pending()
    # the seqNo was not spent
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [_mv()]})
    assert pb.csms_receives("TransactionEvent").payload["seqNo"] == 1


def test_non_numeric_and_signed_values_are_dropped_with_a_trace() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [{
        "timestamp": "2024-05-01T10:15:00Z",
        "sampledValue": [{"value": "abc"}, {"value": "nan"}, {"value": "1e999"},
                         {"value": "not-a-signature", "format": "SignedData"}, {"value": "7"}],
    }]})
    assert pb.csms_receives("TransactionEvent").payload["meterValue"][0]["sampledValue"] == [{"value": 7}]
    assert pb.emitted_kinds().count("meter.unmapped") == 4


def test_meter_values_outside_a_transaction_stay_meter_values() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("MeterValues", {"connectorId": 2, "meterValue": [_mv(context="Sample.Clock")]})
    call = pb.csms_receives("MeterValues")
    assert call.payload == {"evseId": 2, "meterValue": [{"timestamp": "2024-05-01T10:15:00.000Z",
                                                          "sampledValue": [{"value": 1500,
                                                                            "context": "Sample.Clock"}]}]}
    pb.csms_answers(call, {})
    assert pb.charger_receives_result(uid) == {}
    pb.nothing_pending()


def test_station_meter_values_go_to_evse_0() -> None:
    pb = Playbook.translated()
    pb.start(connector=1)  # a transaction elsewhere does not capture the main meter
    pb.charger_sends("MeterValues", {"connectorId": 0, "meterValue": [_mv()]})
    assert pb.csms_receives("MeterValues").payload["evseId"] == 0


def test_meter_values_for_an_unknown_transaction_id_are_not_attached_to_a_transaction() -> None:
    pb = Playbook.translated()
    pb.start(connector=1)
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": 999, "meterValue": [_mv()]})
    assert pb.csms_receives("MeterValues").payload["evseId"] == 1
    assert "transaction.unknown" in pb.emitted_kinds()


def test_meter_values_outside_a_transaction_with_nothing_to_carry_are_answered_locally() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("MeterValues", {"connectorId": 1, "meterValue": [_mv(measurand="RPM")]})
    assert pb.charger_receives_result(uid) == {}
    pb.nothing_pending()


def test_meter_values_are_answered_once_stored_and_retried_after_csms_error_with_the_same_seq_no() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    payload = {"connectorId": 1, "transactionId": local_id, "meterValue": [_mv()]}
    first = pb.charger_sends("MeterValues", payload)
    assert pb.charger_receives_result(first) == {}  # before the CSMS answered anything
    assert [q.payload["seqNo"] for q in _queued_in(_write_before_answer(pb, first))] == [1]
    _persist_precedes_answer(pb, first)
    event = pb.csms_receives("TransactionEvent")
    pb.csms_fails(event, "InternalError")
    again = _retried(pb, event)
    # the charger retries the same MeterValues (its answer got lost): the same answer, nothing queued again
    retry = pb.charger_sends("MeterValues", payload)
    assert pb.charger_receives_result(retry) == {}
    assert "transaction.retry_answered" in pb.emitted_kinds()
    assert len(pb.session.outbox) == 1
    pb.csms_answers(again, {})
    pb.nothing_pending()
    pb.charger_sends("MeterValues", {**payload, "meterValue": [_mv(stamp="2024-05-01T10:30:00Z")]})
    assert pb.csms_receives("TransactionEvent").payload["seqNo"] == event.payload["seqNo"] + 1


def test_meter_values_outside_a_transaction_are_not_failed_by_a_csms_error_but_retried() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("MeterValues", {"connectorId": 1, "meterValue": [_mv()]})
    assert pb.charger_receives_result(uid) == {}
    assert [q.action for q in _queued_in(_write_before_answer(pb, uid))] == ["MeterValues"]
    call = pb.csms_receives("MeterValues")
    pb.csms_fails(call, "OccurrenceConstraintViolation")
    again = _retried(pb, call)
    pb.csms_answers(again, {})
    pb.nothing_pending()
    assert not pb.session.outbox.items


# --- StopTransaction -------------------------------------------------------------------------------------

STOP_TABLE = [
    # 1.6 reason, stoppedReason (None: omitted, it is Local), triggerReason
    ("Local", None, "StopAuthorized"),
    ("Remote", "Remote", "RemoteStop"),
    ("EVDisconnected", "EVDisconnected", "EVCommunicationLost"),
    ("DeAuthorized", "DeAuthorized", "Deauthorized"),
    ("HardReset", "ImmediateReset", "ResetCommand"),
    ("SoftReset", "ImmediateReset", "ResetCommand"),
    ("Reboot", "Reboot", "AbnormalCondition"),
    ("PowerLoss", "PowerLoss", "AbnormalCondition"),
    ("EmergencyStop", "EmergencyStop", "AbnormalCondition"),
    ("UnlockCommand", "Remote", "UnlockCommand"),
    ("Other", "Other", "AbnormalCondition"),
]


@pytest.mark.parametrize(("reason", "stopped", "trigger"), STOP_TABLE)
@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_stop_reason_table(upstream: Version, reason: str, stopped: str | None, trigger: str) -> None:
    pb = Playbook.translated(upstream)
    local_id, tx_id = pb.start()
    uid = pb.charger_sends("StopTransaction", _stop(local_id, reason=reason, idTag="04A1B2C3"))
    assert pb.charger_receives_result(uid) == {}  # once stored, without waiting for the CSMS
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["eventType"] == "Ended"
    assert event.payload["triggerReason"] == trigger
    assert event.payload["transactionInfo"]["transactionId"] == tx_id
    assert event.payload["transactionInfo"].get("stoppedReason") == stopped
    assert event.payload["seqNo"] == 1
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    pb.nothing_pending()


def test_every_1_6_stop_reason_is_in_the_table() -> None:
    from ocpp_bridge.core.translate.transactions import STOP_REASONS

    assert {row[0] for row in STOP_TABLE} == set(STOP_REASONS)


def test_stop_transaction_becomes_ended_with_meter_data_and_stop_token() -> None:
    pb = Playbook.translated()
    local_id, tx_id = pb.start()
    uid = pb.charger_sends("StopTransaction", _stop(local_id, idTag="04A1B2C3", reason="Local", transactionData=[
        _mv(value="4000", context="Sample.Clock", stamp="2024-05-01T10:45:00Z"),
        _mv(value="5000", context="Transaction.End", stamp="2024-05-01T11:00:00Z"),
    ]))
    # answered once the ended transaction and its queued Ended are stored, in one write
    assert pb.charger_receives_result(uid) == {}
    _persist_precedes_answer(pb, uid)
    write = _write_before_answer(pb, uid)
    assert [r.ended for r in write.records if isinstance(r, TxRecord)] == [True]
    queued = _queued_in(write)
    assert [q.payload["eventType"] for q in queued] == ["Ended"]
    event = pb.csms_receives("TransactionEvent")
    assert event.payload == queued[0].payload
    assert event.payload == {
        "eventType": "Ended",
        "timestamp": "2024-05-01T11:00:00.000Z",
        "triggerReason": "StopAuthorized",
        "seqNo": 1,
        "transactionInfo": {"transactionId": tx_id, "chargingState": "EVConnected"},
        "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},  # E07.FR.02
        "meterValue": [
            {"timestamp": "2024-05-01T10:45:00.000Z", "sampledValue": [{"value": 4000, "context": "Sample.Clock"}]},
            {"timestamp": "2024-05-01T11:00:00.000Z", "sampledValue": [{"value": 5000,
                                                                         "context": "Transaction.End"}]},
            {"timestamp": "2024-05-01T11:00:00.000Z", "sampledValue": [{
                "value": 5000, "context": "Transaction.End", "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"}}]},
        ],
    }
    pb.csms_answers(event, {"idTokenInfo": {"status": "Blocked"}})
    pb.nothing_pending()  # the transaction is over: nothing to stop, nothing more to tell the charger
    assert pb.session.meta.auth_cache["04A1B2C3"]["info"] == {"status": "Blocked"}  # remembered for offline use
    assert [r for r in pb.persisted if isinstance(r, QueuedMessage)][-1].delivered


def test_stop_without_id_tag_has_no_id_token_and_no_id_tag_info() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    uid = pb.charger_sends("StopTransaction", _stop(local_id, reason="EVDisconnected"))
    event = pb.csms_receives("TransactionEvent")
    assert "idToken" not in event.payload
    assert event.payload["transactionInfo"]["chargingState"] == "Idle"
    assert pb.charger_receives_result(uid) == {}
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    pb.nothing_pending()


@pytest.mark.parametrize(("status", "trigger"), [("Available", "EVCommunicationLost"),
                                                 ("Finishing", "ChargingStateChanged")])
def test_local_stop_without_token_trigger_follows_the_connector(status: str, trigger: str) -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status})
    pb.csms_answers(pb.csms_receives("StatusNotification"), {})
    while pb.to_csms:  # a ChargingStateChanged event may follow
        _answer_event(pb)
    pb.charger_receives_result()
    pb.charger_sends("StopTransaction", _stop(local_id))  # reason absent = Local
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["triggerReason"] == trigger
    assert "stoppedReason" not in event.payload["transactionInfo"]


def test_duplicate_stop_transaction_does_not_end_twice() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    first = pb.charger_sends("StopTransaction", _stop(local_id, idTag="04A1B2C3"))
    _answer_event(pb, {"idTokenInfo": {"status": "Accepted"}})
    answer = pb.charger_receives_result(first)
    again = pb.charger_sends("StopTransaction", _stop(local_id, idTag="04A1B2C3"))  # new message id
    assert again != first
    assert pb.charger_receives_result(again) == answer
    pb.nothing_pending()
    # a different StopTransaction for the ended transaction is not a second Ended either
    other = pb.charger_sends("StopTransaction", _stop(local_id, meterStop=6000))
    assert pb.charger_receives_result(other) == answer
    pb.nothing_pending()
    assert "transaction.duplicate_stop" in pb.emitted_kinds()


def test_stop_after_csms_error_is_retried_with_the_same_ended_and_a_charger_retry_adds_nothing() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    first = pb.charger_sends("StopTransaction", _stop(local_id))
    assert pb.charger_receives_result(first) == {}
    event = pb.csms_receives("TransactionEvent")
    pb.csms_fails(event, "GenericError")
    again = _retried(pb, event)
    mark = len(pb.commands)
    retry = pb.charger_sends("StopTransaction", _stop(local_id))  # the charger lost the first answer
    assert pb.charger_receives_result(retry) == {}
    assert not [q for c in pb.commands[mark:] if isinstance(c, Persist) for q in _queued_in(c)]  # no 2nd Ended
    assert len(pb.session.outbox) == 1
    pb.csms_answers(again, {})
    pb.nothing_pending()
    assert not pb.session.outbox.items


def test_stop_for_an_unknown_transaction_is_carried_as_started_and_ended() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StopTransaction", _stop(4711, idTag="04A1B2C3", reason="Local"))
    assert pb.charger_receives_result(uid) == {}
    _persist_precedes_answer(pb, uid)
    queued = _queued_in(_write_before_answer(pb, uid))
    assert [q.payload["eventType"] for q in queued] == ["Started", "Ended"]  # stored together, before the answer
    started = pb.csms_receives("TransactionEvent")
    assert started.payload == queued[0].payload
    assert started.payload["eventType"] == "Started"
    assert started.payload["offline"] is True
    assert started.payload["seqNo"] == 0
    assert started.payload["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
    tx_id = started.payload["transactionInfo"]["transactionId"]
    assert not pb.to_csms  # the Ended waits for the Started to be accepted
    pb.csms_answers(started, {})
    ended = pb.csms_receives("TransactionEvent")
    assert ended.payload["eventType"] == "Ended"
    assert ended.payload["seqNo"] == 1
    assert ended.payload["transactionInfo"]["transactionId"] == tx_id
    assert ended.payload["meterValue"][-1]["sampledValue"][0]["value"] == 5000
    pb.csms_answers(ended, {"idTokenInfo": {"status": "Accepted"}})
    pb.nothing_pending()
    # the id is now taken: the next transaction minted here gets a higher one, and the retry is idempotent
    retry = pb.charger_sends("StopTransaction", _stop(4711, idTag="04A1B2C3", reason="Local"))
    assert pb.charger_receives_result(retry) == {}
    pb.nothing_pending()
    assert pb.start()[0] > 4711


def test_stop_for_a_non_positive_unknown_id_is_refused() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StopTransaction", _stop(0))
    pb.charger_receives_error("PropertyConstraintViolation", uid)
    pb.nothing_pending()


# --- identity: one charger never reaches another's transaction -------------------------------------------


def _foreign_record(identity: str = "CP-A", local_id: int = 1) -> TxRecord:
    return TxRecord(identity=identity, local_id=local_id, tx_id="tx-of-A", connector_id=1, evse_id=1,
                    evse_connector_id=1, id_token="04A1B2C3", id_token_type="ISO14443", meter_start=0,
                    started_at="2024-05-01T10:00:00.000Z", start_hash="h", seq_no=3, charging_state="Charging")


def test_a_session_never_resolves_another_chargers_transaction() -> None:
    state = ChargerState(ChargerMeta("CP-B"), (_foreign_record(),))
    pb = Playbook.translated(identity="CP-B", state=state)
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [_mv()]})
    call = pb.csms_receives("MeterValues")  # not a TransactionEvent of A's transaction
    assert "tx-of-A" not in str(call.raw)
    pb.csms_answers(call, {})
    pb.charger_receives_result()
    uid = pb.charger_sends("StopTransaction", _stop(1))
    started = pb.csms_receives("TransactionEvent")
    assert started.payload["eventType"] == "Started"
    assert started.payload["transactionInfo"]["transactionId"] != "tx-of-A"
    pb.csms_answers(started, {})
    ended = _answer_event(pb)
    assert ended.payload["transactionInfo"]["transactionId"] == started.payload["transactionInfo"]["transactionId"]
    assert pb.charger_receives_result(uid) == {}
    assert all(r.identity == "CP-B" for r in pb.persisted)


def test_a_foreign_open_transaction_does_not_capture_status_or_meter_values() -> None:
    state = ChargerState(ChargerMeta("CP-B"), (_foreign_record(),))
    pb = Playbook.translated(identity="CP-B", state=state)
    uid = pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "SuspendedEV"})
    pb.csms_answers(pb.csms_receives("StatusNotification"), {})
    assert pb.charger_receives_result(uid) == {}  # no ChargingStateChanged for A's transaction
    pb.nothing_pending()
    pb.charger_sends("MeterValues", {"connectorId": 1, "meterValue": [_mv()]})
    assert pb.csms_receives("MeterValues").payload["evseId"] == 1


# --- a session restored from the store -------------------------------------------------------------------


def _restored(seq_no: int = 3) -> Playbook:
    record = TxRecord(identity="CP-1", local_id=12, tx_id="tx-12", connector_id=1, evse_id=1, evse_connector_id=1,
                      id_token="04A1B2C3", id_token_type="ISO14443", meter_start=1000,
                      started_at="2024-05-01T10:00:00.000Z", start_hash="h", seq_no=seq_no,
                      charging_state="Charging")
    return Playbook.translated(state=ChargerState(ChargerMeta("CP-1", next_local_id=13), (record,)))


def test_restored_transaction_continues_with_meter_values_and_stop() -> None:
    pb = _restored(seq_no=3)
    uid = pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": 12, "meterValue": [_mv()]})
    event = _answer_event(pb)
    assert event.payload["transactionInfo"] == {"transactionId": "tx-12", "chargingState": "Charging"}
    assert event.payload["seqNo"] == 3
    assert pb.charger_receives_result(uid) == {}
    uid = pb.charger_sends("StopTransaction", _stop(12, reason="Remote"))
    event = _answer_event(pb)
    assert event.payload["eventType"] == "Ended"
    assert event.payload["transactionInfo"]["transactionId"] == "tx-12"
    assert event.payload["seqNo"] == 4
    assert pb.charger_receives_result(uid) == {}
    assert pb.start()[0] == 13


def test_restored_transaction_is_found_by_connector() -> None:
    pb = _restored(seq_no=7)
    pb.charger_sends("MeterValues", {"connectorId": 1, "meterValue": [_mv()]})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["transactionInfo"]["transactionId"] == "tx-12"
    assert event.payload["seqNo"] == 7


# --- connector ids the 1.6 schemas allow but 1.6 does not -------------------------------------------------


@pytest.mark.parametrize("connector", [0, -1])
def test_start_on_connector_0_or_below_is_refused_before_anything_is_minted(connector: int) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", {**START, "connectorId": connector})
    pb.charger_receives_error("PropertyConstraintViolation", uid)
    pb.nothing_pending()
    assert not pb.persisted
    assert pb.start()[0] == 1  # no id was spent


@pytest.mark.parametrize("action", ["MeterValues", "StatusNotification"])
def test_negative_connector_is_refused(action: str) -> None:
    payload = {"connectorId": -1, "meterValue": [_mv()]} if action == "MeterValues" else \
        {"connectorId": -1, "errorCode": "NoError", "status": "Available"}
    pb = Playbook.translated()
    uid = pb.charger_sends(action, payload)
    pb.charger_receives_error("PropertyConstraintViolation", uid)
    pb.nothing_pending()


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_negative_reservation_id_is_dropped_not_the_transaction(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("StartTransaction", {**START, "reservationId": -5})
    event = pb.csms_receives("TransactionEvent")
    assert "reservationId" not in event.payload
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result(uid)["transactionId"] == 1
    assert "transaction.bad_reservation" in pb.emitted_kinds()


def test_calls_sent_without_waiting_are_held_in_order_and_bounded() -> None:
    from ocpp_bridge.core.session import MAX_WAITING_CALLS

    pb = Playbook.translated()
    first = pb.charger_sends("Heartbeat", {})
    heartbeat = pb.csms_receives("Heartbeat")
    held = [pb.charger_sends("Heartbeat", {}) for _ in range(MAX_WAITING_CALLS)]
    refused = pb.charger_sends("Heartbeat", {})  # one too many
    pb.charger_receives_error("ProtocolError", refused)
    assert not pb.to_csms  # the held ones wait for the first answer
    pb.csms_answers(heartbeat, {"currentTime": "2024-05-01T10:00:00Z"})
    assert pb.charger_receives_result(first) == {"currentTime": "2024-05-01T10:00:00Z"}
    for unique_id in held:  # then each in turn, in order
        pb.csms_answers(pb.csms_receives("Heartbeat"), {"currentTime": "2024-05-01T10:00:01Z"})
        assert pb.charger_receives_result(unique_id) == {"currentTime": "2024-05-01T10:00:01Z"}
    pb.nothing_pending()
