"""GetBaseReport / GetReport -> NotifyReport from the synthesized device model (issue 3 item 3; mapping reference
§5.4; 2.0.1 B07, B08). Every NotifyReport the bridge emits is validated against the 2.0.1 or 2.1 schema by the
playbook."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core import inventory
from ocpp_bridge.core.devicemodel import VariableAddress
from ocpp_bridge.core.events import UpstreamConnected, UpstreamLost
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import QueuedMessage
from ocpp_bridge.core.translate import reports
from tests.playbook import Frame, Playbook
from tests.unit.test_device_model import (
    STANDARD_CONFIG,
    answer_csms,
    book,
    boot,
    booted,
    configuration,
)

CONTROLLERS = {"AlignedDataCtrlr", "AuthCacheCtrlr", "AuthCtrlr", "ClockCtrlr", "DeviceDataCtrlr",
               "LocalAuthListCtrlr", "OCPPCommCtrlr", "ReservationCtrlr", "SampledDataCtrlr", "SecurityCtrlr",
               "SmartChargingCtrlr", "TxCtrlr", "OCPP16LegacyCtrlr"}


def _report(pb: Playbook, action: str, request: dict[str, Any]) -> tuple[dict[str, Any], list[Frame]]:
    uid = pb.csms_sends(action, request)
    answer = pb.csms_receives_result(uid)
    return answer, answer_csms(pb)


def _data(parts: list[Frame]) -> list[dict[str, Any]]:
    return [item for part in parts for item in part.payload.get("reportData", [])]


def _where(data: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(component, evse, connector, variable, instance) of each reportData item."""
    return [(d["component"]["name"], d["component"].get("evse", {}).get("id"),
             d["component"].get("evse", {}).get("connectorId"), d["variable"]["name"], d["variable"].get("instance"))
            for d in data]


def _value(data: list[dict[str, Any]], component: str, variable: str, evse: int | None = None,
           instance: str | None = None) -> dict[str, Any]:
    return next(d for d in data if d["component"]["name"] == component and d["variable"]["name"] == variable
                and d["component"].get("evse", {}).get("id") == evse and d["variable"].get("instance") == instance)


