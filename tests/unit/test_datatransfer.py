"""DataTransfer in both directions (mapping reference §2.1): ``data`` is a string in 1.6, any JSON in 2.x."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ocpp_bridge.core.rpc import Version
from tests.playbook import Playbook

# --- charger -> CSMS -------------------------------------------------------------------------------------


def test_charger_data_transfer_is_passed_through() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "com.acme", "messageId": "Ping", "data": "héllo ☃"})
    call = pb.csms_receives("DataTransfer")
    assert call.payload == {"vendorId": "com.acme", "messageId": "Ping", "data": "héllo ☃"}
    pb.csms_answers(call, {"status": "Accepted", "data": "pong"})
    assert pb.charger_receives_result(uid) == {"status": "Accepted", "data": "pong"}
    pb.nothing_pending()


def test_charger_data_transfer_without_optional_fields() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "com.acme"})
    call = pb.csms_receives("DataTransfer")
    assert call.payload == {"vendorId": "com.acme"}
    pb.csms_answers(call, {"status": "UnknownVendorId"})
    assert pb.charger_receives_result(uid) == {"status": "UnknownVendorId"}


@pytest.mark.parametrize("status", ["Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"])
def test_response_statuses_are_the_same(status: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "v"})
    pb.csms_answers(pb.csms_receives("DataTransfer"), {"status": status})
    assert pb.charger_receives_result(uid) == {"status": status}


@pytest.mark.parametrize("data", [{"a": [1, 2]}, [1, "x"], 42, 1.5, True, None])
def test_non_string_answer_data_reaches_the_charger_as_json_text(data: Any) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "v", "messageId": "m"})
    pb.csms_answers(pb.csms_receives("DataTransfer"), {"status": "Accepted", "data": data})
    result = pb.charger_receives_result(uid)
    assert isinstance(result["data"], str)
    assert orjson.loads(result["data"]) == data


def test_charger_data_must_be_a_string() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "v", "data": {"a": 1}})
    pb.charger_receives_error("TypeConstraintViolation", uid)
    pb.nothing_pending()


def test_csms_error_is_relayed_to_the_charger() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DataTransfer", {"vendorId": "v"})
    pb.csms_fails(pb.csms_receives("DataTransfer"), "FormatViolation")
    pb.charger_receives_error("FormationViolation", uid)


# --- CSMS -> charger -------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_csms_data_transfer_reaches_the_charger(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("DataTransfer", {"vendorId": "com.acme", "messageId": "Cfg", "data": "x=1"})
    call = pb.charger_receives("DataTransfer")
    assert call.payload == {"vendorId": "com.acme", "messageId": "Cfg", "data": "x=1"}
    assert call.unique_id != uid  # the bridge's own ids toward the charger
    pb.charger_answers(call, {"status": "Accepted", "data": "ok"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "data": "ok"}
    pb.nothing_pending()


@pytest.mark.parametrize("data", [{"limit": 16, "phases": [1, 2, 3]}, [1, 2], 7, 0.25, False, None, {}])
def test_non_string_data_reaches_the_charger_as_json_text(data: Any) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("DataTransfer", {"vendorId": "v", "data": data})
    call = pb.charger_receives("DataTransfer")
    assert isinstance(call.payload["data"], str)
    assert orjson.loads(call.payload["data"]) == data
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}


def test_csms_data_transfer_without_data() -> None:
    pb = Playbook.translated()
    pb.csms_sends("DataTransfer", {"vendorId": "v", "messageId": "m"})
    assert pb.charger_receives("DataTransfer").payload == {"vendorId": "v", "messageId": "m"}


@pytest.mark.parametrize(("charger_code", "csms_code"), [
    ("FormationViolation", "FormatViolation"),
    ("OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    ("NotImplemented", "NotImplemented"),
])
def test_charger_error_is_relayed_to_the_csms_with_2x_spelling(charger_code: str, csms_code: str) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("DataTransfer", {"vendorId": "v"})
    pb.charger_fails(pb.charger_receives("DataTransfer"), charger_code, "no")
    pb.csms_receives_error(csms_code, uid)
    pb.nothing_pending()


def test_charger_that_does_not_answer() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("DataTransfer", {"vendorId": "v"})
    call = pb.charger_receives("DataTransfer")
    pb.advance(21)
    pb.csms_receives_error("InternalError", uid)
    pb.charger_answers(call, {"status": "Accepted"})  # too late: dropped, not forwarded
    pb.nothing_pending()
    assert "frame.stray" in pb.emitted_kinds()


def test_invalid_charger_answer_is_an_internal_error_for_the_csms() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("DataTransfer", {"vendorId": "v"})
    pb.charger_answers(pb.charger_receives("DataTransfer"), {"status": "Maybe"})
    pb.csms_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_data_too_deep_to_carry_fails_cleanly() -> None:
    # deeper than the JSON encoder will write (but within what the decoder reads)
    deep = "[" * 600 + '"x"' + "]" * 600
    pb = Playbook.translated()
    pb.csms_sends_raw('[2,"deep-1","DataTransfer",{"vendorId":"v","data":' + deep + "}]")
    pb.csms_receives_error("InternalError", "deep-1")
    pb.nothing_pending()


def test_calls_to_the_charger_queue_one_at_a_time() -> None:
    pb = Playbook.translated()
    first = pb.csms_sends("DataTransfer", {"vendorId": "v", "messageId": "1"})
    second = pb.csms_sends("DataTransfer", {"vendorId": "v", "messageId": "2"})
    call = pb.charger_receives("DataTransfer")
    assert call.payload["messageId"] == "1"
    assert not pb.to_charger  # OCPP-J: one outstanding CALL per direction
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(first) == {"status": "Accepted"}
    call = pb.charger_receives("DataTransfer")
    assert call.payload["messageId"] == "2"
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(second) == {"status": "Rejected"}
