"""Schema validation of every CALL, in both directions, and the OCPP-J error category each violation gets.

Toward the charger the codes are spelled the 1.6-J way; toward the CSMS the 2.x way. Nothing invalid is
translated or forwarded.
"""

from __future__ import annotations

import copy
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge.core import validate
from ocpp_bridge.core.rpc import ErrorCode, Version
from tests.playbook import Playbook

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}


def _without(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != name}


# --- charger CALLs: 1.6-J spelling ----------------------------------------------------------------------


@pytest.mark.parametrize(("action", "payload", "code"), [
    # a required field is missing
    ("BootNotification", _without(BOOT, "chargePointVendor"), "OccurenceConstraintViolation"),
    ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}, "OccurenceConstraintViolation"),
    ("MeterValues", {"connectorId": 1, "meterValue": []}, "OccurenceConstraintViolation"),  # minItems 1
    # a field has the wrong JSON type
    ("BootNotification", {**BOOT, "chargePointModel": 7}, "TypeConstraintViolation"),
    ("StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
     "TypeConstraintViolation"),
    ("StartTransaction", {"connectorId": 1.0, "idTag": "A", "meterStart": 0, "timestamp": "2024-01-01T00:00:00Z"},
     "TypeConstraintViolation"),  # draft-04: 1.0 is not an integer
    ("BootNotification", {**BOOT, "firmwareVersion": None}, "TypeConstraintViolation"),  # null is not "absent"
    # a value that is not allowed: enum, length, format
    ("BootNotification", {**BOOT, "chargePointModel": "M" * 21}, "PropertyConstraintViolation"),
    ("StatusNotification", {"connectorId": 1, "errorCode": "Bogus", "status": "Available"},
     "PropertyConstraintViolation"),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"},
     "PropertyConstraintViolation"),
    ("Authorize", {"idTag": "T" * 21}, "PropertyConstraintViolation"),
    ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "yesterday"},
     "PropertyConstraintViolation"),
    # a property the PDU does not have
    ("BootNotification", {**BOOT, "colour": "red"}, "FormationViolation"),
    ("Heartbeat", {"now": 1}, "FormationViolation"),
])
def test_invalid_charger_call_gets_1_6_error_and_is_not_forwarded(action: str, payload: dict[str, Any],
                                                                  code: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends(action, payload)
    error = pb.charger_receives_error(code, uid)
    assert error.raw[3].startswith(action)  # the description says which message and field
    pb.nothing_pending()
    assert "frame.invalid" in pb.emitted_kinds()


@pytest.mark.parametrize("stamp", [
    "2024-06-30T23:59:60Z",  # leap second: datetime cannot hold it
    "0000-01-01T00:00:00Z",  # year 0
    "9999-12-31T23:59:59-01:00",  # overflows when moved to UTC
    "2024-02-30T10:00:00Z",
    "2024-01-01 10:00:00Z",
    "2024-01-01T10:00:00",  # no offset
])
def test_unrepresentable_timestamp_is_a_property_violation_not_a_crash(stamp: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": stamp})
    pb.charger_receives_error("PropertyConstraintViolation", uid)
    pb.nothing_pending()
    assert "bug" not in pb.emitted_kinds()


@pytest.mark.parametrize("stamp", ["2024-01-01t10:00:00z", "2024-01-01T10:00:00.5+0100",
                                   "2024-01-01T10:00:00.123456789-05:30"])
def test_lenient_but_valid_timestamps_are_accepted(stamp: str) -> None:
    pb = Playbook.translated()
    pb.charger_sends("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": stamp})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["timestamp"].endswith("Z")


@pytest.mark.parametrize("action", ["FooBar", "TransactionEvent", "NotifyEvent"])
def test_unknown_charger_action_is_not_implemented_and_never_forwarded(action: str) -> None:
    # 2.0.1 action names are just as unknown to a 1.6 charger session as made-up ones
    pb = Playbook.translated()
    uid = pb.charger_sends(action, {})
    pb.charger_receives_error("NotImplemented", uid)
    pb.nothing_pending()


def test_known_1_6_action_the_charger_may_not_send_is_not_supported() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Reset", {"type": "Soft"})  # a Central System -> Charge Point message
    pb.charger_receives_error("NotSupported", uid)
    pb.nothing_pending()


def test_duplicate_in_flight_message_id_from_charger() -> None:
    pb = Playbook.translated()
    pb.charger_sends("Heartbeat", {}, unique_id="same")
    call = pb.csms_receives("Heartbeat")
    pb.charger_sends("Heartbeat", {}, unique_id="same")
    pb.charger_receives_error("ProtocolError", "same")
    pb.nothing_pending()  # the duplicate was not forwarded
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:00.000Z"})
    assert pb.charger_receives_result("same") == {"currentTime": "2024-05-01T10:00:00.000Z"}
    # once answered, the id may be used again
    pb.charger_sends("Heartbeat", {}, unique_id="same")
    pb.csms_receives("Heartbeat")


# --- CSMS CALLs: 2.x spelling --------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
@pytest.mark.parametrize(("payload", "code"), [
    ({"messageId": "m"}, "OccurrenceConstraintViolation"),
    ({"vendorId": 7}, "TypeConstraintViolation"),
    ({"vendorId": "v" * 256}, "PropertyConstraintViolation"),
    ({"vendorId": "v", "colour": "red"}, "FormatViolation"),
])
def test_invalid_csms_call_gets_2x_error(upstream: Version, payload: dict[str, Any], code: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("DataTransfer", payload)
    pb.csms_receives_error(code, uid)
    pb.nothing_pending()


@pytest.mark.parametrize("action", ["FooBar", "RemoteStartTransaction", "StartTransaction"])
def test_unknown_csms_action_is_not_implemented(action: str) -> None:
    # 1.6 action names are not 2.x actions: the CSMS cannot ask for them
    pb = Playbook.translated()
    uid = pb.csms_sends(action, {})
    pb.csms_receives_error("NotImplemented", uid)
    pb.nothing_pending()


def test_station_only_action_from_the_csms_is_not_supported() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("Heartbeat", {})  # a 2.x action, but one only a station sends
    pb.csms_receives_error("NotSupported", uid)
    pb.nothing_pending()


def test_duplicate_in_flight_message_id_from_csms() -> None:
    pb = Playbook.translated()
    pb.csms_sends("DataTransfer", {"vendorId": "v"}, unique_id="dup")
    pb.charger_receives("DataTransfer")
    pb.csms_sends("DataTransfer", {"vendorId": "v"}, unique_id="dup")
    pb.csms_receives_error("RpcFrameworkError", "dup")
    pb.nothing_pending()


# --- the validator itself ---------------------------------------------------------------------------------


def test_validation_never_changes_the_payload() -> None:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2024-01-01T00:00:00Z",
                                                 "sampledValue": [{"value": "1"}]}]}
    before = copy.deepcopy(payload)
    assert validate.check(Version.V16, "MeterValues", payload, response=False) is None
    assert payload == before  # no schema defaults (context, unit, ...) filled in


