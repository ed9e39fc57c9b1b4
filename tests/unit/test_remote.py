"""CSMS-initiated Core operations carried down to a 1.6 charger (mapping reference §2.2, §3.6). The firmware /
diagnostics notifications a trigger can cause are tested in test_firmware.py and test_logs.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge.core.events import Emit, ExchangeDone, Persist, SendToCharger, SendToCsms
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState, TxRecord
from ocpp_bridge.core.translate.remote import MAX_PENDING_REMOTE_STARTS
from ocpp_bridge.core.translate.transactions import REMOTE_START_VALIDITY
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
TOKEN = {"idToken": "04A1B2C3", "type": "Central"}


def _ask(pb: Playbook, action: str, payload: dict[str, Any], action16: str) -> tuple[str, Any]:
    """The CSMS sends ``action``; return its message id and the CALL the charger got."""
    uid = pb.csms_sends(action, payload)
    return uid, pb.charger_receives(action16)


def _local(pb: Playbook, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The CSMS sends ``action`` and the bridge answers it without asking the charger."""
    uid = pb.csms_sends(action, payload)
    result = pb.csms_receives_result(uid)
    pb.nothing_pending()
    return result


def _stop(pb: Playbook, local_id: int, reason: str = "Local") -> str:
    uid = pb.charger_sends("StopTransaction", {"transactionId": local_id, "meterStop": 2000,
                                               "timestamp": "2024-05-01T11:00:00Z", "reason": reason})
    ended = pb.csms_receives("TransactionEvent")
    assert ended.payload["eventType"] == "Ended"
    pb.csms_answers(ended, {})
    pb.charger_receives_result(uid)
    return uid


# --- RequestStartTransaction -----------------------------------------------------------------------------------


@BOTH
def test_remote_start_is_carried_and_its_id_reaches_the_started_event(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid, call = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 7, "evseId": 2},
                     "RemoteStartTransaction")
    assert call.payload == {"connectorId": 2, "idTag": "04A1B2C3"}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}

    pb.charger_sends("StartTransaction", {"connectorId": 2, "idTag": "04A1B2C3", "meterStart": 0,
                                          "timestamp": "2024-05-01T10:00:00Z"})
    event = pb.csms_receives("TransactionEvent").payload
    assert event["triggerReason"] == "RemoteStart"  # F01.FR.19
    assert event["transactionInfo"]["remoteStartId"] == 7  # F02.FR.01
    assert event["idToken"] == TOKEN  # the type the CSMS gave, not a guessed one
    assert pb.session.meta.remote_starts == []


def test_the_pending_remote_start_is_persisted_before_the_charger_hears_of_it() -> None:
    pb = Playbook.translated()
    pb.csms_sends("RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 9})
    metas = [(i, r) for i, c in enumerate(pb.commands) if isinstance(c, Persist)
             for r in c.records if isinstance(r, ChargerMeta) and r.remote_starts]
    sent = next(i for i, c in enumerate(pb.commands) if isinstance(c, SendToCharger))
    assert metas and metas[0][0] < sent
    meta = metas[0][1]
    assert meta.remote_starts == [{"remoteStartId": 9, "idTag": "04A1B2C3", "connectorId": None,
                                   "expires": pb.now + REMOTE_START_VALIDITY}]
    assert meta.token_types["04A1B2C3"] == "Central"
    assert pb.charger_receives("RemoteStartTransaction").payload == {"idTag": "04A1B2C3"}


def test_a_rejected_remote_start_is_forgotten() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 3, "evseId": 1},
                     "RemoteStartTransaction")
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}
    assert pb.session.meta.remote_starts == []
    # the removal is durable before the CSMS hears Rejected
    effects = [c for c in pb.commands if not isinstance(c, Emit | ExchangeDone)]
    assert isinstance(effects[-2], Persist) and isinstance(effects[-1], SendToCsms)
    # a later local start with the same tag is not mistaken for the remote one
    pb.charger_sends("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0,
                                          "timestamp": "2024-05-01T10:00:00Z"})
    event = pb.csms_receives("TransactionEvent").payload
    assert event["triggerReason"] == "Authorized"
    assert "remoteStartId" not in event["transactionInfo"]


