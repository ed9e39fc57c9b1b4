"""OCPP-J framing: the five message types, per-version error spelling, and frames that must not be used.

Pure rpc.parse / rpc.serialize first, then the same rules seen through a session (what each peer receives).
"""

from __future__ import annotations

import orjson
import pytest

from ocpp_bridge.core import rpc
from ocpp_bridge.core.rpc import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    ErrorCode,
    FrameError,
    Send,
    UnknownMessageType,
    Version,
)
from tests.playbook import Playbook

ALL_VERSIONS = list(Version)

# --- parse / serialize: the five message types ------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_call_round_trip(version: Version) -> None:
    text = '[2,"19223201","BootNotification",{"chargePointVendor":"Acme","chargePointModel":"X1"}]'
    frame = rpc.parse(text, version)
    assert frame == Call("19223201", "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert orjson.loads(rpc.serialize(frame, version)) == orjson.loads(text)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_callresult_round_trip(version: Version) -> None:
    text = '[3,"19223201",{"currentTime":"2024-05-01T10:00:00.000Z"}]'
    frame = rpc.parse(text, version)
    assert frame == CallResult("19223201", {"currentTime": "2024-05-01T10:00:00.000Z"})
    assert orjson.loads(rpc.serialize(frame, version)) == orjson.loads(text)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_callerror_round_trip(version: Version) -> None:
    frame = rpc.parse('[4,"162376037","NotSupported","SetDisplayMessage is not supported",{"k":1}]', version)
    assert frame == CallError("162376037", ErrorCode.NOT_SUPPORTED, "SetDisplayMessage is not supported", {"k": 1})
    assert orjson.loads(rpc.serialize(frame, version)) == \
        [4, "162376037", "NotSupported", "SetDisplayMessage is not supported", {"k": 1}]


def test_callresulterror_and_send_are_2_1_message_types() -> None:
    error = rpc.parse('[5,"abc","PropertyConstraintViolation","bad status",{}]', Version.V21)
    assert error == CallResultError("abc", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "bad status", {})
    assert orjson.loads(rpc.serialize(error, Version.V21)) == [5, "abc", "PropertyConstraintViolation",
                                                                "bad status", {}]
    send = rpc.parse('[6,"s-1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"x","data":[]}]',
                     Version.V21)
    assert isinstance(send, Send)
    assert send.action == "NotifyPeriodicEventStream"
    assert orjson.loads(rpc.serialize(send, Version.V21))[:3] == [6, "s-1", "NotifyPeriodicEventStream"]


@pytest.mark.parametrize("version", [Version.V16, Version.V201])
@pytest.mark.parametrize("text", ['[5,"abc","GenericError","",{}]', '[6,"abc","Heartbeat",{}]', '[7,"abc",{}]'])
def test_types_5_and_6_are_unknown_before_2_1(version: Version, text: str) -> None:
    with pytest.raises(UnknownMessageType) as caught:
        rpc.parse(text, version)
    assert caught.value.unique_id == "abc"


def test_unknown_type_on_2_1() -> None:
    with pytest.raises(UnknownMessageType):
        rpc.parse('[7,"abc",{}]', Version.V21)


# --- error-code spelling --------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "v16", "v2"), [
    (ErrorCode.FORMAT_VIOLATION, "FormationViolation", "FormatViolation"),
    (ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    (ErrorCode.RPC_FRAMEWORK_ERROR, "FormationViolation", "RpcFrameworkError"),
    (ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, "GenericError", "MessageTypeNotSupported"),
    (ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "PropertyConstraintViolation", "PropertyConstraintViolation"),
    (ErrorCode.TYPE_CONSTRAINT_VIOLATION, "TypeConstraintViolation", "TypeConstraintViolation"),
    (ErrorCode.NOT_IMPLEMENTED, "NotImplemented", "NotImplemented"),
    (ErrorCode.INTERNAL_ERROR, "InternalError", "InternalError"),
])
def test_error_codes_are_spelled_per_version(code: ErrorCode, v16: str, v2: str) -> None:
    frame = CallError("1", code, "x")
    assert orjson.loads(rpc.serialize(frame, Version.V16))[2] == v16
    assert orjson.loads(rpc.serialize(frame, Version.V201))[2] == v2
    assert orjson.loads(rpc.serialize(frame, Version.V21))[2] == v2