def test_unknown_action_is_not_implemented() -> None:
    violation = validate.check(Version.V201, "FooBar", {}, response=False)
    assert violation is not None
    assert violation.code is ErrorCode.NOT_IMPLEMENTED


def test_actions_per_version() -> None:
    assert validate.knows(Version.V16, "StartTransaction")
    assert not validate.knows(Version.V201, "StartTransaction")
    assert validate.knows(Version.V201, "TransactionEvent")
    assert validate.knows(Version.V21, "AFRRSignal")
    assert not validate.knows(Version.V201, "AFRRSignal")
    assert not validate.knows(Version.V16, "StartTransactionResponse")  # responses are not actions


def test_responses_are_validated_with_their_own_schema() -> None:
    good = {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300}
    assert validate.check(Version.V201, "BootNotification", good, response=True) is None
    violation = validate.check(Version.V201, "BootNotification", {**good, "status": "Maybe"}, response=True)
    assert violation is not None
    assert violation.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert violation.message.startswith("BootNotificationResponse")


def test_violation_message_is_bounded() -> None:
    violation = validate.check(Version.V16, "StatusNotification",
                               {"connectorId": 1, "errorCode": "x" * 5000, "status": "Available"}, response=False)
    assert violation is not None
    assert len(violation.message) <= 255


def test_deeply_nested_any_value_does_not_escape() -> None:
    deep: Any = []
    for _ in range(900):  # just below the JSON decoder's depth limit
        deep = [deep]
    payload = orjson.loads(orjson.dumps({"vendorId": "v"}))
    payload["data"] = deep
    assert validate.check(Version.V201, "DataTransfer", payload, response=False) is None
    assert validate.check(Version.V16, "DataTransfer", payload, response=False) is not None


def test_warm_compiles_every_schema() -> None:
    for version in Version:
        validate.warm(version)
    assert validate.check(Version.V21, "Heartbeat", {}, response=False) is None


_MEASURAND_SCHEMA = {"$schema": "http://json-schema.org/draft-06/schema#", "type": "object",
                     "properties": {"m": {"enum": ["Voltage", "Power.Offered", "SoC"]},
                                    "t": {"type": "string", "enum": ["A", "B"]},
                                    "x": {"enum": [1, "1", True, None]}},
                     "additionalProperties": False}


_ENUM_VALIDATORS = (fastjsonschema.compile(copy.deepcopy(_MEASURAND_SCHEMA), use_default=False),
                    validate._compile(copy.deepcopy(_MEASURAND_SCHEMA)))


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["m", "t", "x"]),
                       st.one_of(st.sampled_from(["Voltage", "Power.Offered", "SoC", "A", "B", "1", "voltage", ""]),
                                 st.integers(-2, 2), st.booleans(), st.none(), st.floats(allow_nan=False),
                                 st.lists(st.text(max_size=2), max_size=2), st.text(max_size=8))))
def test_enum_set_lookup_accepts_and_rejects_exactly_what_fastjsonschema_does(payload: dict[str, Any]) -> None:
    outcomes = []
    for check in _ENUM_VALIDATORS:
        try:
            check(payload)
            outcomes.append(None)
        except fastjsonschema.JsonSchemaValueException as exc:
            outcomes.append((exc.message, exc.rule))
    assert outcomes[0] == outcomes[1]
