"""BootNotification and Heartbeat, charger -> CSMS (mapping reference §2.1)."""

from __future__ import annotations

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from tests.playbook import Playbook

ANSWER = {"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}


def test_boot_notification_fields() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("BootNotification", {
        "chargePointVendor": "Acme", "chargePointModel": "X1", "chargePointSerialNumber": "CP-SN-1",
        "chargeBoxSerialNumber": "CB-SN-1", "firmwareVersion": "1.2.3", "iccid": "8931000000000000001",
        "imsi": "204080000000001", "meterType": "EM340", "meterSerialNumber": "M-1",
    })
    call = pb.csms_receives("BootNotification")
    assert call.payload == {
        "chargingStation": {
            "vendorName": "Acme", "model": "X1", "serialNumber": "CP-SN-1", "firmwareVersion": "1.2.3",
            "modem": {"iccid": "8931000000000000001", "imsi": "204080000000001"},
        },
        "reason": "PowerUp",
    }
    pb.csms_answers(call, ANSWER)
    assert pb.charger_receives_result(uid) == ANSWER
    pb.nothing_pending()


def test_serial_falls_back_to_charge_box_serial() -> None:
    pb = Playbook.translated()
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1",
                                          "chargeBoxSerialNumber": "CB-SN-1"})
    station = pb.csms_receives("BootNotification").payload["chargingStation"]
    assert station == {"vendorName": "Acme", "model": "X1", "serialNumber": "CB-SN-1"}


def test_minimal_boot_has_no_serial_and_no_modem() -> None:
    pb = Playbook.translated()
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload == {
        "chargingStation": {"vendorName": "Acme", "model": "X1"}, "reason": "PowerUp"}


def test_modem_with_only_iccid() -> None:
    pb = Playbook.translated()
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1", "iccid": "123"})
    assert pb.csms_receives("BootNotification").payload["chargingStation"]["modem"] == {"iccid": "123"}


@pytest.mark.parametrize("reason", ["RemoteReset", "ScheduledReset", "Triggered", "FirmwareUpdate"])
def test_boot_reason_the_bridge_caused_is_reported_once(reason: str) -> None:
    state = ChargerState(ChargerMeta("CP-1", boot_reason=reason))
    pb = Playbook.translated(state=state)
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    call = pb.csms_receives("BootNotification")
    assert call.payload["reason"] == reason
    pb.csms_answers(call, ANSWER)
    assert pb.charger_receives_result(uid)["status"] == "Accepted"
    saved = [r for r in pb.persisted if isinstance(r, ChargerMeta)][-1]
    assert saved.boot_reason is None
    assert saved.boot_accepted is True
    # the next boot was not caused by the bridge
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "PowerUp"


def test_boot_reason_survives_a_failed_boot() -> None:
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1", boot_reason="RemoteReset")))
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    pb.csms_fails(pb.csms_receives("BootNotification"), "InternalError", "db down")
    pb.charger_receives_error("InternalError", uid)
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "RemoteReset"


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
def test_boot_answer_not_accepted(status: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    call = pb.csms_receives("BootNotification")
    pb.csms_answers(call, {**ANSWER, "status": status, "interval": 60,
                           "statusInfo": {"reasonCode": "Unknown", "additionalInfo": "who are you"}})
    assert pb.charger_receives_result(uid) == {"status": status, "currentTime": ANSWER["currentTime"],
                                               "interval": 60}  # statusInfo has no 1.6 field
    saved = [r for r in pb.persisted if isinstance(r, ChargerMeta)][-1]
    assert saved.boot_accepted is False


def test_boot_on_2_1_upstream() -> None:
    pb = Playbook.translated(Version.V21)
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1",
                                                "chargePointSerialNumber": "S1"})
    call = pb.csms_receives("BootNotification")
    assert call.payload["chargingStation"]["serialNumber"] == "S1"
    pb.csms_answers(call, ANSWER)
    assert pb.charger_receives_result(uid) == ANSWER


def test_heartbeat_is_forwarded_and_the_csms_clock_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    call = pb.csms_receives("Heartbeat")
    assert call.payload == {}
    assert call.unique_id != uid  # the bridge never reuses the charger's message ids upstream
    pb.csms_answers(call, {"currentTime": "2024-05-01T10:00:05.250Z"})
    assert pb.charger_receives_result(uid) == {"currentTime": "2024-05-01T10:00:05.250Z"}
    pb.nothing_pending()


def test_heartbeat_csms_error_is_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_fails(pb.csms_receives("Heartbeat"), "NotSupported", "no")
    pb.charger_receives_error("NotSupported", uid)


def test_heartbeat_timeout() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Heartbeat", {})
    pb.csms_receives("Heartbeat")
    pb.advance(21)
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()


def test_integral_float_interval_reaches_the_charger_as_an_integer() -> None:
    # 2.x schemas are draft-06, where 300.0 is an integer; the 1.6 schema (draft-04) and chargers want 300
    pb = Playbook.translated()
    uid = pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    call = pb.csms_receives("BootNotification")
    pb.csms_sends_raw(f'[3,"{call.unique_id}",{{"status":"Accepted","currentTime":"2024-05-01T10:00:00Z",'
                      '"interval":300.0}]')
    result = pb.charger_receives_result(uid)
    assert result["interval"] == 300
    assert type(result["interval"]) is int
