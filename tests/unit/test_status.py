"""StatusNotification -> StatusNotification + TransactionEvent(ChargingStateChanged) + NotifyEvent
(mapping reference §2.4, §3.2, §3.3)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.events import Persist, SendToCharger, SendToCsms
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import QueuedMessage, TxRecord
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


def _retried(pb: Playbook, failed: Frame, attempt: int = 1) -> Frame:
    """A failed delivery: no frame for the charger, a queue.retry, and after the back-off the identical message."""
    assert not pb.to_charger
    retry = [e for e in pb.emitted if e.kind == "queue.retry"][-1]
    assert (retry.fields["action"], retry.fields["attempts"]) == (failed.action, attempt)
    delay = CoreSettings().retry_delay(attempt)
    assert retry.fields["delay"] == delay
    pb.advance(delay - 0.5)
    assert not pb.to_csms  # not before the back-off elapsed
    pb.advance(0.5)
    again = pb.csms_receives(failed.action)
    assert again.payload == failed.payload
    assert again.unique_id != failed.unique_id
    return again


def test_status_is_answered_once_stored_and_a_csms_error_is_retried_not_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("StatusNotification", _status())
    assert pb.charger_receives_result(uid) == {}  # stored: the bridge owns its delivery from now on
    assert [r.action for r in pb.persisted if isinstance(r, QueuedMessage)] == ["StatusNotification"]
    call = pb.csms_receives("StatusNotification")
    pb.csms_fails(call, "FormatViolation", "bad")
    again = _retried(pb, call)
    pb.csms_fails(again, "InternalError")
    again = _retried(pb, again, attempt=2)
    pb.csms_answers(again, {})
    pb.nothing_pending()
    assert not pb.session.outbox.items


def test_csms_error_on_the_follow_up_event_is_retried_with_the_same_seq_no() -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start()
    uid = pb.charger_sends("StatusNotification", _status(status="Charging"))
    assert pb.charger_receives_result(uid) == {}
    pb.csms_answers(pb.csms_receives("StatusNotification"), {})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["seqNo"] == 1
    pb.csms_fails(event, "InternalError")
    again = _retried(pb, event)
    assert again.payload["transactionInfo"] == {"transactionId": tx_id, "chargingState": "Charging"}
    pb.csms_answers(again, {})
    pb.nothing_pending()
    # the next event of the transaction continues the numbering: the retry did not spend a seqNo
    pb.charger_sends("StatusNotification", _status(status="SuspendedEV"))
    pb.charger_receives_result()
    assert [c.payload.get("seqNo") for c in _upstream(pb)] == [None, 2]


def test_status_and_what_it_became_are_stored_in_one_write_before_the_answer() -> None:
    pb = Playbook.translated()
    pb.start()
    uid = pb.charger_sends("StatusNotification", _status(status="Faulted", error="GroundFailure"))
    answer = next(i for i, c in enumerate(pb.commands) if isinstance(c, SendToCharger) and f'"{uid}"' in c.text)
    writes = [c for c in pb.commands[:answer] if isinstance(c, Persist)]
    last = writes[-1]
    assert [(r.action, r.payload.get("eventType")) for r in last.records if isinstance(r, QueuedMessage)] == [
        ("StatusNotification", None), ("TransactionEvent", "Updated"), ("NotifyEvent", None)]
    assert any(isinstance(r, TxRecord) and r.charging_state == "SuspendedEVSE" for r in last.records)
    assert not any(isinstance(c, SendToCsms) for c in pb.commands[pb.commands.index(last):answer])
    assert pb.charger_receives_result(uid) == {}