@pytest.mark.parametrize(("name", "code"), [
    ("FormationViolation", ErrorCode.FORMAT_VIOLATION),
    ("FormatViolation", ErrorCode.FORMAT_VIOLATION),
    ("OccurenceConstraintViolation", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    ("OccurrenceConstraintViolation", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    ("MessageTypeErrorSupported", ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED),
    ("SomethingMadeUp", ErrorCode.GENERIC_ERROR),
])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_both_spellings_are_read_from_either_side(version: Version, name: str, code: ErrorCode) -> None:
    frame = rpc.parse(orjson.dumps([4, "1", name, "", {}]), version)
    assert isinstance(frame, CallError)
    assert frame.code is code


def test_error_description_is_truncated_to_255() -> None:
    frame = rpc.parse(orjson.dumps([4, "1", "GenericError", "d" * 1000, {}]), Version.V16)
    assert isinstance(frame, CallError)
    assert len(frame.description) == 255
    assert len(orjson.loads(rpc.serialize(CallError("1", ErrorCode.GENERIC_ERROR, "e" * 999), Version.V16))[3]) \
        == 255


def test_non_object_error_details_become_empty() -> None:
    frame = rpc.parse('[4,"1","GenericError","",[1,2]]', Version.V16)
    assert isinstance(frame, CallError)
    assert frame.details == {}


# --- frames that cannot be used ---------------------------------------------------------------------------


def _frame_error(text: str | bytes, version: Version = Version.V16) -> FrameError:
    with pytest.raises(FrameError) as caught:
        rpc.parse(text, version)
    return caught.value


@pytest.mark.parametrize("text", [
    '[2,"1","Heartbeat",{',  # truncated
    '[2,"1","Heartbeat",{}] trailing garbage',
    b'[2,"1","Heartbeat",{"x":"\xff\xfe"}]',  # invalid UTF-8
    '{"messageTypeId":2}',  # object, not array
    '"just a string"',
    "42",
    "null",
    "",
    "[]",
    "[2]",
    '[2,"1"]',
    "[" * 100_000 + "]" * 100_000,  # deep nesting
    "[2,\"1\",\"DataTransfer\",{\"vendorId\":" + "1" * 1_000_000 + "}]",  # a million-digit integer
])
def test_unusable_frames_raise_frame_error(text: str | bytes) -> None:
    error = _frame_error(text)
    assert error.code in (ErrorCode.RPC_FRAMEWORK_ERROR, ErrorCode.FORMAT_VIOLATION)


@pytest.mark.parametrize("text", ['{', '{"a":1}', "[]", "[2]", "[" * 100_000 + "]" * 100_000, '[2,5,"Heartbeat",{}]',
                                  '[2,null,"Heartbeat",{}]', '[2,"","Heartbeat",{}]'])
def test_unreadable_message_id_is_minus_one(text: str) -> None:
    assert _frame_error(text).unique_id == "-1"


def test_message_id_longer_than_36_is_unreadable() -> None:
    assert _frame_error(orjson.dumps([2, "x" * 37, "Heartbeat", {}])).unique_id == "-1"
    assert isinstance(rpc.parse(orjson.dumps([2, "x" * 36, "Heartbeat", {}]), Version.V16), Call)


@pytest.mark.parametrize(("text", "unique_id"), [
    ('["2","id-1","Heartbeat",{}]', "id-1"),  # type id as string
    ("[2.0,\"id-1\",\"Heartbeat\",{}]", "id-1"),  # type id as float
    ('[true,"id-1","Heartbeat",{}]', "id-1"),
    ('[2,"id-1","Heartbeat",{},{}]', "id-1"),  # CALL arity 5
    ('[2,"id-1","Heartbeat"]', "id-1"),  # CALL arity 3
    ('[2,"id-1",7,{}]', "id-1"),  # action not a string
    ('[2,"id-1","",{}]', "id-1"),  # empty action
    ('[3,"id-1",{},{}]', "id-1"),  # CALLRESULT arity 4
    ('[4,"id-1","GenericError",""]', "id-1"),  # CALLERROR arity 4
    ('[4,"id-1",5,"",{}]', "id-1"),  # CALLERROR code not a string
])
def test_wrong_shape_keeps_the_readable_id(text: str, unique_id: str) -> None:
    error = _frame_error(text)
    assert error.code is ErrorCode.RPC_FRAMEWORK_ERROR
    assert error.unique_id == unique_id


@pytest.mark.parametrize("text", ['[2,"id-1","Heartbeat",[]]', '[2,"id-1","Heartbeat",null]', '[3,"id-1","x"]'])
def test_payload_must_be_an_object(text: str) -> None:
    error = _frame_error(text)
    assert error.code is ErrorCode.FORMAT_VIOLATION
    assert error.unique_id == "id-1"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" * 400])
def test_non_finite_numbers_are_refused(number: str) -> None:
    # orjson reads 1e999 as infinity (or refuses it); either way the frame is unusable, never translated
    error = _frame_error(f'[2,"id-1","DataTransfer",{{"vendorId":"v","data":[{number}]}}]')
    assert error.code in (ErrorCode.RPC_FRAMEWORK_ERROR, ErrorCode.FORMAT_VIOLATION)


@pytest.mark.parametrize(("text", "outcome"), [
    (b"\x00\x01", FrameError),
    ("\ud800", FrameError),  # a lone surrogate cannot even be encoded
    ('"\\ud800"', FrameError),  # nor decoded from an escape
    ('[2,"1","A",{"a":"\\ud800"}]', FrameError),
    ("[NaN]", FrameError),
    ("[Infinity]", FrameError),
    ("9" * 5000, FrameError),
    ('[2,"1","A",{"a":1,"a":2}]', Call),  # duplicate keys: the last one wins, as everywhere in JSON land
    ('[2,"1","A",{"a":18446744073709551615}]', Call),
])
def test_parse_raises_nothing_but_its_own_errors_on_odd_input(text: str | bytes, outcome: type) -> None:
    try:
        result: object = rpc.parse(text, Version.V16)
    except (FrameError, UnknownMessageType) as exc:
        result = exc
    assert type(result) is outcome


# --- the same rules as the peers see them -------------------------------------------------------------


def test_charger_gets_1_6_spelling_for_an_unreadable_frame() -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw('[2,"1","Heartbeat",{')
    error = pb.charger_receives_error("FormationViolation", "-1")
    assert '[2,"1"' not in error.raw[3]  # the bad JSON is never echoed
    assert "frame.invalid" in pb.emitted_kinds()
    pb.nothing_pending()


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_csms_gets_2x_spelling_for_an_unreadable_frame(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    pb.csms_sends_raw("not json at all")
    pb.csms_receives_error("RpcFrameworkError", "-1")
    pb.nothing_pending()


def test_non_array_from_charger() -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw('{"action":"Heartbeat"}')
    pb.charger_receives_error("FormationViolation", "-1")
    pb.nothing_pending()


def test_long_message_id_from_charger_gets_error_with_unreadable_id() -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw(orjson.dumps([2, "m" * 37, "Heartbeat", {}]))
    pb.charger_receives_error("FormationViolation", "-1")
    pb.nothing_pending()


def test_wrong_arity_from_charger_keeps_its_id() -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw('[2,"hb-1","Heartbeat"]')
    pb.charger_receives_error("FormationViolation", "hb-1")
    pb.nothing_pending()


def test_payload_not_object_from_charger() -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw('[2,"hb-1","Heartbeat",[]]')
    pb.charger_receives_error("FormationViolation", "hb-1")
    pb.nothing_pending()


@pytest.mark.parametrize("text", ['[7,"x",{}]', '[5,"x","GenericError","",{}]', '[6,"x","Heartbeat",{}]'])
def test_unknown_message_type_from_charger_is_ignored(text: str) -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw(text)
    pb.nothing_pending()
    assert "frame.ignored" in pb.emitted_kinds()


def test_unknown_message_type_from_2_0_1_csms_gets_message_type_not_supported() -> None:
    pb = Playbook.translated(Version.V201)
    pb.csms_sends_raw('[7,"x",{}]')
    pb.csms_receives_error("MessageTypeNotSupported", "x")
    pb.csms_sends_raw('[6,"y","Heartbeat",{}]')  # SEND is not a 2.0.1 message type either
    pb.csms_receives_error("MessageTypeNotSupported", "y")
    pb.nothing_pending()


def test_unknown_message_type_from_2_1_csms_is_ignored() -> None:
    pb = Playbook.translated(Version.V21)
    pb.csms_sends_raw('[7,"x",{}]')
    pb.nothing_pending()
    assert "frame.ignored" in pb.emitted_kinds()


def test_send_and_callresulterror_from_2_1_csms_are_not_answered_or_forwarded() -> None:
    pb = Playbook.translated(Version.V21)
    pb.csms_sends_raw('[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"x","data":[]}]')
    pb.csms_sends_raw('[5,"r1","GenericError","your result was bad",{}]')
    pb.nothing_pending()
    assert "csms.rejected_result" in pb.emitted_kinds()


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '[2,"id-1","DataTransfer",{"vendorId":"v","data":' + "[" * 100_000 + "]" * 100_000 + "}]",
    '[2,"id-1","DataTransfer",{"vendorId":"v","data":"' + "1" * 10 + '","x":' + "9" * 1_000_000 + "}]",
    '[2,"id-1","MeterValues",{"connectorId":123456789012345678901234567890,"meterValue":[]}]',
    '[2,"id-1","DataTransfer",{"vendorId":"v","data":1e999}]',
])
def test_pathological_frames_never_raise(text: str) -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw(text)
    assert len(pb.to_charger) == 1
    assert pb.to_charger[0].type_id == 4  # a CALLERROR, nothing translated
    assert not pb.to_csms
    pb = Playbook.translated()
    pb.csms_sends_raw(text)
    assert len(pb.to_csms) == 1
    assert pb.to_csms[0].type_id == 4
    assert not pb.to_charger