def test_a_charger_error_on_remote_start_is_relayed_and_forgotten() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 3},
                     "RemoteStartTransaction")
    pb.charger_fails(call, "NotSupported", "no remote start here")
    frame = pb.csms_receives_error("NotSupported", uid)
    assert frame.raw[3] == "no remote start here"
    assert pb.session.meta.remote_starts == []


def test_a_remote_start_the_charger_does_not_answer_fails_with_internal_error() -> None:
    pb = Playbook.translated()
    uid, _ = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 3},
                  "RemoteStartTransaction")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.remote_starts == []


def test_an_invalid_charger_answer_becomes_internal_error() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 3},
                     "RemoteStartTransaction")
    pb.charger_answers(call, {"status": "Maybe"})
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.remote_starts == []


_PROFILE: dict[str, Any] = {
    "id": 12, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
    "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "minChargingRate": 6.01,
                          "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.05, "phaseToUse": 1,
                                                      "numberPhases": 1}]}],
}


@BOTH
def test_a_tx_profile_is_converted(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid, call = _ask(pb, "RequestStartTransaction",
                     {"idToken": TOKEN, "remoteStartId": 1, "evseId": 1, "chargingProfile": _PROFILE},
                     "RemoteStartTransaction")
    assert call.payload["chargingProfile"] == {
        "chargingProfileId": 12, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "minChargingRate": 6.1,  # multiples of 0.1 in 1.6
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 1}]},
    }
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}


def _schedule(**extra: Any) -> dict[str, Any]:
    return {**_PROFILE["chargingSchedule"][0], **extra}


@pytest.mark.parametrize(("upstream", "change", "reason"), [
    (Version.V201, {"idToken": {"idToken": "A" * 21, "type": "Central"}}, "InvalidIdToken"),
    (Version.V21, {"idToken": {"idToken": "", "type": "NoAuthorization"}}, "InvalidIdToken"),
    (Version.V201, {"evseId": 0}, "UnknownEvse"),
    (Version.V201, {"chargingProfile": {**_PROFILE, "chargingProfilePurpose": "TxDefaultProfile"}},
     "InvalidProfile"),
    (Version.V201, {"chargingProfile": {**_PROFILE, "transactionId": "t-1"}}, "InvalidProfile"),
    (Version.V201, {"chargingProfile": {**_PROFILE, "chargingSchedule": [_schedule(), _schedule(id=2)]}},
     "InvalidProfile"),
    (Version.V21, {"chargingProfile": {**_PROFILE, "chargingProfileKind": "Dynamic"}}, "InvalidProfile"),
    (Version.V21, {"chargingProfile": {**_PROFILE, "chargingSchedule": [
        _schedule(chargingSchedulePeriod=[{"startPeriod": 0, "setpoint": 10.0}])]}}, "InvalidProfile"),
    (Version.V21, {"chargingProfile": {**_PROFILE, "maxOfflineDuration": 60}}, "InvalidProfile"),
])
def test_remote_starts_1_6_cannot_express_are_rejected_locally(upstream: Version, change: dict[str, Any],
                                                                reason: str) -> None:
    pb = Playbook.translated(upstream)
    result = _local(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 1, **change})
    assert result["status"] == "Rejected"
    assert result["statusInfo"]["reasonCode"] == reason
    assert pb.session.meta.remote_starts == []


def test_pending_remote_starts_are_bounded() -> None:
    pb = Playbook.translated()
    for n in range(MAX_PENDING_REMOTE_STARTS + 4):
        uid, call = _ask(pb, "RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": n},
                         "RemoteStartTransaction")
        pb.charger_answers(call, {"status": "Accepted"})
        pb.csms_receives_result(uid)
    ids = [entry["remoteStartId"] for entry in pb.session.meta.remote_starts]
    assert ids == list(range(4, MAX_PENDING_REMOTE_STARTS + 4))  # the oldest are dropped


# --- RequestStopTransaction ---------------------------------------------------------------------------------------


@BOTH
def test_remote_stop_uses_the_chargers_integer_id(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    local_id, tx_id = pb.start(connector=1)
    uid, call = _ask(pb, "RequestStopTransaction", {"transactionId": tx_id}, "RemoteStopTransaction")
    assert call.payload == {"transactionId": local_id}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}


