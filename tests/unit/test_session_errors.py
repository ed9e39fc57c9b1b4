"""Errors between the peers: relayed CALLERRORs, timeouts, late and stray answers, invalid answers, and bugs in
handlers, which must all end as a well-formed CALLERROR and never as an exception out of ``feed``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ocpp_bridge.core.events import FrameFromCharger, ScheduleWakeup, SessionStarted, Tick
from ocpp_bridge.core.rpc import Call, ErrorCode, Version
from ocpp_bridge.core.session import TranslatingSession
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerState
from ocpp_bridge.core.translate import CHARGER_ROUTES, CSMS_ROUTES, authorize
from tests.playbook import T0, Playbook

# --- CALLERROR from the CSMS ----------------------------------------------------------------------------


@pytest.mark.parametrize(("csms_code", "charger_code"), [
    ("FormatViolation", "FormationViolation"),
    ("OccurrenceConstraintViolation", "OccurenceConstraintViolation"),
    ("PropertyConstraintViolation", "PropertyConstraintViolation"),
    ("TypeConstraintViolation", "TypeConstraintViolation"),
    ("ProtocolError", "ProtocolError"),
    ("SecurityError", "SecurityError"),
    ("NotImplemented", "NotImplemented"),
    ("NotSupported", "NotSupported"),
    ("InternalError", "InternalError"),
    ("GenericError", "GenericError"),
    ("RpcFrameworkError", "FormationViolation"),
    ("MessageTypeNotSupported", "GenericError"),
    ("NoSuchCode", "GenericError"),
])
def test_csms_callerror_is_relayed_with_the_1_6_spelling(csms_code: str, charger_code: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_fails(pb.csms_receives("Heartbeat"), csms_code, "the CSMS said no")
    error = pb.charger_receives_error(charger_code, uid)
    assert error.raw[3] == "the CSMS said no"
    assert error.raw[4] == {}
    pb.nothing_pending()


# --- timeouts --------------------------------------------------------------------------------------------


def test_csms_timeout_fails_the_charger_call_and_a_late_answer_is_dropped() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    call = pb.csms_receives("Heartbeat")
    assert ScheduleWakeup(T0 + 20) in pb.commands  # default call_timeout 20 s
    pb.advance(19)
    pb.nothing_pending()  # not yet
    pb.advance(2)
    error = pb.charger_receives_error("InternalError", uid)
    assert "did not answer" in error.raw[3]
    assert "call.timeout" in pb.emitted_kinds()
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:00.000Z"})
    pb.nothing_pending()  # no second answer to the charger
    assert "frame.stray" in pb.emitted_kinds()


def test_call_timeout_is_a_setting() -> None:
    pb = Playbook.translated(settings=CoreSettings(call_timeout=5.0))
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_receives("Heartbeat")
    pb.advance(6)
    pb.charger_receives_error("InternalError", uid)


def test_calls_queue_behind_a_timed_out_call() -> None:
    pb = Playbook.translated()
    first = pb.charger_sends("Heartbeat", {})
    second = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_receives("Heartbeat")
    assert not pb.to_csms  # one outstanding CALL toward the CSMS
    pb.advance(21)
    pb.charger_receives_error("InternalError", first)
    call = pb.csms_receives("Authorize")
    pb.csms_answers(call, {"idTokenInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result(second) == {"idTagInfo": {"status": "Accepted"}}
    pb.nothing_pending()


def test_answers_are_matched_by_id_not_by_order() -> None:
    pb = Playbook.translated()
    first = pb.charger_sends("Heartbeat", {})
    second = pb.charger_sends("Heartbeat", {})
    call = pb.csms_receives("Heartbeat")
    pb.csms_sends_raw(f'[3,"{first}",{{"currentTime":"2024-05-01T10:00:00.000Z"}}]')  # the charger's id: stray
    pb.nothing_pending()
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:00.000Z"})
    assert pb.charger_receives_result(first) == {"currentTime": "2024-05-01T10:00:00.000Z"}
    call = pb.csms_receives("Heartbeat")
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:01.000Z"})
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:02.000Z"})  # duplicate: dropped
    assert pb.charger_receives_result(second) == {"currentTime": "2024-05-01T10:00:01.000Z"}
    pb.nothing_pending()


def test_stray_answers_from_either_side_are_dropped() -> None:
    pb = Playbook.translated()
    pb.csms_sends_raw('[3,"never-sent",{}]')
    pb.csms_sends_raw('[4,"never-sent","GenericError","",{}]')
    pb.charger_sends_raw('[3,"never-sent",{}]')
    pb.charger_sends_raw('[4,"never-sent","GenericError","",{}]')
    pb.nothing_pending()
    assert pb.emitted_kinds().count("frame.stray") == 4


# --- invalid answers from the CSMS ------------------------------------------------------------------------


def test_invalid_csms_result_is_an_internal_error_for_the_charger() -> None:
    pb = Playbook.translated(Version.V201)
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_answers(pb.csms_receives("Heartbeat"), {"currentTime": "not a time"})
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()  # 2.0.1 has no way to tell the CSMS
    assert "frame.invalid" in pb.emitted_kinds()


def test_invalid_csms_result_on_2_1_gets_a_callresulterror() -> None:
    pb = Playbook.translated(Version.V21)
    uid = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    call = pb.csms_receives("Authorize")
    pb.csms_answers(call, {"idTokenInfo": {"status": "Sure"}})
    assert len(pb.to_csms) == 1
    rejection = pb.to_csms.pop(0)
    assert rejection.type_id == 5
    assert rejection.raw[1] == call.unique_id  # the id of the faulty CALLRESULT
    assert rejection.raw[2] == "PropertyConstraintViolation"
    assert isinstance(rejection.raw[3], str)
    assert rejection.raw[4] == {}
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_invalid_transaction_event_result_is_not_a_fake_acceptance(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0,
                                                "timestamp": "2024-05-01T10:00:00Z"})
    event = pb.csms_receives("TransactionEvent")
    pb.csms_answers(event, {"idTokenInfo": {"status": "Yes"}})
    assert "frame.invalid" in pb.emitted_kinds()
    if upstream is Version.V21:  # 21P4 §4.2.3: the CSMS hears that its CALLRESULT was unusable
        rejection = pb.to_csms.pop(0)
        assert rejection.raw[:3] == [5, event.unique_id, "PropertyConstraintViolation"]
    # the transaction is stored and stays: the charger gets its id, but no acceptance the CSMS did not give
    assert pb.charger_receives_result(uid) == {"transactionId": 1, "idTagInfo": {"status": "Invalid"}}
    pb.nothing_pending()
    retry = [e for e in pb.emitted if e.kind == "queue.retry"]
    assert [(e.fields["action"], e.fields["attempts"]) for e in retry] == [("TransactionEvent", 1)]
    pb.advance(CoreSettings().retry_delay(1))  # an invalid answer is no answer: the event is sent again
    again = pb.csms_receives("TransactionEvent")
    assert again.payload == event.payload
    assert again.unique_id != event.unique_id


def test_malformed_csms_result_frame() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    call = pb.csms_receives("Heartbeat")
    pb.csms_sends_raw(f'[3,"{call.unique_id}","not an object"]')
    pb.csms_receives_error("FormatViolation", call.unique_id)
    pb.advance(21)  # the call itself is still unanswered
    pb.charger_receives_error("InternalError", uid)


# --- bugs inside handlers --------------------------------------------------------------------------------


def _boom(*_: Any) -> None:
    raise RuntimeError("handler bug")


def test_exception_in_a_charger_handler_becomes_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHARGER_ROUTES, "Heartbeat", dataclasses.replace(CHARGER_ROUTES["Heartbeat"],
                                                                         handler=_boom))
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})  # feed() returns normally
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()
    bug = [e for e in pb.emitted if e.kind == "bug"]
    assert "handler bug" in bug[-1].fields["error"]
    # the session keeps working
    auth = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result(auth) == {"idTagInfo": {"status": "Accepted"}}


def test_exception_in_a_continuation_becomes_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authorize, "id_tag_info", _boom)
    pb = Playbook.translated()
    uid = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"}})
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_exception_in_a_csms_handler_becomes_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CSMS_ROUTES, "DataTransfer", dataclasses.replace(CSMS_ROUTES["DataTransfer"],
                                                                         handler=_boom))
    pb = Playbook.translated()
    uid = pb.csms_sends("DataTransfer", {"vendorId": "v"})
    pb.csms_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_handler_answering_with_an_invalid_payload_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(session: TranslatingSession, call: Call) -> None:
        session.reply_charger(call, {"currentTime": 12})

    monkeypatch.setitem(CHARGER_ROUTES, "Heartbeat", dataclasses.replace(CHARGER_ROUTES["Heartbeat"],
                                                                         handler=wrong))
    pb = Playbook.translated(settings=CoreSettings(validate_output=True))  # the check under test
    uid = pb.charger_sends("Heartbeat", {})
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_handler_calling_the_csms_with_an_invalid_payload_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(session: TranslatingSession, call: Call) -> None:
        session.call_csms("Heartbeat", {"extra": 1},
                          lambda outcome: session.relay_failure(call, outcome, to="charger"))

    monkeypatch.setitem(CHARGER_ROUTES, "Heartbeat", dataclasses.replace(CHARGER_ROUTES["Heartbeat"],
                                                                         handler=wrong))
    pb = Playbook.translated(settings=CoreSettings(validate_output=True))  # the check under test
    uid = pb.charger_sends("Heartbeat", {})
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()  # nothing invalid reached the CSMS


def test_a_call_is_never_answered_twice() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_receives("Heartbeat")
    pb.advance(21)
    pb.charger_receives_error("InternalError", uid)
    # a handler that answers again after the timeout (the handler API) produces nothing on the wire
    pb.session.reply_charger(Call(uid, "Heartbeat", {}), {"currentTime": "2024-05-01T10:00:00.000Z"})
    pb.session.fail_charger(Call(uid, "Heartbeat", {}), ErrorCode.GENERIC_ERROR, "again")
    pb.feed(Tick(pb.now))
    pb.nothing_pending()


def test_events_before_session_started_are_reported_not_raised() -> None:
    session = TranslatingSession("CP-1", Version.V201, CoreSettings(), lambda: "id")
    commands = session.feed(FrameFromCharger('[2,"1","Heartbeat",{}]', T0))
    assert [c.kind for c in commands if hasattr(c, "kind")] == ["bug"]
    commands = session.feed(SessionStarted(T0, ChargerState.empty("CP-1")))
    assert commands == []


# --- output that cannot be encoded ----------------------------------------------------------------------


def test_an_answer_that_cannot_be_encoded_still_answers_the_charger() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    # schema-valid (2.x integers have no maximum) but beyond any 64-bit integer once made an int for 1.6
    pb.csms_sends_raw(f'[3,"{pb.csms_receives("BootNotification").unique_id}",'
                      '{"status":"Accepted","currentTime":"2024-05-01T10:00:00Z","interval":1e30}]')
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_a_queued_call_that_cannot_be_encoded_does_not_block_the_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    def two_calls(session: TranslatingSession, call: Call) -> None:
        session.call_csms("Heartbeat", {}, lambda outcome: None)
        session.call_csms("DataTransfer", {"vendorId": "v", "data": 2**70},  # valid, but not encodable
                          lambda outcome: session.relay_failure(call, outcome, to="charger"))

    monkeypatch.setitem(CHARGER_ROUTES, "Heartbeat", dataclasses.replace(CHARGER_ROUTES["Heartbeat"],
                                                                         handler=two_calls))
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    heartbeat = pb.csms_receives("Heartbeat")
    pb.csms_answers(heartbeat, {"currentTime": "2024-05-01T10:00:00.000Z"})  # the lane now sends the next call
    assert ScheduleWakeup(pb.now) in pb.commands  # ... which cannot be sent: it expires at once
    pb.advance(0)
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()
    other = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})  # the lane is free again
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result(other) == {"idTagInfo": {"status": "Accepted"}}


def test_timers_run_once_when_due_and_can_be_replaced_or_cancelled() -> None:
    from ocpp_bridge.core.events import ScheduleWakeup

    pb = Playbook.translated()
    fired: list[str] = []
    pb.session.set_timer("a", pb.now + 5, lambda: fired.append("a"))
    pb.session.set_timer("b", pb.now + 3, lambda: fired.append("b"))
    pb.session.set_timer("c", pb.now + 1, lambda: fired.append("c"))
    pb.session.cancel_timer("c")
    wakeups = [c.at for c in pb.advance(0) if isinstance(c, ScheduleWakeup)]
    assert wakeups == [pb.now + 3]  # the earliest live timer
    pb.session.set_timer("b", pb.now + 4, lambda: fired.append("b2"))  # replaced
    pb.advance(3.5)
    assert fired == []
    pb.advance(1)
    assert fired == ["b2"]
    pb.advance(10)
    assert fired == ["b2", "a"]


def test_a_failing_timer_is_contained() -> None:
    pb = Playbook.translated()

    def boom() -> None:
        raise RuntimeError("timer bug")

    pb.session.set_timer("x", pb.now + 1, boom)
    pb.advance(2)  # must not raise
    assert "bug" in pb.emitted_kinds()
