"""Every operation a 2.0.1 CSMS starts, carried down to a 1.6 charger through the bridge process.

>> CSMS calls 2.0.1 (ocpp v201 ChargePoint.call)  --  bridge  --  << charger receives 1.6 (its handlers record it)
"""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .peers import TIMEOUT, charger, now, within


async def csms_call(station: Any, payload: Any, timeout: float = TIMEOUT) -> Any:
    """A CALL from the CSMS; a CALLERROR raises. The ``ocpp`` package validates the bridge's answer."""
    return await within(station.call(payload, suppress=False), timeout)


async def start_transaction(session16: Any, connector: int = 1, id_tag: str = "04A2B3C4") -> tuple[int, str]:
    """Start a transaction from the charger; (1.6 id, 2.0.1 transactionId the CSMS saw)."""
    started = await session16.link.call(c16.StartTransaction(connector_id=connector, id_tag=id_tag, meter_start=0,
                                                             timestamp=now()))
    event = await session16.station.expect("TransactionEvent", lambda e: e["eventType"] == "Started")
    return started.transaction_id, event["transactionInfo"]["transactionId"]


# --- RequestStartTransaction / RequestStopTransaction ---------------------------------------------------------


async def test_request_start_transaction(session16):
    answer = await csms_call(session16.station, c201.RequestStartTransaction(
        id_token={"idToken": "REMOTE-01", "type": "Central"}, remote_start_id=4711, evse_id=1))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("RemoteStartTransaction") == [{"idTag": "REMOTE-01", "connectorId": 1}]

    # The charger starts as asked; the CSMS learns it was its own remote start.
    started = await session16.link.call(c16.StartTransaction(connector_id=1, id_tag="REMOTE-01", meter_start=0,
                                                             timestamp=now()))
    assert started.id_tag_info["status"] == "Accepted"
    event = await session16.station.expect("TransactionEvent")
    assert session16.station.received("TransactionEvent") == [event]
    assert event["eventType"] == "Started"
    assert event["triggerReason"] == "RemoteStart"
    assert event["transactionInfo"]["remoteStartId"] == 4711
    assert event["idToken"] == {"idToken": "REMOTE-01", "type": "Central"}  # the type the CSMS gave the token


async def test_request_start_transaction_rejected_by_the_charger(session16):
    session16.link.cp.answer("RemoteStartTransaction", {"status": "Rejected"})
    answer = await csms_call(session16.station, c201.RequestStartTransaction(
        id_token={"idToken": "REMOTE-02", "type": "Central"}, remote_start_id=1))
    assert answer.status == "Rejected"
    assert session16.link.cp.received("RemoteStartTransaction") == [{"idTag": "REMOTE-02"}]  # no evse: any


async def test_request_start_transaction_with_an_idtoken_1_6_cannot_carry(session16):
    answer = await csms_call(session16.station, c201.RequestStartTransaction(
        id_token={"idToken": "X" * 21, "type": "Central"}, remote_start_id=2))
    assert answer.status == "Rejected"
    assert session16.link.cp.received() == []


async def test_request_stop_transaction(session16):
    local_id, tx_id = await start_transaction(session16)
    answer = await csms_call(session16.station, c201.RequestStopTransaction(transaction_id=tx_id))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("RemoteStopTransaction") == [{"transactionId": local_id}]

    await session16.link.call(c16.StopTransaction(transaction_id=local_id, meter_stop=10, timestamp=now(),
                                                  reason="Remote"))
    end = await session16.station.expect("TransactionEvent", lambda e: e["eventType"] == "Ended")
    assert end["transactionInfo"]["transactionId"] == tx_id
    assert end["transactionInfo"]["stoppedReason"] == "Remote"
    assert end["triggerReason"] == "RemoteStop"


async def test_request_stop_of_an_unknown_transaction_is_rejected_by_the_bridge(session16):
    answer = await csms_call(session16.station, c201.RequestStopTransaction(transaction_id="no-such-transaction"))
    assert answer.status == "Rejected"
    assert session16.link.cp.received() == []


# --- Reset ------------------------------------------------------------------------------------------------------


async def test_reset_immediate_is_a_soft_reset(session16):
    answer = await csms_call(session16.station, c201.Reset(type="Immediate"))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("Reset") == [{"type": "Soft"}]
    # The charger reboots; the CSMS learns why.
    await session16.link.call(c16.BootNotification(charge_point_model="IT-Model", charge_point_vendor="IT-Vendor"))
    assert session16.station.received("BootNotification")[-1]["reason"] == "RemoteReset"