def test_remote_stop_rejected_by_the_charger() -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start()
    uid, call = _ask(pb, "RequestStopTransaction", {"transactionId": tx_id}, "RemoteStopTransaction")
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}


def test_remote_stop_of_an_unknown_or_ended_transaction_is_rejected_locally() -> None:
    pb = Playbook.translated()
    assert _local(pb, "RequestStopTransaction", {"transactionId": "nope"})["status"] == "Rejected"  # F03.FR.08
    local_id, tx_id = pb.start()
    _stop(pb, local_id)
    result = _local(pb, "RequestStopTransaction", {"transactionId": tx_id})
    assert result == {"status": "Rejected", "statusInfo": {"reasonCode": "TxNotFound",
                                                           "additionalInfo": "no ongoing transaction with this id"}}


def test_remote_stop_cannot_reach_another_chargers_transaction() -> None:
    foreign = TxRecord(identity="CP-2", local_id=1, tx_id="tx-of-cp2", connector_id=1, evse_id=1,
                       evse_connector_id=1, id_token="x", id_token_type="Local", meter_start=0,
                       started_at="2024-05-01T10:00:00.000Z", start_hash="h")
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1"), (foreign,)))
    assert _local(pb, "RequestStopTransaction", {"transactionId": "tx-of-cp2"})["status"] == "Rejected"


# --- Reset ----------------------------------------------------------------------------------------------------


@BOTH
def test_immediate_reset_is_a_soft_reset_and_the_next_boot_says_remote_reset(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid, call = _ask(pb, "Reset", {"type": "Immediate"}, "Reset")
    assert call.payload == {"type": "Soft"}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "RemoteReset"


def test_a_rejected_reset_leaves_the_boot_reason_alone() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "Reset", {"type": "Immediate"}, "Reset")
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}
    assert pb.session.meta.boot_reason is None


def test_reset_timeout_and_error_are_relayed() -> None:
    pb = Playbook.translated()
    uid, _ = _ask(pb, "Reset", {"type": "Immediate"}, "Reset")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    uid, call = _ask(pb, "Reset", {"type": "OnIdle"}, "Reset")
    pb.charger_fails(call, "InternalError", "busy")
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.boot_reason is None


def test_on_idle_reset_without_transactions_happens_at_once() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "Reset", {"type": "OnIdle"}, "Reset")
    assert call.payload == {"type": "Soft"}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}


@BOTH
def test_on_idle_reset_is_scheduled_until_the_last_transaction_ends(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    first, _ = pb.start(connector=1)
    second, _ = pb.start(connector=2, id_tag="04A1B2C4")
    assert _local(pb, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}  # B12.FR.01
    assert pb.session.meta.reset_on_idle
    _stop(pb, first)
    pb.nothing_pending()  # one transaction still runs
    _stop(pb, second)
    reset = pb.charger_receives("Reset")
    assert reset.payload == {"type": "Soft"}
    pb.charger_answers(reset, {"status": "Accepted"})
    pb.nothing_pending()  # the bridge's own call: its answer is not forwarded
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "ScheduledReset"


def test_an_immediate_reset_supersedes_a_scheduled_one() -> None:
    pb = Playbook.translated()
    local_id, _ = pb.start()
    assert _local(pb, "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    uid, call = _ask(pb, "Reset", {"type": "Immediate"}, "Reset")
    pb.charger_answers(call, {"status": "Accepted"})
    pb.csms_receives_result(uid)
    assert not pb.session.meta.reset_on_idle
    _stop(pb, local_id, reason="SoftReset")
    pb.nothing_pending()  # no second reset after the one the charger is doing


@pytest.mark.parametrize(("upstream", "payload"), [
    (Version.V201, {"type": "Immediate", "evseId": 1}),  # B11.FR.09
    (Version.V201, {"type": "OnIdle", "evseId": 1}),  # B12.FR.09
    (Version.V21, {"type": "ImmediateAndResume"}),
])
def test_resets_1_6_cannot_do_are_rejected_locally(upstream: Version, payload: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    result = _local(pb, "Reset", payload)
    assert result["status"] == "Rejected"
    assert result["statusInfo"]["reasonCode"] == "UnsupportedRequest"


# --- ChangeAvailability -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("evse", "connector"), [
    (None, 0),  # the whole station
    ({"id": 2}, 2),
    ({"id": 2, "connectorId": 1}, 2),
])
@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "Scheduled"])
def test_change_availability(evse: dict[str, int] | None, connector: int, answer: str) -> None:
    pb = Playbook.translated()
    payload: dict[str, Any] = {"operationalStatus": "Inoperative"}
    if evse is not None:
        payload["evse"] = evse
    uid, call = _ask(pb, "ChangeAvailability", payload, "ChangeAvailability")
    assert call.payload == {"connectorId": connector, "type": "Inoperative"}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}


