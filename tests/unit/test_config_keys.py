"""GetVariables / SetVariables carried to a 1.6 charger as GetConfiguration / ChangeConfiguration through the
packaged key table (mapping reference §5.2, §5.5)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.mappings import load_key_table
from tests.playbook import Playbook

KEYS = load_key_table()


def _book(upstream: Version = Version.V201) -> Playbook:
    return Playbook.translated(upstream, settings=CoreSettings(keys=KEYS))


def _var(component: str, variable: str, *, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}, **extra}
    if instance is not None:
        item["variable"]["instance"] = instance
    return item


def _statuses(results: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["attributeStatus"], r.get("attributeValue")) for r in results]


# --- GetVariables ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_get_variables_reads_all_mapped_keys_in_one_get_configuration(upstream: Version) -> None:
    pb = _book(upstream)
    items = [
        _var("OCPPCommCtrlr", "HeartbeatInterval"),
        _var("AuthCtrlr", "AuthorizeRemoteStart", attributeType="Actual"),
        _var("SmartChargingCtrlr", "RateUnit"),
        _var("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent"),
        _var("OCPP16LegacyCtrlr", "BlinkRepeat"),
        _var("OCPP16LegacyCtrlr", "VendorSpecificKey"),  # not in the table: reachable as a legacy key
        _var("OCPPCommCtrlr", "HeartbeatInterval"),  # asked twice: one key, two results
    ]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["HeartbeatInterval", "AuthorizeRemoteTxRequests",
                                    "ChargingScheduleAllowedChargingRateUnit", "TransactionMessageAttempts",
                                    "BlinkRepeat", "VendorSpecificKey"]}
    pb.charger_answers(call, {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "AuthorizeRemoteTxRequests", "readonly": True, "value": "True"},
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current, Power"},
            {"key": "TransactionMessageAttempts", "readonly": False, "value": "3"},
            {"key": "BlinkRepeat", "readonly": False},  # known but not set
        ],
        "unknownKey": ["VendorSpecificKey"],
    })
    results = pb.csms_receives_result(uid)["getVariableResult"]
    assert _statuses(results) == [("Accepted", "300"), ("Accepted", "true"), ("Accepted", "A,W"),
                                  ("Accepted", "3"), ("Accepted", ""), ("UnknownVariable", None),
                                  ("Accepted", "300")]
    for item, result in zip(items, results, strict=True):  # B06.FR.01-03: each item echoed, in order
        assert result["component"] == item["component"]
        assert result["variable"] == item["variable"]
        assert result["attributeType"] == item.get("attributeType", "Actual")  # B05.FR.12 analogue


def test_get_variables_the_bridge_answers_alone() -> None:
    pb = _book()
    items = [
        _var("NoSuchCtrlr", "Enabled"),  # B06.FR.06
        _var("OCPPCommCtrlr", "NoSuchVariable"),  # B06.FR.07
        _var("OCPPCommCtrlr", "HeartbeatInterval", attributeType="Target"),  # B06.FR.08
        _var("OCPP16LegacyCtrlr", "AuthorizationKey"),  # B06.FR.09: write-only
        {"component": {"name": "OCPPCommCtrlr", "evse": {"id": 1}}, "variable": {"name": "HeartbeatInterval"}},
        _var("OCPP16LegacyCtrlr", "HeartbeatInterval"),  # a mapped key is reachable at its own address only
        _var("OCPP16LegacyCtrlr", "BlinkRepeat", instance="x"),  # legacy keys have no instances
        _var("OCPPCommCtrlr", "MessageAttempts"),  # the mapped one has instance TransactionEvent
    ]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    results = pb.csms_receives_result(uid)["getVariableResult"]
    pb.nothing_pending()
    assert [r["attributeStatus"] for r in results] == [
        "UnknownComponent", "UnknownVariable", "NotSupportedAttributeType", "Rejected", "UnknownComponent",
        "UnknownVariable", "UnknownVariable", "UnknownVariable"]
    assert results[3]["attributeStatusInfo"] == {"reasonCode": "WriteOnly"}
    assert all("attributeValue" not in r for r in results)


def test_get_variables_mixes_local_and_charger_answers_in_order() -> None:
    pb = _book()
    items = [_var("NoSuchCtrlr", "X"), _var("TxCtrlr", "EVConnectionTimeOut"), _var("TxCtrlr", "Nope")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["ConnectionTimeOut"]}
    # 1.6 keys are case-insensitive: a charger may spell them its own way
    pb.charger_answers(call, {"configurationKey": [{"key": "connectiontimeout", "readonly": False, "value": "60"}]})
    assert _statuses(pb.csms_receives_result(uid)["getVariableResult"]) == [
        ("UnknownComponent", None), ("Accepted", "60"), ("UnknownVariable", None)]


def test_a_value_the_conversion_does_not_understand_is_passed_as_it_is() -> None:
    pb = _book()
    uid = pb.csms_sends("GetVariables", {"getVariableData": [_var("AuthCtrlr", "LocalPreAuthorize")]})
    call = pb.charger_receives("GetConfiguration")
    pb.charger_answers(call, {"configurationKey": [{"key": "LocalPreAuthorize", "readonly": False,
                                                    "value": "sometimes"}]})
    assert _statuses(pb.csms_receives_result(uid)["getVariableResult"]) == [("Accepted", "sometimes")]


def test_a_key_the_charger_leaves_out_is_unknown() -> None:
    pb = _book()
    uid = pb.csms_sends("GetVariables", {"getVariableData": [_var("AuthCtrlr", "LocalPreAuthorize")]})
    pb.charger_answers(pb.charger_receives("GetConfiguration"), {})
    result = pb.csms_receives_result(uid)["getVariableResult"][0]
    assert result["attributeStatus"] == "UnknownVariable"


def test_get_variables_failures_are_relayed() -> None:
    pb = _book()
    items = [_var("OCPPCommCtrlr", "HeartbeatInterval")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    pb.charger_fails(pb.charger_receives("GetConfiguration"), "NotSupported")
    pb.csms_receives_error("NotSupported", uid)
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    pb.charger_receives("GetConfiguration")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    pb.charger_answers(pb.charger_receives("GetConfiguration"), {"configurationKey": [{"key": "HeartbeatInterval"}]})
    pb.csms_receives_error("InternalError", uid)  # readonly is required in 1.6: an invalid answer


def test_without_a_key_table_only_legacy_keys_are_reachable() -> None:
    pb = Playbook.translated()  # CoreSettings() has an empty table
    items = [_var("OCPPCommCtrlr", "HeartbeatInterval"), _var("OCPP16LegacyCtrlr", "HeartbeatInterval")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["HeartbeatInterval"]}
    pb.charger_answers(call, {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                                    "value": "60"}]})
    # OCPPCommCtrlr exists (the bridge owns its MessageTimeout[Default]); no key backs HeartbeatInterval there
    assert _statuses(pb.csms_receives_result(uid)["getVariableResult"]) == [("UnknownVariable", None),
                                                                             ("Accepted", "60")]


# --- SetVariables ---------------------------------------------------------------------------------------------


def _set(component: str, variable: str, value: str, **extra: Any) -> dict[str, Any]:
    return {**_var(component, variable, **extra), "attributeValue": value}


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_set_variables_writes_one_key_at_a_time_in_order(upstream: Version) -> None:
    pb = _book(upstream)
    items = [
        _set("OCPPCommCtrlr", "HeartbeatInterval", "300"),
        _set("SmartChargingCtrlr", "ProfileStackLevel", "3"),  # read-only: answered by the bridge
        _set("AuthCtrlr", "AuthorizeRemoteStart", "false"),
        _set("OCPP16LegacyCtrlr", "VendorSpecificKey", "on"),
        _set("TxCtrlr", "EVConnectionTimeOut", "90"),
    ]
    uid = pb.csms_sends("SetVariables", {"setVariableData": items})
    first = pb.charger_receives("ChangeConfiguration")
    assert first.payload == {"key": "HeartbeatInterval", "value": "300"}
    pb.nothing_pending()  # one at a time
    pb.charger_answers(first, {"status": "Accepted"})
    second = pb.charger_receives("ChangeConfiguration")
    assert second.payload == {"key": "AuthorizeRemoteTxRequests", "value": "false"}
    pb.charger_answers(second, {"status": "RebootRequired"})
    third = pb.charger_receives("ChangeConfiguration")
    assert third.payload == {"key": "VendorSpecificKey", "value": "on"}
    pb.charger_answers(third, {"status": "NotSupported"})
    fourth = pb.charger_receives("ChangeConfiguration")
    assert fourth.payload == {"key": "ConnectionTimeOut", "value": "90"}
    pb.charger_answers(fourth, {"status": "Rejected"})
    results = pb.csms_receives_result(uid)["setVariableResult"]
    assert [r["attributeStatus"] for r in results] == ["Accepted", "Rejected", "RebootRequired",
                                                       "UnknownVariable", "Rejected"]
    assert results[1]["attributeStatusInfo"] == {"reasonCode": "ReadOnly"}
    for item, result in zip(items, results, strict=True):  # B05.FR.01-03, B05.FR.12
        assert (result["component"], result["variable"], result["attributeType"]) == (
            item["component"], item["variable"], "Actual")


def test_a_charger_error_rejects_only_its_own_item() -> None:
    pb = _book()
    items = [_set("OCPPCommCtrlr", "HeartbeatInterval", "300"), _set("OCPPCommCtrlr", "ResetRetries", "2")]
    uid = pb.csms_sends("SetVariables", {"setVariableData": items})
    pb.charger_fails(pb.charger_receives("ChangeConfiguration"), "InternalError", "flash busy")
    second = pb.charger_receives("ChangeConfiguration")
    assert second.payload == {"key": "ResetRetries", "value": "2"}
    pb.charger_answers(second, {"status": "Accepted"})
    results = pb.csms_receives_result(uid)["setVariableResult"]
    assert results[0]["attributeStatus"] == "Rejected"
    assert results[0]["attributeStatusInfo"] == {"reasonCode": "InternalError",
                                                     "additionalInfo": "InternalError: flash busy"}
    assert results[1]["attributeStatus"] == "Accepted"


def test_a_charger_that_stops_answering_is_not_waited_for_per_item() -> None:
    pb = _book()
    items = [_set("OCPPCommCtrlr", "HeartbeatInterval", "300"), _set("OCPPCommCtrlr", "ResetRetries", "2"),
             _set("TxCtrlr", "EVConnectionTimeOut", "90")]
    uid = pb.csms_sends("SetVariables", {"setVariableData": items})
    pb.charger_receives("ChangeConfiguration")
    pb.advance(25)
    results = pb.csms_receives_result(uid)["setVariableResult"]
    pb.nothing_pending()  # no ChangeConfiguration for the remaining items
    assert [r["attributeStatus"] for r in results] == ["Rejected"] * 3
    assert results[0]["attributeStatusInfo"]["reasonCode"] == "InternalError"
    assert results[2]["attributeStatusInfo"]["reasonCode"] == "NoAnswer"


def test_an_invalid_charger_answer_rejects_the_item() -> None:
    pb = _book()
    uid = pb.csms_sends("SetVariables", {"setVariableData": [_set("OCPPCommCtrlr", "HeartbeatInterval", "30")]})
    pb.charger_answers(pb.charger_receives("ChangeConfiguration"), {"status": "Done"})
    result = pb.csms_receives_result(uid)["setVariableResult"][0]
    assert result["attributeStatus"] == "Rejected"


def test_set_variables_the_bridge_refuses_alone() -> None:
    pb = _book(Version.V21)
    items = [
        _set("NoSuchCtrlr", "X", "1"),
        _set("OCPPCommCtrlr", "Nope", "1"),
        _set("OCPPCommCtrlr", "HeartbeatInterval", "30", attributeType="MaxSet"),  # B05.FR.06
        _set("OCPPCommCtrlr", "HeartbeatInterval", "thirty"),  # integer conversion fails
        _set("AuthCtrlr", "LocalPreAuthorize", "yes"),  # 2.0.1 booleans are true/false
        _set("OCPP16LegacyCtrlr", "VendorSpecificKey", "x" * 501),  # longer than a 1.6 value
        _set("SmartChargingCtrlr", "RateUnit", "A"),  # read-only
    ]
    uid = pb.csms_sends("SetVariables", {"setVariableData": items})
    results = pb.csms_receives_result(uid)["setVariableResult"]
    pb.nothing_pending()
    assert [(r["attributeStatus"], r.get("attributeStatusInfo", {}).get("reasonCode")) for r in results] == [
        ("UnknownComponent", None), ("UnknownVariable", None), ("NotSupportedAttributeType", None),
        ("Rejected", "InvalidValue"), ("Rejected", "InvalidValue"), ("Rejected", "InvalidValue"),
        ("Rejected", "ReadOnly")]


def test_a_write_only_key_can_be_written() -> None:
    pb = _book()
    uid = pb.csms_sends("SetVariables", {"setVariableData": [
        _set("OCPP16LegacyCtrlr", "AuthorizationKey", "0123456789abcdef0123456789abcdef01234567")]})
    call = pb.charger_receives("ChangeConfiguration")
    assert call.payload["key"] == "AuthorizationKey"
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid)["setVariableResult"][0]["attributeStatus"] == "Accepted"


def test_list_values_are_normalised_on_the_way_down() -> None:
    pb = _book()
    uid = pb.csms_sends("SetVariables", {"setVariableData": [
        _set("SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register, Power.Active.Import")]})
    call = pb.charger_receives("ChangeConfiguration")
    assert call.payload == {"key": "MeterValuesSampledData",
                            "value": "Energy.Active.Import.Register,Power.Active.Import"}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid)["setVariableResult"][0]["attributeStatus"] == "Accepted"


# --- any schema-valid request: one result per item, valid, no bug ----------------------------------------------

_names = st.sampled_from(["OCPPCommCtrlr", "AuthCtrlr", "OCPP16LegacyCtrlr", "SmartChargingCtrlr", "X"])
_variables = st.sampled_from(["HeartbeatInterval", "AuthorizeRemoteStart", "RateUnit", "AuthorizationKey",
                              "MessageAttempts", "BlinkRepeat", "Y"]) | st.text(min_size=1, max_size=50)
_items = st.fixed_dictionaries(
    {"component": st.fixed_dictionaries({"name": _names}, optional={
        "instance": st.text(max_size=5), "evse": st.fixed_dictionaries({"id": st.integers(0, 3)})}),
     "variable": st.fixed_dictionaries({"name": _variables}, optional={
         "instance": st.sampled_from(["TransactionEvent", "x"])})},
    optional={"attributeType": st.sampled_from(["Actual", "Target"])})
_values = st.sampled_from(["true", "300", "A,W", "x" * 600, ""]) | st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_items, min_size=1, max_size=5), values=st.lists(_values, min_size=5, max_size=5),
       stored=st.text(max_size=20), fail=st.booleans())
def test_any_valid_get_or_set_gets_one_valid_result_per_item(items: list[dict[str, Any]], values: list[str],
                                                             stored: str, fail: bool) -> None:
    pb = _book()
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    if pb.to_charger:
        call = pb.to_charger.pop(0)
        pb.charger_answers(call, {"configurationKey": [{"key": k, "readonly": False, "value": stored}
                                                       for k in call.payload["key"]]})
    assert len(pb.csms_receives_result(uid)["getVariableResult"]) == len(items)
    writes = [{**item, "attributeValue": value} for item, value in zip(items, values, strict=False)]
    uid = pb.csms_sends("SetVariables", {"setVariableData": writes})
    while pb.to_charger:
        call = pb.to_charger.pop(0)
        if fail:
            pb.charger_fails(call, "OccurenceConstraintViolation", "no")
        else:
            pb.charger_answers(call, {"status": "NotSupported"})
    assert len(pb.csms_receives_result(uid)["setVariableResult"]) == len(writes)
    assert "bug" not in pb.emitted_kinds()
