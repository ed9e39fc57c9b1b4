"""StatusNotification -> StatusNotification + TransactionEvent(ChargingStateChanged) + NotifyEvent
(mapping reference §2.4, §3.2, §3.3)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from tests.playbook import Frame, Playbook

STAMP = "2024-05-01T10:00:00+02:00"
STAMP_UTC = "2024-05-01T08:00:00.000Z"


def _status(connector: int = 1, status: str = "Available", error: str = "NoError", **extra: Any) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": error, "status": status, "timestamp": STAMP, **extra}


def _upstream(pb: Playbook) -> list[Frame]:
    """Answer every call the CSMS receives, in order, until the bridge stops sending; return them."""
    calls = []
    while pb.to_csms:
        frame = pb.to_csms.pop(0)
        assert frame.type_id == 2, frame.raw
        calls.append(frame)
        pb.csms_answers(frame, {})
    return calls


@pytest.mark.parametrize(("status", "connector_status"), [
    ("Available", "Available"),
    ("Preparing", "Occupied"),
    ("Charging", "Occupied"),
    ("SuspendedEV", "Occupied"),
    ("SuspendedEVSE", "Occupied"),
    ("Finishing", "Occupied"),
    ("Reserved", "Reserved"),
    ("Unavailable", "Unavailable"),
    ("Faulted", "Faulted"),
])
@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_connector_status_mapping(upstream: Version, status: str, connector_status: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("StatusNotification", _status(connector=2, status=status))
    call = pb.csms_receives("StatusNotification")
    assert call.payload == {"timestamp": STAMP_UTC, "connectorStatus": connector_status, "evseId": 2,
                            "connectorId": 1}
    pb.csms_answers(call, {})
    assert pb.charger_receives_result(uid) == {}
    pb.nothing_pending()  # no transaction, no error: nothing else


def test_missing_timestamp_uses_the_receive_time() -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    # T0 = 1_700_000_000 s since the epoch, the moment the playbook feeds the frame
    assert pb.csms_receives("StatusNotification").payload["timestamp"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize(("status", "state"), [
    ("Charging", "Charging"),
    ("SuspendedEV", "SuspendedEV"),
    ("SuspendedEVSE", "SuspendedEVSE"),
    ("Unavailable", "SuspendedEVSE"),
    ("Faulted", "SuspendedEVSE"),
])
def test_charging_state_change_during_a_transaction(status: str, state: str) -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start()
    uid = pb.charger_sends("StatusNotification", _status(status=status))
    calls = _upstream(pb)
    assert [c.action for c in calls][:2] == ["StatusNotification", "TransactionEvent"]
    event = calls[1].payload
    assert event == {"eventType": "Updated", "timestamp": STAMP_UTC, "triggerReason": "ChargingStateChanged",
                     "seqNo": 1, "transactionInfo": {"transactionId": tx_id, "chargingState": state}}
    assert pb.charger_receives_result(uid) == {}


def test_charging_state_is_reported_only_when_it_changes() -> None:
    pb = Playbook.translated()
    pb.start()
    pb.charger_sends("StatusNotification", _status(status="Charging"))
    assert [c.action for c in _upstream(pb)] == ["StatusNotification", "TransactionEvent"]
    pb.charger_receives_result()
    pb.charger_sends("StatusNotification", _status(status="Charging"))
    assert [c.action for c in _upstream(pb)] == ["StatusNotification"]
    pb.charger_receives_result()
    pb.charger_sends("StatusNotification", _status(status="SuspendedEV"))
    calls = _upstream(pb)
    assert calls[1].payload["seqNo"] == 2
    assert calls[1].payload["transactionInfo"]["chargingState"] == "SuspendedEV"


def test_status_on_another_connector_does_not_touch_the_transaction() -> None:
    pb = Playbook.translated()
    pb.start(connector=1)
    pb.charger_sends("StatusNotification", _status(connector=2, status="Charging"))
    assert [c.action for c in _upstream(pb)] == ["StatusNotification"]


def test_available_during_a_transaction_is_not_a_charging_state_change() -> None:
    pb = Playbook.translated()
    pb.start()
    pb.charger_sends("StatusNotification", _status(status="Available"))
    assert [c.action for c in _upstream(pb)] == ["StatusNotification"]


def test_later_events_carry_the_new_charging_state() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    pb.charger_sends("StatusNotification", _status(status="Charging"))
    _upstream(pb)
    pb.charger_receives_result()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [
        {"timestamp": "2024-05-01T10:15:00Z", "sampledValue": [{"value": "10"}]}]})
    assert pb.csms_receives("TransactionEvent").payload["transactionInfo"]["chargingState"] == "Charging"


@pytest.mark.parametrize(("status", "availability"), [("Available", "Available"), ("Unavailable", "Unavailable"),
                                                      ("Faulted", "Faulted")])
def test_station_status_becomes_notify_event_availability_state(status: str, availability: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StatusNotification", _status(connector=0, status=status))
    call = pb.csms_receives("NotifyEvent")  # 2.0.1 StatusNotification has no station-wide form
    assert call.payload == {"generatedAt": STAMP_UTC, "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": STAMP_UTC, "eventNotificationType": "HardWiredNotification",
        "trigger": "Delta", "actualValue": availability, "component": {"name": "ChargingStation"},
        "variable": {"name": "AvailabilityState"},
    }]}
    pb.csms_answers(call, {})
    assert pb.charger_receives_result(uid) == {}
    pb.nothing_pending()


def test_error_code_becomes_notify_event_problem_and_is_cleared_on_no_error() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StatusNotification", _status(status="Faulted", error="ConnectorLockFailure",
                                                         info="lock motor stalled", vendorErrorCode="E-17"))
    calls = _upstream(pb)
    assert [c.action for c in calls] == ["StatusNotification", "NotifyEvent"]
    assert calls[0].payload["connectorStatus"] == "Faulted"
    raised = calls[1].payload["eventData"]
    assert raised == [{
        "eventId": 1, "timestamp": STAMP_UTC, "eventNotificationType": "HardWiredNotification",
        "trigger": "Alerting", "actualValue": "true",
        "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "Problem"}, "techCode": "E-17", "techInfo": "lock motor stalled",
    }]
    assert pb.charger_receives_result(uid) == {}
    # the same error again is not a new event
    pb.charger_sends("StatusNotification", _status(status="Faulted", error="ConnectorLockFailure"))
    assert [c.action for c in _upstream(pb)] == ["StatusNotification"]
    pb.charger_receives_result()
    # back to NoError: the problem is cleared
    pb.charger_sends("StatusNotification", _status(status="Available"))
    calls = _upstream(pb)
    assert [c.action for c in calls] == ["StatusNotification", "NotifyEvent"]
    assert calls[1].payload["eventData"] == [{
        "eventId": 2, "timestamp": STAMP_UTC, "eventNotificationType": "HardWiredNotification",
        "trigger": "Alerting", "actualValue": "false", "cleared": True,
        "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "Problem"},
    }]


def test_tech_code_falls_back_to_the_error_code() -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", _status(status="Faulted", error="GroundFailure"))
    event = _upstream(pb)[1].payload["eventData"][0]
    assert event["techCode"] == "GroundFailure"
    assert event["component"] == {"name": "RCD", "evse": {"id": 1}}
    assert event["variable"] == {"name": "Tripped"}
    assert "techInfo" not in event


def test_a_different_error_clears_the_old_one_and_raises_the_new_one() -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", _status(status="Faulted", error="HighTemperature"))
    _upstream(pb)
    pb.charger_receives_result()
    pb.charger_sends("StatusNotification", _status(status="Faulted", error="PowerSwitchFailure"))
    events = _upstream(pb)[1].payload["eventData"]
    assert [(e["component"]["name"], e["actualValue"], e.get("cleared", False)) for e in events] == [
        ("EVSE", "false", True), ("PowerContactor", "true", False)]
    assert [e["eventId"] for e in events] == [2, 3]


@pytest.mark.parametrize(("error", "component"), [
    ("ConnectorLockFailure", {"name": "ConnectorPlugRetentionLock", "evse": {"id": 3, "connectorId": 1}}),
    ("EVCommunicationError", {"name": "Connector", "evse": {"id": 3, "connectorId": 1}}),
    ("GroundFailure", {"name": "RCD", "evse": {"id": 3}}),
    ("HighTemperature", {"name": "EVSE", "evse": {"id": 3}}),
    ("InternalError", {"name": "Controller"}),
    ("LocalListConflict", {"name": "LocalAuthListCtrlr"}),
    ("OtherError", {"name": "Connector", "evse": {"id": 3, "connectorId": 1}}),
    ("OverCurrentFailure", {"name": "OverCurrentProtection", "evse": {"id": 3}}),
    ("OverVoltage", {"name": "ElectricalFeed", "evse": {"id": 3}}),
    ("PowerMeterFailure", {"name": "FiscalMetering", "evse": {"id": 3}}),
    ("PowerSwitchFailure", {"name": "PowerContactor", "evse": {"id": 3}}),
    ("ReaderFailure", {"name": "TokenReader"}),
    ("ResetFailure", {"name": "Controller"}),
    ("UnderVoltage", {"name": "ElectricalFeed", "evse": {"id": 3}}),
    ("WeakSignal", {"name": "DataLink"}),
])
def test_every_error_code_has_a_component(error: str, component: dict[str, Any]) -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", _status(connector=3, status="Faulted", error=error))
    assert _upstream(pb)[1].payload["eventData"][0]["component"] == component


def test_station_error_and_availability_share_one_notify_event() -> None:
    pb = Playbook.translated()
    pb.charger_sends("StatusNotification", _status(connector=0, status="Faulted", error="OverVoltage"))
    calls = _upstream(pb)
    assert [c.action for c in calls] == ["NotifyEvent"]
    names = [(e["component"]["name"], e["variable"]["name"]) for e in calls[0].payload["eventData"]]
    assert names == [("ChargingStation", "AvailabilityState"), ("ElectricalFeed", "Problem")]
    assert "evse" not in calls[0].payload["eventData"][1]["component"]


def test_csms_error_on_status_is_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StatusNotification", _status())
    pb.csms_fails(pb.csms_receives("StatusNotification"), "FormatViolation", "bad")
    pb.charger_receives_error("FormationViolation", uid)
    pb.nothing_pending()


def test_csms_error_on_the_follow_up_event_is_relayed() -> None:
    pb = Playbook.translated()
    pb.start()
    uid = pb.charger_sends("StatusNotification", _status(status="Charging"))
    pb.csms_answers(pb.csms_receives("StatusNotification"), {})
    pb.csms_fails(pb.csms_receives("TransactionEvent"), "InternalError")
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()