@pytest.mark.parametrize("evse", [{"id": 1, "connectorId": 2}, {"id": 0, "connectorId": 1}, {"id": -1}])
def test_change_availability_of_a_connector_1_6_cannot_have_is_rejected(evse: dict[str, int]) -> None:
    pb = Playbook.translated()
    result = _local(pb, "ChangeAvailability", {"operationalStatus": "Operative", "evse": evse})
    assert result["status"] == "Rejected"


def test_change_availability_failure_is_relayed_on_2_1() -> None:
    pb = Playbook.translated(Version.V21)
    uid, call = _ask(pb, "ChangeAvailability", {"operationalStatus": "Operative"}, "ChangeAvailability")
    pb.charger_fails(call, "FormationViolation", "bad")
    pb.csms_receives_error("FormatViolation", uid)  # respelled for the 2.x side


# --- UnlockConnector ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    ("Unlocked", {"status": "Unlocked"}),
    ("UnlockFailed", {"status": "UnlockFailed"}),
    ("NotSupported", {"status": "UnlockFailed", "statusInfo": {
        "reasonCode": "UnsupportedRequest", "additionalInfo": "the charger does not support unlocking"}}),
])
def test_unlock_connector(answer: str, expected: dict[str, Any]) -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "UnlockConnector", {"evseId": 2, "connectorId": 1}, "UnlockConnector")
    assert call.payload == {"connectorId": 2}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == expected


@pytest.mark.parametrize("payload", [{"evseId": 1, "connectorId": 2}, {"evseId": 0, "connectorId": 1}])
def test_unlocking_an_unknown_connector(payload: dict[str, int]) -> None:
    pb = Playbook.translated()
    assert _local(pb, "UnlockConnector", payload) == {"status": "UnknownConnector"}  # F05.FR.03


def test_unlock_never_ends_a_transaction() -> None:
    pb = Playbook.translated()
    pb.start(connector=1)
    assert _local(pb, "UnlockConnector", {"evseId": 1, "connectorId": 1}) == {
        "status": "OngoingAuthorizedTransaction"}  # F05.FR.02
    uid, call = _ask(pb, "UnlockConnector", {"evseId": 2, "connectorId": 1}, "UnlockConnector")  # other EVSE
    pb.charger_answers(call, {"status": "Unlocked"})
    assert pb.csms_receives_result(uid) == {"status": "Unlocked"}


def test_unlock_timeout() -> None:
    pb = Playbook.translated()
    uid, _ = _ask(pb, "UnlockConnector", {"evseId": 1, "connectorId": 1}, "UnlockConnector")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)


# --- TriggerMessage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "expected"), [
    ({"requestedMessage": "Heartbeat"}, {"requestedMessage": "Heartbeat"}),
    ({"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}},
     {"requestedMessage": "StatusNotification", "connectorId": 2}),
    ({"requestedMessage": "MeterValues"}, {"requestedMessage": "MeterValues"}),
    ({"requestedMessage": "MeterValues", "evse": {"id": 2}}, {"requestedMessage": "MeterValues", "connectorId": 2}),
    ({"requestedMessage": "FirmwareStatusNotification"}, {"requestedMessage": "FirmwareStatusNotification"}),
    ({"requestedMessage": "LogStatusNotification"}, {"requestedMessage": "DiagnosticsStatusNotification"}),
    ({"requestedMessage": "BootNotification"}, {"requestedMessage": "BootNotification"}),
])
@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "NotImplemented"])
def test_trigger_message(request_: dict[str, Any], expected: dict[str, Any], answer: str) -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "TriggerMessage", request_, "TriggerMessage")
    assert call.payload == expected
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}