async def test_reset_on_idle_waits_for_the_transaction_to_end(session16):
    local_id, _ = await start_transaction(session16)
    answer = await csms_call(session16.station, c201.Reset(type="OnIdle"))
    assert answer.status == "Scheduled"
    # A full round trip through the session later, the charger still has no Reset.
    await session16.link.call(c16.Heartbeat())
    assert session16.link.cp.received("Reset") == []

    await session16.link.call(c16.StopTransaction(transaction_id=local_id, meter_stop=10, timestamp=now()))
    reset = await session16.link.cp.expect("Reset")
    assert reset == {"type": "Soft"}
    await session16.link.call(c16.BootNotification(charge_point_model="IT-Model", charge_point_vendor="IT-Vendor"))
    assert session16.station.received("BootNotification")[-1]["reason"] == "ScheduledReset"


async def test_reset_on_idle_without_transaction_resets_now(session16):
    answer = await csms_call(session16.station, c201.Reset(type="OnIdle"))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("Reset") == [{"type": "Soft"}]


async def test_reset_of_one_evse_is_rejected_by_the_bridge(session16):
    answer = await csms_call(session16.station, c201.Reset(type="Immediate", evse_id=1))
    assert answer.status == "Rejected"
    assert session16.link.cp.received() == []


# --- ChangeAvailability, UnlockConnector, ClearCache ----------------------------------------------------------


@pytest.mark.parametrize(("evse", "status", "expected", "charger_answer"), [
    (None, "Inoperative", {"connectorId": 0, "type": "Inoperative"}, "Accepted"),
    ({"id": 2}, "Operative", {"connectorId": 2, "type": "Operative"}, "Scheduled"),
    ({"id": 1, "connectorId": 1}, "Inoperative", {"connectorId": 1, "type": "Inoperative"}, "Rejected"),
])
async def test_change_availability(session16, evse, status, expected, charger_answer):
    session16.link.cp.answer("ChangeAvailability", {"status": charger_answer})
    answer = await csms_call(session16.station, c201.ChangeAvailability(operational_status=status, evse=evse))
    assert answer.status == charger_answer
    assert session16.link.cp.received("ChangeAvailability") == [expected]


@pytest.mark.parametrize(("charger_answer", "csms_status"), [
    ("Unlocked", "Unlocked"),
    ("UnlockFailed", "UnlockFailed"),
    ("NotSupported", "UnlockFailed"),
])
async def test_unlock_connector(session16, charger_answer, csms_status):
    session16.link.cp.answer("UnlockConnector", {"status": charger_answer})
    answer = await csms_call(session16.station, c201.UnlockConnector(evse_id=2, connector_id=1))
    assert answer.status == csms_status
    assert session16.link.cp.received("UnlockConnector") == [{"connectorId": 2}]


async def test_unlock_during_a_transaction_never_reaches_the_charger(session16):
    await start_transaction(session16, connector=1)
    answer = await csms_call(session16.station, c201.UnlockConnector(evse_id=1, connector_id=1))
    assert answer.status == "OngoingAuthorizedTransaction"  # F05.FR.02; a 1.6 charger would end the transaction
    assert session16.link.cp.received("UnlockConnector") == []


@pytest.mark.parametrize("charger_answer", ["Accepted", "Rejected"])
async def test_clear_cache(session16, charger_answer):
    session16.link.cp.answer("ClearCache", {"status": charger_answer})
    answer = await csms_call(session16.station, c201.ClearCache())
    assert answer.status == charger_answer
    assert session16.link.cp.received("ClearCache") == [{}]


# --- TriggerMessage ---------------------------------------------------------------------------------------------


async def test_trigger_heartbeat(session16):
    answer = await csms_call(session16.station, c201.TriggerMessage(requested_message="Heartbeat"))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("TriggerMessage") == [{"requestedMessage": "Heartbeat"}]
    await session16.link.call(c16.Heartbeat())  # what the charger sends when triggered
    assert session16.station.received("Heartbeat") == [{}]


async def test_trigger_status_notification(session16):
    answer = await csms_call(session16.station, c201.TriggerMessage(
        requested_message="StatusNotification", evse={"id": 2, "connectorId": 1}))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("TriggerMessage") == [
        {"requestedMessage": "StatusNotification", "connectorId": 2}]
    await session16.link.call(c16.StatusNotification(connector_id=2, error_code="NoError", status="Available"))
    status = await session16.station.expect("StatusNotification")  # stored, then delivered
    assert session16.station.received("StatusNotification") == [status]
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (2, 1, "Available")