# --- GetBaseReport ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_full_inventory(upstream: Version) -> None:
    pb = booted(upstream)
    answer, parts = _report(pb, "GetBaseReport", {"requestId": 42, "reportBase": "FullInventory"})
    assert answer == {"status": "Accepted"}  # B07.FR.03
    assert [p.payload["seqNo"] for p in parts] == list(range(len(parts)))  # B07.FR.10
    assert [p.payload["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert {p.payload["requestId"] for p in parts} == {42}  # B07.FR.04
    assert len({p.payload["generatedAt"] for p in parts}) == 1
    data = _data(parts)
    where = _where(data)
    for evse in (1, 2):  # every connector: its EVSE and its Connector component
        assert ("EVSE", evse, None, "AvailabilityState", None) in where
        assert ("Connector", evse, 1, "AvailabilityState", None) in where
    assert {w[0] for w in where} >= {"ChargingStation", "EVSE", "Connector"} | CONTROLLERS
    assert len(where) == len(set(where))  # each variable once
    # values as 2.0.1 spells them; characteristics from the table
    measurands = _value(data, "SampledDataCtrlr", "TxUpdatedMeasurands")
    assert measurands["variableAttribute"] == [{"type": "Actual", "value": "Energy.Active.Import.Register,Voltage",
                                                "mutability": "ReadWrite", "persistent": True, "constant": False}]
    limits = measurands["variableCharacteristics"]
    assert limits["dataType"] == "MemberList" and limits["supportsMonitoring"] is False
    assert limits["valuesList"].startswith("Current.Export,")
    assert limits["maxElements" if upstream is Version.V21 else "maxLimit"] == 4  # MeterValuesSampledDataMaxLength
    assert _value(data, "SmartChargingCtrlr", "RateUnit")["variableAttribute"][0]["value"] == "A,W"
    assert _value(data, "SmartChargingCtrlr", "Entries", instance="ChargingProfiles")[
        "variableCharacteristics"]["maxLimit"] == 8  # MaxChargingProfilesInstalled
    assert _value(data, "AuthCtrlr", "AuthorizeRemoteStart")["variableAttribute"][0]["mutability"] == "ReadOnly"
    assert _value(data, "OCPPCommCtrlr", "HeartbeatInterval")["variableCharacteristics"]["unit"] == "s"
    assert _value(data, "TxCtrlr", "TxStartPoint")["variableAttribute"][0]["value"] == "PowerPathClosed"
    assert _value(data, "ChargingStation", "SerialNumber")["variableAttribute"][0]["value"] == "SN-1"
    assert _value(data, "OCPP16LegacyCtrlr", "AcmeFanMode")["variableCharacteristics"]["dataType"] == "string"
    secret = _value(data, "OCPP16LegacyCtrlr", "AuthorizationKey")["variableAttribute"][0]
    assert secret["mutability"] == "WriteOnly" and "value" not in secret  # omitted for WriteOnly
    # *MaxLength keys are characteristics, not variables of their own
    assert ("OCPP16LegacyCtrlr", None, None, "MeterValuesSampledDataMaxLength", None) not in where
    assert all(len(d["variableCharacteristics"].get("valuesList", "")) <= 1000 for d in data)
    pb.nothing_pending()  # the charger was not asked: its configuration is fresh


def test_pages_follow_items_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    pb = booted()
    monkeypatch.setitem(inventory.ITEMS_PER_MESSAGE, "GetReport", 7)
    total = len(_data(_report(pb, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})[1]))
    _, parts = _report(pb, "GetBaseReport", {"requestId": 2, "reportBase": "FullInventory"})
    assert [len(p.payload["reportData"]) for p in parts[:-1]] == [7] * (len(parts) - 1)
    assert 1 <= len(parts[-1].payload["reportData"]) <= 7
    assert sum(len(p.payload["reportData"]) for p in parts) == total
    assert [p.payload["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p.payload["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]


def test_configuration_inventory_is_what_an_operator_can_set() -> None:
    pb = booted()
    answer, parts = _report(pb, "GetBaseReport", {"requestId": 3, "reportBase": "ConfigurationInventory"})
    assert answer == {"status": "Accepted"}
    data = _data(parts)
    assert {d["variableAttribute"][0]["mutability"] for d in data} == {"ReadWrite", "WriteOnly"}  # B07.FR.07
    assert ("OCPPCommCtrlr", None, None, "HeartbeatInterval", None) in _where(data)
    assert ("AuthCtrlr", None, None, "AuthorizeRemoteStart", None) not in _where(data)  # read-only on this charger


def test_summary_inventory_is_availability_and_problems() -> None:
    pb = booted()
    uid = pb.charger_sends("StatusNotification", {"connectorId": 2, "errorCode": "GroundFailure",
                                                  "status": "Faulted"})
    pb.charger_receives_result(uid)
    answer_csms(pb)
    _, parts = _report(pb, "GetBaseReport", {"requestId": 5, "reportBase": "SummaryInventory"})
    data = _data(parts)
    assert {w[0] for w in _where(data)} == {"ChargingStation", "EVSE", "Connector"}
    assert {w[3] for w in _where(data)} == {"Available", "AvailabilityState", "Problem"}
    assert _value(data, "EVSE", "AvailabilityState", evse=2)["variableAttribute"][0]["value"] == "Faulted"
    assert _value(data, "EVSE", "Problem", evse=2)["variableAttribute"][0]["value"] == "true"
    assert _value(data, "EVSE", "Problem", evse=1)["variableAttribute"][0]["value"] == "false"
    assert _value(data, "ChargingStation", "Problem")["variableAttribute"][0]["value"] == "true"


def test_a_stale_copy_is_fetched_first_and_the_fetch_never_reaches_the_csms() -> None:
    pb = book()
    boot(pb)  # no fetch yet (it waits BOOT_FETCH_DELAY)
    uid = pb.csms_sends("GetBaseReport", {"requestId": 9, "reportBase": "FullInventory"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}  # at once
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {}
    pb.nothing_pending()  # the report waits for the configuration
    pb.charger_answers(call, configuration(STANDARD_CONFIG))
    parts = answer_csms(pb)
    assert {p.action for p in parts} == {"NotifyReport"}  # and nothing of the GetConfiguration
    where = _where(_data(parts))
    assert ("OCPPCommCtrlr", None, None, "HeartbeatInterval", None) in where
    assert ("Connector", 2, 1, "Available", None) in where  # NumberOfConnectors = 2
    pb.advance(reports.BOOT_FETCH_DELAY)
    pb.nothing_pending()  # the boot's fetch is not needed any more


def test_two_reports_share_one_fetch() -> None:
    pb = book()
    boot(pb)
    first = pb.csms_sends("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
    second = pb.csms_sends("GetReport", {"requestId": 2, "componentVariable": [{"component": {"name": "TxCtrlr"}}]})
    assert pb.csms_receives_result(first) == {"status": "Accepted"}
    call = pb.charger_receives("GetConfiguration")
    pb.nothing_pending()  # one GetConfiguration for both; GetReport's answer waits for it
    pb.charger_answers(call, configuration(STANDARD_CONFIG))
    frames = list(pb.to_csms)
    assert [f.type_id for f in frames][:1] == [3] and frames[0].unique_id == second  # GetReport answered first
    pb.to_csms.pop(0)
    parts = answer_csms(pb)
    assert sorted({p.payload["requestId"] for p in parts}) == [1, 2]


def test_a_failed_fetch_still_reports_what_the_bridge_knows() -> None:
    pb = book()
    boot(pb)
    uid = pb.csms_sends("GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"})
    pb.csms_receives_result(uid)
    pb.charger_fails(pb.charger_receives("GetConfiguration"), "InternalError")
    (part,) = answer_csms(pb)  # nothing operator-settable is known: one empty part closes the request
    assert part.payload["seqNo"] == 0 and part.payload["tbc"] is False and "reportData" not in part.payload
    uid = pb.csms_sends("GetBaseReport", {"requestId": 2, "reportBase": "FullInventory"})
    pb.csms_receives_result(uid)
    pb.charger_receives("GetConfiguration")
    pb.advance(25)  # no answer at all
    where = _where(_data(answer_csms(pb)))
    assert ("ChargingStation", None, None, "Model", None) in where
    assert ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetReport") in where


def test_reports_are_durable_and_ordered_through_an_outage() -> None:
    pb = booted()
    pb.feed(UpstreamLost(pb.now))
    uid = pb.csms_sends("GetBaseReport", {"requestId": 6, "reportBase": "FullInventory"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    queued = [r for r in pb.persisted if isinstance(r, QueuedMessage) and r.action == "NotifyReport"]
    assert [q.payload["seqNo"] for q in queued] == list(range(len(queued)))  # stored before anything is sent
    pb.nothing_pending()
    pb.feed(UpstreamConnected(pb.now))
    parts = answer_csms(pb)
    assert [p.payload["seqNo"] for p in parts] == list(range(len(queued)))


# --- GetReport --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("selectors", "expected"), [
    # a component without a variable: all its variables (B08.FR.20)
    ([{"component": {"name": "TxCtrlr"}}], {("TxCtrlr", "EVConnectionTimeOut"), ("TxCtrlr", "StopTxOnEVSideDisconnect"),
                                            ("TxCtrlr", "StopTxOnInvalidId"), ("TxCtrlr", "TxStartPoint"),
                                            ("TxCtrlr", "TxStopPoint")}),
    ([{"component": {"name": "ocppcommctrlr"}, "variable": {"name": "HEARTBEATINTERVAL"}}],
     {("OCPPCommCtrlr", "HeartbeatInterval")}),  # names are case-insensitive
    ([{"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}],
     {("DeviceDataCtrlr", "ItemsPerMessage")}),  # every instance
    ([{"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "AvailabilityState"}},
      {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxEndedInterval"}}],
     {("EVSE", "AvailabilityState"), ("SampledDataCtrlr", "TxEndedInterval")}),
])
def test_get_report_by_component_variable(selectors: list[dict[str, Any]], expected: set[tuple[str, str]]) -> None:
    pb = booted(Version.V21)
    answer, parts = _report(pb, "GetReport", {"requestId": 11, "componentVariable": selectors})
    assert answer == {"status": "Accepted"}
    assert {(w[0], w[3]) for w in _where(_data(parts))} == expected


def test_get_report_evse_and_instance_filters() -> None:
    pb = booted()
    _, parts = _report(pb, "GetReport", {"requestId": 1, "componentVariable": [
        {"component": {"name": "EVSE"}, "variable": {"name": "Available"}}]})
    assert [(w[1], w[3]) for w in _where(_data(parts))] == [(1, "Available"), (2, "Available")]
    _, parts = _report(pb, "GetReport", {"requestId": 2, "componentVariable": [
        {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage", "instance": "GetReport"}}]})
    (item,) = _data(parts)
    assert item["variableAttribute"][0]["value"] == "50"


def test_get_report_with_no_match_is_an_empty_result_set() -> None:
    pb = booted()
    for selector in ({"component": {"name": "NoSuchCtrlr"}},
                     {"component": {"name": "EVSE", "evse": {"id": 7}}},
                     {"component": {"name": "TxCtrlr"}, "variable": {"name": "Nope"}}):
        answer, parts = _report(pb, "GetReport", {"requestId": 1, "componentVariable": [selector]})
        assert answer == {"status": "EmptyResultSet"}  # B08.FR.15
        assert parts == []


def test_get_report_by_criteria() -> None:
    pb = booted()
    answer, parts = _report(pb, "GetReport", {"requestId": 1, "componentCriteria": ["Problem"]})
    assert answer == {"status": "EmptyResultSet"}  # no component has a problem
    uid = pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Faulted"})
    pb.charger_receives_result(uid)
    answer_csms(pb)
    _, parts = _report(pb, "GetReport", {"requestId": 2, "componentCriteria": ["Problem"]})
    assert {(w[0], w[1]) for w in _where(_data(parts))} == {("ChargingStation", None), ("EVSE", 1), ("Connector", 1)}
    # the criteria are OR'ed (B08.FR.13): Enabled adds the controllers enabled on this charger
    _, parts = _report(pb, "GetReport", {"requestId": 3, "componentCriteria": ["Problem", "Enabled"]})
    components = {(w[0], w[1]) for w in _where(_data(parts))}
    assert {("AuthCacheCtrlr", None), ("LocalAuthListCtrlr", None), ("EVSE", 1)} <= components
    assert ("EVSE", 2) not in components
    # with componentVariable too: only what both select
    _, parts = _report(pb, "GetReport", {"requestId": 4, "componentCriteria": ["Available"], "componentVariable": [
        {"component": {"name": "ReservationCtrlr"}}, {"component": {"name": "TxCtrlr"}}]})
    assert {(w[0], w[3]) for w in _where(_data(parts))} == {("ReservationCtrlr", "Available"),
                                                            ("ReservationCtrlr", "NonEvseSpecific")}


def test_get_report_without_filters_is_everything() -> None:
    pb = booted()
    full = _data(_report(pb, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})[1])
    custom = _data(_report(pb, "GetReport", {"requestId": 2})[1])
    assert _where(custom) == _where(full)


def test_get_report_limits() -> None:
    pb = booted()
    too_many = [{"component": {"name": "TxCtrlr"}}] * (inventory.ITEMS_PER_MESSAGE["GetReport"] + 1)
    uid = pb.csms_sends("GetReport", {"requestId": 1, "componentVariable": too_many})
    pb.csms_receives_error("OccurrenceConstraintViolation", uid)  # B08.FR.17
    pb.nothing_pending()


# --- the rendering of one item ------------------------------------------------------------------------------


def test_report_data_limits() -> None:
    long = inventory.Variable(VariableAddress("OCPP16LegacyCtrlr", "Long"), "string", "ReadWrite", "x" * 3000)
    item = inventory.report_data(long, max_elements=False)
    assert len(item["variableAttribute"][0]["value"]) == 2500
    password = inventory.Variable(VariableAddress("SecurityCtrlr", "BasicAuthPassword"), "passwordString",
                                  "WriteOnly", None)
    item = inventory.report_data(password, max_elements=True)
    assert item["variableCharacteristics"]["dataType"] == "string"  # not in the schemas' DataEnumType
    assert "value" not in item["variableAttribute"][0]
    listed = inventory.Variable(VariableAddress("X", "Y"), "MemberList", "ReadWrite", "a", values_list="a,b",
                                max_limit=0)
    assert "maxElements" not in inventory.report_data(listed, max_elements=True)["variableCharacteristics"]