def test_triggered_boot_reports_reason_triggered() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "TriggerMessage", {"requestedMessage": "BootNotification"}, "TriggerMessage")
    pb.charger_answers(call, {"status": "Accepted"})
    pb.csms_receives_result(uid)
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "Triggered"


def test_boot_cannot_be_triggered_after_it_was_accepted() -> None:
    pb = Playbook.translated()
    pb.boot()
    result = _local(pb, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert result["status"] == "Rejected"  # F06.FR.17


@BOTH
def test_triggered_transaction_event_is_the_transactions_meter_values(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    local_id, tx_id = pb.start(connector=2)
    uid, call = _ask(pb, "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 2}},
                     "TriggerMessage")
    assert call.payload == {"requestedMessage": "MeterValues", "connectorId": 2}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    pb.charger_sends("MeterValues", {"connectorId": 2, "transactionId": local_id, "meterValue": [
        {"timestamp": "2024-05-01T10:30:00Z", "sampledValue": [{"value": "1500", "context": "Trigger"}]}]})
    event = pb.csms_receives("TransactionEvent").payload
    assert (event["eventType"], event["triggerReason"]) == ("Updated", "Trigger")  # F06.FR.07
    assert event["transactionInfo"]["transactionId"] == tx_id


def test_triggered_transaction_event_without_evse_uses_the_only_transaction() -> None:
    pb = Playbook.translated()
    pb.start(connector=3)
    _, call = _ask(pb, "TriggerMessage", {"requestedMessage": "TransactionEvent"}, "TriggerMessage")
    assert call.payload == {"requestedMessage": "MeterValues", "connectorId": 3}


@pytest.mark.parametrize("request_", [
    {"requestedMessage": "TransactionEvent", "evse": {"id": 1}},  # no transaction there
    {"requestedMessage": "TransactionEvent"},  # no transaction at all
    {"requestedMessage": "StatusNotification"},  # F06.FR.12
    {"requestedMessage": "StatusNotification", "evse": {"id": 1}},
    {"requestedMessage": "MeterValues", "evse": {"id": 1, "connectorId": 2}},
])
def test_triggers_the_bridge_rejects(request_: dict[str, Any]) -> None:
    pb = Playbook.translated()
    assert _local(pb, "TriggerMessage", request_)["status"] == "Rejected"


@pytest.mark.parametrize(("upstream", "wanted"), [
    # SignChargingStationCertificate and SignV2GCertificate are carried (tests/unit/test_security.py)
    (Version.V201, "SignCombinedCertificate"),
    (Version.V201, "PublishFirmwareStatusNotification"),  # F06.FR.08
    (Version.V21, "SignV2G20Certificate"),
    (Version.V21, "CustomTrigger"),
])
def test_triggers_1_6_cannot_send_are_not_implemented(upstream: Version, wanted: str) -> None:
    pb = Playbook.translated(upstream)
    result = _local(pb, "TriggerMessage", {"requestedMessage": wanted})
    assert result["status"] == "NotImplemented"


def test_trigger_failure_is_relayed() -> None:
    pb = Playbook.translated()
    uid, call = _ask(pb, "TriggerMessage", {"requestedMessage": "Heartbeat"}, "TriggerMessage")
    pb.charger_fails(call, "NotImplemented", "no triggers")
    pb.csms_receives_error("NotImplemented", uid)


# --- ClearCache ---------------------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("answer", ["Accepted", "Rejected"])
def test_clear_cache(upstream: Version, answer: str) -> None:
    pb = Playbook.translated(upstream)
    uid, call = _ask(pb, "ClearCache", {}, "ClearCache")
    assert call.payload == {}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}


def test_clear_cache_timeout_and_invalid_answer() -> None:
    pb = Playbook.translated()
    uid, _ = _ask(pb, "ClearCache", {}, "ClearCache")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    uid, call = _ask(pb, "ClearCache", {}, "ClearCache")
    pb.charger_answers(call, {"status": "Unknown"})
    pb.csms_receives_error("InternalError", uid)


# --- any schema-valid request: one well-formed answer, no bug -------------------------------------------------

_ints = st.integers(-3, 5) | st.integers(-(2**31), 2**31)
_evse = st.fixed_dictionaries({"id": _ints}, optional={"connectorId": _ints})
_limits = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-(10**6), 10**6)
_period = st.fixed_dictionaries({"startPeriod": _ints, "limit": _limits},
                                optional={"numberPhases": st.integers(0, 3), "phaseToUse": st.integers(0, 3)})
