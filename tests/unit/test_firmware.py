"""Firmware updates (mapping reference §2.1, §2.2): UpdateFirmware carried as the 1.6 UpdateFirmware or the security
whitepaper's SignedUpdateFirmware, and status notifications carrying the update's requestId (2.0.1 L01, L02)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.events import Persist, SendToCsms
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
FIRMWARE = {"location": "https://fw.example.com/x1-2.0.bin", "retrieveDateTime": "2024-05-01T10:00:00Z"}
SIGNED = {**FIRMWARE, "signingCertificate": "-----BEGIN CERTIFICATE-----...", "signature": "c2lnbmF0dXJl"}


def _update(pb: Playbook, firmware: dict[str, Any], request_id: int = 7, **extra: Any) -> str:
    return pb.csms_sends("UpdateFirmware", {"requestId": request_id, "firmware": firmware, **extra})


# --- UpdateFirmware ------------------------------------------------------------------------------------------------


@BOTH
def test_an_unsigned_update_is_the_1_6_update_firmware(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, FIRMWARE, retries=3, retryInterval=60)
    call = pb.charger_receives("UpdateFirmware")
    assert call.payload == {"location": FIRMWARE["location"], "retrieveDate": FIRMWARE["retrieveDateTime"],
                            "retries": 3, "retryInterval": 60}
    pb.charger_answers(call, {})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}  # the 1.6 conf is empty (L02)
    assert (pb.session.meta.firmware_request_id, pb.session.meta.firmware_via) == (7, "UpdateFirmware")


@BOTH
@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "AcceptedCanceled", "InvalidCertificate",
                                    "RevokedCertificate"])
def test_a_signed_update_is_the_whitepapers_signed_update_firmware(upstream: Version, answer: str) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, {**SIGNED, "installDateTime": "2024-05-02T00:00:00Z"}, retries=1)
    call = pb.charger_receives("SignedUpdateFirmware")
    assert call.payload == {"requestId": 7, "retries": 1,
                            "firmware": {**SIGNED, "installDateTime": "2024-05-02T00:00:00Z"}}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}
    started = answer in ("Accepted", "AcceptedCanceled")
    assert pb.session.meta.firmware_request_id == (7 if started else None)


def test_the_update_is_remembered_before_the_csms_hears_accepted() -> None:
    pb = Playbook.translated()
    _update(pb, FIRMWARE)
    start = len(pb.commands)
    pb.charger_answers(pb.charger_receives("UpdateFirmware"), {})
    commands = pb.commands[start:]
    stored = next(i for i, c in enumerate(commands) if isinstance(c, Persist)
                  and any(isinstance(r, ChargerMeta) and r.firmware_request_id == 7 for r in c.records))
    answered = next(i for i, c in enumerate(commands) if isinstance(c, SendToCsms))
    assert stored < answered


@pytest.mark.parametrize(("upstream", "firmware", "why"), [
    (Version.V201, {**FIRMWARE, "signature": "abc"}, "InvalidValue"),  # only one of the two
    (Version.V201, {**FIRMWARE, "signingCertificate": "abc"}, "InvalidValue"),
    (Version.V201, {**FIRMWARE, "location": "not a uri"}, "InvalidValue"),  # 1.6 UpdateFirmware location is a URI
    (Version.V201, {**FIRMWARE, "installDateTime": "2030-01-01T00:00:00Z"}, "UnsupportedRequest"),  # L02.FR.10
    (Version.V21, {**SIGNED, "location": "https://fw.example.com/" + "x" * 600}, "InvalidValue"),  # 2.1: 2000
])
def test_updates_1_6_cannot_carry_are_rejected_locally(upstream: Version, firmware: dict[str, Any],
                                                       why: str) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, firmware)
    answer = pb.csms_receives_result(uid)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == why
    pb.nothing_pending()


def test_an_install_time_that_is_already_due_is_fine() -> None:
    pb = Playbook.translated()
    _update(pb, {**FIRMWARE, "installDateTime": "2024-05-01T10:00:00Z"})
    assert "installDateTime" not in pb.charger_receives("UpdateFirmware").payload


def test_a_charger_without_signed_updates_gets_rejected_and_remembered() -> None:
    pb = Playbook.translated()
    uid = _update(pb, SIGNED)
    pb.charger_fails(pb.charger_receives("SignedUpdateFirmware"), "NotImplemented")
    answer = pb.csms_receives_result(uid)
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "UnsupportedRequest"
    assert pb.session.meta.features["SignedUpdateFirmware"] is False
    uid = _update(pb, SIGNED)
    assert pb.csms_receives_result(uid)["status"] == "Rejected"  # not asked again
    pb.nothing_pending()


@BOTH
def test_update_failures_are_relayed(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, FIRMWARE)
    pb.charger_fails(pb.charger_receives("UpdateFirmware"), "InternalError", "disk full")
    pb.csms_receives_error("InternalError", uid)
    uid = _update(pb, SIGNED)
    pb.charger_receives("SignedUpdateFirmware")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.firmware_request_id is None
    assert "SignedUpdateFirmware" not in pb.session.meta.features  # a timeout says nothing about support


# --- status notifications ------------------------------------------------------------------------------------------


def _notify(pb: Playbook, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    uid = pb.charger_sends(action, payload)
    assert pb.charger_receives_result(uid) == {}  # stored: from now on the bridge owns its delivery
    call = pb.csms_receives("FirmwareStatusNotification")
    pb.csms_answers(call, {})
    pb.nothing_pending()
    return call.payload


@BOTH
@pytest.mark.parametrize("status", ["Downloaded", "DownloadFailed", "Downloading", "Idle", "InstallationFailed",
                                    "Installing", "Installed"])
def test_every_1_6_firmware_status_exists_in_2_x(upstream: Version, status: str) -> None:
    pb = Playbook.translated(upstream)
    assert _notify(pb, "FirmwareStatusNotification", {"status": status}) == {"status": status}


@BOTH
def test_status_notifications_carry_the_update_request_id(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, FIRMWARE, request_id=31)
    pb.charger_answers(pb.charger_receives("UpdateFirmware"), {})
    pb.csms_receives_result(uid)
    assert _notify(pb, "FirmwareStatusNotification", {"status": "Downloading"}) == {
        "status": "Downloading", "requestId": 31}  # L02.FR.06
    assert _notify(pb, "FirmwareStatusNotification", {"status": "Idle"}) == {"status": "Idle"}  # L01.FR.20


def test_installing_makes_the_next_boot_a_firmware_update() -> None:
    pb = Playbook.translated()
    _notify(pb, "FirmwareStatusNotification", {"status": "Installing"})
    assert "firmware.no_request_id" in pb.emitted_kinds()  # an update the bridge did not carry
    pb.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
    assert pb.csms_receives("BootNotification").payload["reason"] == "FirmwareUpdate"


@BOTH
def test_signed_status_notifications(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _update(pb, SIGNED, request_id=12)
    pb.charger_answers(pb.charger_receives("SignedUpdateFirmware"), {"status": "Accepted"})
    pb.csms_receives_result(uid)
    assert _notify(pb, "SignedFirmwareStatusNotification", {"status": "SignatureVerified"}) == {
        "status": "SignatureVerified", "requestId": 12}
    assert _notify(pb, "SignedFirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 99}) == {
        "status": "InvalidSignature", "requestId": 99}  # the charger's own id wins
    # the plain notification does not borrow the signed update's id
    assert _notify(pb, "FirmwareStatusNotification", {"status": "Downloaded"}) == {"status": "Downloaded"}
    assert pb.session.meta.features["SignedUpdateFirmware"] is True


def test_the_request_id_survives_a_restart() -> None:
    pb = Playbook.translated()
    uid = _update(pb, FIRMWARE, request_id=5)
    pb.charger_answers(pb.charger_receives("UpdateFirmware"), {})
    pb.csms_receives_result(uid)
    again = Playbook.translated(state=ChargerState(pb.session.meta.snapshot()))
    assert _notify(again, "FirmwareStatusNotification", {"status": "Installed"})["requestId"] == 5


def test_a_csms_failure_is_retried_not_lost() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("SignedFirmwareStatusNotification", {"status": "Downloading", "requestId": 2})
    assert pb.charger_receives_result(uid) == {}
    pb.csms_fails(pb.csms_receives("FirmwareStatusNotification"), "InternalError")
    pb.advance(10)  # the queue's back-off
    again = pb.csms_receives("FirmwareStatusNotification")
    assert again.payload == {"status": "Downloading", "requestId": 2}


def test_installed_firmware_forgets_what_the_old_one_could_not_do() -> None:
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1", features={"GetLog": False, "pnc": False})))
    _notify(pb, "FirmwareStatusNotification", {"status": "Installed"})
    assert pb.session.meta.features == {}


def test_triggered_firmware_status_after_a_signed_update_uses_the_extended_trigger() -> None:
    pb = Playbook.translated()
    uid = _update(pb, SIGNED)
    pb.charger_answers(pb.charger_receives("SignedUpdateFirmware"), {"status": "Accepted"})
    pb.csms_receives_result(uid)
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    call = pb.charger_receives("ExtendedTriggerMessage")
    assert call.payload == {"requestedMessage": "FirmwareStatusNotification"}  # whitepaper §6.16
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