async def test_trigger_status_notification_without_connector_is_rejected_by_the_bridge(session16):
    answer = await csms_call(session16.station, c201.TriggerMessage(requested_message="StatusNotification"))
    assert answer.status == "Rejected"  # F06.FR.12
    assert session16.link.cp.received() == []


@pytest.mark.parametrize("wanted", ["PublishFirmwareStatusNotification", "SignCombinedCertificate"])
async def test_trigger_a_message_1_6_cannot_send(session16, wanted):
    answer = await csms_call(session16.station, c201.TriggerMessage(requested_message=wanted))
    assert answer.status == "NotImplemented"  # F06.FR.08
    assert answer.status_info["reason_code"] == "UnsupportedRequest"
    assert session16.link.cp.received() == []


# --- DataTransfer ---------------------------------------------------------------------------------------------


async def test_data_transfer_to_the_charger(session16):
    session16.link.cp.answer("DataTransfer", {"status": "Accepted", "data": "pong"})
    answer = await csms_call(session16.station, c201.DataTransfer(vendor_id="com.acme", message_id="ping",
                                                                  data={"n": [1, 2]}))
    assert answer.status == "Accepted"
    assert answer.data == "pong"
    # 2.0.1 data may be any JSON value; a 1.6 charger gets its JSON text.
    assert session16.link.cp.received("DataTransfer") == [
        {"vendorId": "com.acme", "messageId": "ping", "data": '{"n":[1,2]}'}]


async def test_data_transfer_to_the_charger_unknown_vendor(session16):
    session16.link.cp.answer("DataTransfer", {"status": "UnknownVendorId"})
    answer = await csms_call(session16.station, c201.DataTransfer(vendor_id="org.other"))
    assert answer.status == "UnknownVendorId"
    assert session16.link.cp.received("DataTransfer") == [{"vendorId": "org.other"}]


# --- GetVariables / SetVariables ----------------------------------------------------------------------------------


def variable(component: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}, **extra}


async def test_get_variables(session16):
    answer = await csms_call(session16.station, c201.GetVariables(get_variable_data=[
        variable("OCPPCommCtrlr", "HeartbeatInterval"),
        variable("SampledDataCtrlr", "TxUpdatedInterval"),
        variable("OCPP16LegacyCtrlr", "NumberOfConnectors"),
        variable("NoSuchCtrlr", "Anything"),
        variable("OCPPCommCtrlr", "HeartbeatInterval", attribute_type="Target"),
        variable("OCPP16LegacyCtrlr", "BlinkRepeat"),  # mapped, but this charger does not have the key
    ]))
    results = [(r["component"]["name"], r["variable"]["name"], r["attribute_status"], r.get("attribute_value"))
               for r in answer.get_variable_result]
    assert results == [
        ("OCPPCommCtrlr", "HeartbeatInterval", "Accepted", "300"),
        ("SampledDataCtrlr", "TxUpdatedInterval", "Accepted", "60"),
        ("OCPP16LegacyCtrlr", "NumberOfConnectors", "Accepted", "2"),
        ("NoSuchCtrlr", "Anything", "UnknownComponent", None),
        ("OCPPCommCtrlr", "HeartbeatInterval", "NotSupportedAttributeType", None),
        ("OCPP16LegacyCtrlr", "BlinkRepeat", "UnknownVariable", None),
    ]
    assert answer.get_variable_result[4]["attribute_type"] == "Target"  # echoed (B06.FR.03)
    # One GetConfiguration for every key that maps; the rest answered by the bridge.
    (request,) = session16.link.cp.received("GetConfiguration")
    assert sorted(request["key"]) == ["BlinkRepeat", "HeartbeatInterval", "MeterValueSampleInterval",
                                      "NumberOfConnectors"]


async def test_get_variables_converts_booleans(session16):
    answer = await csms_call(session16.station, c201.GetVariables(get_variable_data=[
        variable("AuthCtrlr", "AuthorizeRemoteStart")]))
    (result,) = answer.get_variable_result
    assert (result["attribute_status"], result["attribute_value"]) == ("Accepted", "false")
    assert session16.link.cp.received("GetConfiguration") == [{"key": ["AuthorizeRemoteTxRequests"]}]