_profile = st.fixed_dictionaries({
    "id": _ints, "stackLevel": st.integers(0, 9),
    "chargingProfilePurpose": st.sampled_from(["TxProfile", "TxDefaultProfile"]),
    "chargingProfileKind": st.sampled_from(["Absolute", "Recurring", "Relative"]),
    "chargingSchedule": st.lists(st.fixed_dictionaries(
        {"id": _ints, "chargingRateUnit": st.sampled_from(["A", "W"]),
         "chargingSchedulePeriod": st.lists(_period, min_size=1, max_size=3)},
        optional={"minChargingRate": _limits, "duration": _ints}), min_size=1, max_size=2),
}, optional={"recurrencyKind": st.sampled_from(["Daily", "Weekly"])})
_token = st.fixed_dictionaries({"idToken": st.text(max_size=25),
                                "type": st.sampled_from(["Central", "ISO14443", "NoAuthorization", "Local"])})
_requests = st.one_of(
    st.tuples(st.just("RequestStartTransaction"), st.fixed_dictionaries(
        {"idToken": _token, "remoteStartId": _ints}, optional={"evseId": _ints, "chargingProfile": _profile})),
    st.tuples(st.just("RequestStopTransaction"), st.fixed_dictionaries({"transactionId": st.text(max_size=36)})),
    st.tuples(st.just("Reset"), st.fixed_dictionaries({"type": st.sampled_from(["Immediate", "OnIdle"])},
                                                      optional={"evseId": _ints})),
    st.tuples(st.just("ChangeAvailability"), st.fixed_dictionaries(
        {"operationalStatus": st.sampled_from(["Operative", "Inoperative"])}, optional={"evse": _evse})),
    st.tuples(st.just("UnlockConnector"), st.fixed_dictionaries({"evseId": _ints, "connectorId": _ints})),
    st.tuples(st.just("TriggerMessage"), st.fixed_dictionaries(
        {"requestedMessage": st.sampled_from(["BootNotification", "LogStatusNotification", "Heartbeat",
                                              "FirmwareStatusNotification", "MeterValues", "StatusNotification",
                                              "TransactionEvent", "SignV2GCertificate"])},
        optional={"evse": _evse})),
    st.tuples(st.just("ClearCache"), st.just({})),
)
_answers = st.sampled_from(["Accepted", "Rejected", "Scheduled", "NotImplemented", "Unlocked", "NotSupported"])


@settings(max_examples=300, deadline=None)
@given(request_=_requests, answer=_answers, with_tx=st.booleans())
def test_any_valid_request_gets_exactly_one_valid_answer(request_: tuple[str, dict[str, Any]], answer: str,
                                                         with_tx: bool) -> None:
    pb = Playbook.translated()
    if with_tx:
        pb.start(connector=1)
    action, payload = request_
    uid = pb.csms_sends(action, payload)
    if pb.to_charger:  # carried down: the charger answers (possibly with a status its schema does not allow)
        pb.charger_answers(pb.to_charger.pop(0), {"status": answer})
    answers = [f for f in pb.to_csms if f.unique_id == uid]
    assert len(answers) == 1 and answers[0].type_id in (3, 4)
    assert "bug" not in pb.emitted_kinds()


def test_an_expired_remote_start_does_not_mark_a_later_local_start() -> None:
    pb = Playbook.translated()
    pb.boot()
    uid = pb.csms_sends("RequestStartTransaction", {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
                                                    "remoteStartId": 77, "evseId": 1})
    pb.charger_answers(pb.charger_receives("RemoteStartTransaction"), {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    pb.advance(REMOTE_START_VALIDITY + 1)  # the driver never plugged in
    pb.charger_sends("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0,
                                         "timestamp": "2024-05-01T10:00:00Z"})
    started = pb.csms_receives("TransactionEvent").payload
    assert started["triggerReason"] == "Authorized"
    assert "remoteStartId" not in started["transactionInfo"]