async def test_set_variables(session16):
    config = session16.link.cp.config
    config["AuthorizeRemoteTxRequests"] = ("true", True)  # read-only on this charger
    answer = await csms_call(session16.station, c201.SetVariables(set_variable_data=[
        variable("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="60"),
        variable("OCPP16LegacyCtrlr", "NumberOfConnectors", attribute_value="4"),  # ReadOnly in 1.6
        variable("SampledDataCtrlr", "TxUpdatedInterval", attribute_value="soon"),  # not an integer
        variable("AuthCtrlr", "AuthorizeRemoteStart", attribute_value="false"),  # the charger refuses
        variable("OCPP16LegacyCtrlr", "BlinkRepeat", attribute_value="3"),  # the charger lacks the key
        variable("NoSuchCtrlr", "Anything", attribute_value="1"),
    ]))
    statuses = [(r["variable"]["name"], r["attribute_status"]) for r in answer.set_variable_result]
    assert statuses == [
        ("HeartbeatInterval", "Accepted"),
        ("NumberOfConnectors", "Rejected"),
        ("TxUpdatedInterval", "Rejected"),
        ("AuthorizeRemoteStart", "Rejected"),
        ("BlinkRepeat", "UnknownVariable"),
        ("Anything", "UnknownComponent"),
    ]
    # One ChangeConfiguration per item the charger has to decide, in order.
    assert session16.link.cp.received("ChangeConfiguration") == [
        {"key": "HeartbeatInterval", "value": "60"},
        {"key": "AuthorizeRemoteTxRequests", "value": "false"},
        {"key": "BlinkRepeat", "value": "3"},
    ]
    assert config["HeartbeatInterval"] == ("60", False)

    # And the CSMS reads back what it wrote.
    answer = await csms_call(session16.station, c201.GetVariables(get_variable_data=[
        variable("OCPPCommCtrlr", "HeartbeatInterval")]))
    assert answer.get_variable_result[0]["attribute_value"] == "60"


# --- what 1.6 cannot do -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "status"), [
    (c201.GetDisplayMessages(request_id=1), "Unknown"),
    (c201.SetNetworkProfile(configuration_slot=1, connection_data={
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example.com/ocpp",
        "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}), "Rejected"),
], ids=["GetDisplayMessages", "SetNetworkProfile"])
async def test_unsupported_operation_is_refused_by_the_bridge(session16, request_, status):
    """No 1.6 counterpart: the bridge answers at once with the negative status of the response enum and
    statusInfo UnsupportedRequest (the ocpp package validated the answer against the 2.0.1 schema)."""
    answer = await csms_call(session16.station, request_)
    assert answer.status == status
    assert answer.status_info["reason_code"] == "UnsupportedRequest"
    # The session goes on, and the charger never heard of it.
    await session16.link.call(c16.Heartbeat())
    assert session16.link.cp.received() == []


async def test_reset_immediate_during_a_transaction(session16):
    local_id, tx_id = await start_transaction(session16)
    answer = await csms_call(session16.station, c201.Reset(type="Immediate"))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("Reset") == [{"type": "Soft"}]
    # A 1.6 Soft reset stops the transaction first (reason SoftReset).
    await session16.link.call(c16.StopTransaction(transaction_id=local_id, meter_stop=7, timestamp=now(),
                                                  reason="SoftReset"))
    end = await session16.station.expect("TransactionEvent", lambda e: e["eventType"] == "Ended")
    assert end["transactionInfo"]["transactionId"] == tx_id
    assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert end["triggerReason"] == "ResetCommand"


async def test_trigger_boot_notification(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity) as link:  # connected, not booted yet
        await link.call(c16.Heartbeat())
        station = await csms.station(identity)
        answer = await csms_call(station, c201.TriggerMessage(requested_message="BootNotification"))
        assert answer.status == "Accepted"
        assert link.cp.received("TriggerMessage") == [{"requestedMessage": "BootNotification"}]
        await link.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert station.received("BootNotification")[0]["reason"] == "Triggered"
        # Once the boot was accepted, another trigger is refused by the bridge (F06.FR.17).
        answer = await csms_call(station, c201.TriggerMessage(requested_message="BootNotification"))
        assert answer.status == "Rejected"
        assert len(link.cp.received("TriggerMessage")) == 1


async def test_trigger_transaction_event_asks_for_the_transactions_meter_values(session16):
    local_id, tx_id = await start_transaction(session16, connector=2)
    answer = await csms_call(session16.station, c201.TriggerMessage(requested_message="TransactionEvent",
                                                                    evse={"id": 2}))
    assert answer.status == "Accepted"
    assert session16.link.cp.received("TriggerMessage") == [{"requestedMessage": "MeterValues", "connectorId": 2}]
    await session16.link.call(c16.MeterValues(connector_id=2, transaction_id=local_id, meter_value=[
        {"timestamp": now(), "sampledValue": [{"value": "42", "context": "Trigger"}]}]))
    updated = await session16.station.expect("TransactionEvent", lambda e: e["eventType"] == "Updated")
    assert updated["transactionInfo"]["transactionId"] == tx_id
    assert updated["triggerReason"] == "Trigger"
