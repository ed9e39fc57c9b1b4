"""The 1.6 security whitepaper (mapping reference §2.1, §2.2 Security): station messages, ExtendedTriggerMessage, and
certificate management split between the whitepaper's messages and the ISO 15118 tunnel (2.0.1 A02-A04, M03-M05)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from ocpp_bridge.core.translate.pnc import VENDOR_ID
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "aa11", "issuerKeyHash": "bb22", "serialNumber": "0123"}
HASH2 = {**HASH, "serialNumber": "4567"}
NO_PNC = ChargerState(ChargerMeta("CP-1", features={"pnc": False}))


def _tunnel_answer(pb: Playbook, action: str, response: dict[str, Any], status: str = "Accepted") -> dict[str, Any]:
    """The charger gets ``action`` through the tunnel and answers ``response``; returns the tunnelled request."""
    call = pb.charger_receives("DataTransfer")
    assert (call.payload["vendorId"], call.payload["messageId"]) == (VENDOR_ID, action)
    pb.charger_answers(call, {"status": status, "data": orjson.dumps(response).decode()})
    return dict(orjson.loads(call.payload["data"]))


# --- charger -> CSMS ------------------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(("event", "expected"), [
    ("InvalidCentralSystemCertificate", "InvalidCsmsCertificate"),
    ("FailedToAuthenticationAtCentralSystem", "FailedToAuthenticateAtCsms"),
    ("CentralSystemFailedToAuthentication", "CsmsFailedToAuthenticate"),
    ("InvalidChargePointCertificate", "InvalidChargingStationCertificate"),
    ("TamperDetectionActivated", "TamperDetectionActivated"),
    ("AcmeVendorEvent", "AcmeVendorEvent"),
])
def test_security_event_notification(upstream: Version, event: str, expected: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("SecurityEventNotification", {"type": event, "timestamp": "2024-05-01T10:00:00.123456Z",
                                                         "techInfo": "port 443"})
    assert pb.charger_receives_result(uid) == {}  # stored for guaranteed delivery (A04.FR.02)
    call = pb.csms_receives("SecurityEventNotification")
    assert call.payload == {"type": expected, "timestamp": "2024-05-01T10:00:00.123Z", "techInfo": "port 443"}
    pb.csms_answers(call, {})
    pb.nothing_pending()


@BOTH
@pytest.mark.parametrize("status", ["Accepted", "Rejected"])
def test_sign_certificate_is_for_the_charging_station_certificate(upstream: Version, status: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----..."})
    call = pb.csms_receives("SignCertificate")
    assert call.payload == {"csr": "-----BEGIN CERTIFICATE REQUEST-----...",
                            "certificateType": "ChargingStationCertificate"}
    pb.csms_answers(call, {"status": status, "statusInfo": {"reasonCode": "X"}})
    assert pb.charger_receives_result(uid) == {"status": status}


def test_sign_certificate_gets_the_csms_failure_and_security_events_are_retried() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("SignCertificate", {"csr": "x"})
    pb.csms_fails(pb.csms_receives("SignCertificate"), "FormatViolation")
    pb.charger_receives_error("FormationViolation", uid)
    uid = pb.charger_sends("SecurityEventNotification", {"type": "x", "timestamp": "2024-05-01T10:00:00Z"})
    assert pb.charger_receives_result(uid) == {}
    pb.csms_receives("SecurityEventNotification")
    pb.advance(25)  # no answer
    pb.advance(10)
    assert pb.csms_receives("SecurityEventNotification").payload["type"] == "x"


# --- ExtendedTriggerMessage -------------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "NotImplemented"])
def test_the_charging_station_certificate_is_triggered_with_the_extended_trigger(upstream: Version,
                                                                                answer: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    call = pb.charger_receives("ExtendedTriggerMessage")
    assert call.payload == {"requestedMessage": "SignChargePointCertificate"}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}
    assert pb.session.meta.features["ExtendedTriggerMessage"] is True


def test_a_charger_without_the_extended_trigger_answers_not_implemented() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    pb.charger_fails(pb.charger_receives("ExtendedTriggerMessage"), "NotImplemented")
    assert pb.csms_receives_result(uid)["status"] == "NotImplemented"  # F06.FR.08
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    assert pb.csms_receives_result(uid)["status"] == "NotImplemented"
    pb.nothing_pending()  # remembered: not asked again


def test_extended_trigger_failures_are_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    pb.charger_fails(pb.charger_receives("ExtendedTriggerMessage"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    pb.charger_receives("ExtendedTriggerMessage")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)


@BOTH
def test_the_v2g_certificate_is_triggered_through_the_tunnel(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignV2GCertificate", "evse": {"id": 1}})
    sent = _tunnel_answer(pb, "TriggerMessage", {"status": "Accepted"})
    assert sent == {"requestedMessage": "SignV2GCertificate"}
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}


def test_a_v2g_trigger_without_the_tunnel_is_not_implemented() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "SignV2GCertificate"})
    pb.charger_answers(pb.charger_receives("DataTransfer"), {"status": "UnknownVendorId"})
    assert pb.csms_receives_result(uid)["status"] == "NotImplemented"
    assert pb.session.meta.features["pnc"] is False


# --- CertificateSigned / InstallCertificate ---------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("extra", [{}, {"certificateType": "ChargingStationCertificate"}])
def test_certificate_signed_for_the_station(upstream: Version, extra: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("CertificateSigned", {"certificateChain": "-----BEGIN CERTIFICATE-----...", **extra})
    call = pb.charger_receives("CertificateSigned")
    assert call.payload == {"certificateChain": "-----BEGIN CERTIFICATE-----..."}
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}


def test_certificate_signed_drops_the_2_1_request_id() -> None:
    pb = Playbook.translated(Version.V21)
    pb.csms_sends("CertificateSigned", {"certificateChain": "pem", "requestId": 4})
    assert pb.charger_receives("CertificateSigned").payload == {"certificateChain": "pem"}


@BOTH
def test_a_v2g_certificate_goes_through_the_tunnel(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("CertificateSigned", {"certificateChain": "pem", "certificateType": "V2GCertificate"})
    sent = _tunnel_answer(pb, "CertificateSigned", {"status": "Accepted"})
    assert sent == {"certificateChain": "pem", "certificateType": "V2GCertificate"}
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}


@pytest.mark.parametrize(("upstream", "action", "payload", "state"), [
    (Version.V21, "CertificateSigned", {"certificateChain": "p", "certificateType": "V2G20Certificate"}, None),
    (Version.V201, "CertificateSigned", {"certificateChain": "p", "certificateType": "V2GCertificate"}, NO_PNC),
    (Version.V21, "InstallCertificate", {"certificateType": "OEMRootCertificate", "certificate": "p"}, None),
    (Version.V21, "InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": "p" * 6000}, None),
    (Version.V21, "InstallCertificate", {"certificateType": "MORootCertificate", "certificate": "p" * 6000}, None),
    (Version.V201, "InstallCertificate", {"certificateType": "V2GRootCertificate", "certificate": "p"}, NO_PNC),
])
def test_certificates_1_6_cannot_take_are_rejected_locally(upstream: Version, action: str, payload: dict[str, Any],
                                                           state: ChargerState | None) -> None:
    pb = Playbook.translated(upstream, state=state)
    uid = pb.csms_sends(action, payload)
    assert pb.csms_receives_result(uid)["status"] == "Rejected"
    pb.nothing_pending()


@BOTH
@pytest.mark.parametrize(("kind", "kind16"), [("CSMSRootCertificate", "CentralSystemRootCertificate"),
                                              ("ManufacturerRootCertificate", "ManufacturerRootCertificate")])
@pytest.mark.parametrize("answer", ["Accepted", "Failed", "Rejected"])
def test_install_certificate_native(upstream: Version, kind: str, kind16: str, answer: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("InstallCertificate", {"certificateType": kind, "certificate": "pem"})
    call = pb.charger_receives("InstallCertificate")
    assert call.payload == {"certificateType": kind16, "certificate": "pem"}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}


@pytest.mark.parametrize("kind", ["V2GRootCertificate", "MORootCertificate"])
def test_install_v2g_roots_through_the_tunnel(kind: str) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("InstallCertificate", {"certificateType": kind, "certificate": "pem"})
    assert _tunnel_answer(pb, "InstallCertificate", {"status": "Failed"}) == {"certificateType": kind,
                                                                              "certificate": "pem"}
    assert pb.csms_receives_result(uid) == {"status": "Failed"}


def test_a_charger_without_the_whitepaper_rejects_certificates() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": "pem"})
    pb.charger_fails(pb.charger_receives("InstallCertificate"), "NotImplemented")
    answer = pb.csms_receives_result(uid)
    assert (answer["status"], answer["statusInfo"]["reasonCode"]) == ("Rejected", "UnsupportedRequest")
    uid = pb.csms_sends("CertificateSigned", {"certificateChain": "pem"})
    pb.charger_fails(pb.charger_receives("CertificateSigned"), "InternalError")
    pb.csms_receives_error("InternalError", uid)


@pytest.mark.parametrize("data", [None, "not json", '{"status": "Maybe"}', "[1]"])
def test_an_invalid_tunnel_answer_is_never_passed_on(data: str | None) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("InstallCertificate", {"certificateType": "MORootCertificate", "certificate": "pem"})
    answer = {"status": "Accepted"} | ({"data": data} if data is not None else {})
    pb.charger_answers(pb.charger_receives("DataTransfer"), answer)
    result = pb.csms_receives_result(uid)
    assert result["status"] == "Rejected"


def test_tunnel_failures_are_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("CertificateSigned", {"certificateChain": "p", "certificateType": "V2GCertificate"})
    pb.charger_receives("DataTransfer")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)


# --- DeleteCertificate ------------------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("answer", ["Accepted", "Failed"])
def test_delete_certificate_found_by_the_whitepaper(upstream: Version, answer: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("DeleteCertificate", {"certificateHashData": HASH})
    call = pb.charger_receives("DeleteCertificate")
    assert call.payload == {"certificateHashData": HASH}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}  # M04.FR.02/03
    pb.nothing_pending()


@pytest.mark.parametrize(("native", "tunnelled", "expected"), [
    ({"status": "NotFound"}, {"status": "Accepted"}, "Accepted"),
    ({"status": "NotFound"}, {"status": "NotFound"}, "NotFound"),
    ("NotImplemented", {"status": "Accepted"}, "Accepted"),
    ({"status": "NotFound"}, None, "NotFound"),  # no tunnel: not found anywhere (M04.FR.04)
])
def test_delete_certificate_not_found_natively_asks_the_tunnel(native: Any, tunnelled: dict[str, Any] | None,
                                                               expected: str) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("DeleteCertificate", {"certificateHashData": HASH})
    call = pb.charger_receives("DeleteCertificate")
    if isinstance(native, str):
        pb.charger_fails(call, native)
    else:
        pb.charger_answers(call, native)
    if tunnelled is None:
        pb.charger_answers(pb.charger_receives("DataTransfer"), {"status": "UnknownVendorId"})
    else:
        assert _tunnel_answer(pb, "DeleteCertificate", tunnelled) == {"certificateHashData": HASH}
    assert pb.csms_receives_result(uid) == {"status": expected}


def test_delete_certificate_failures_are_relayed() -> None:
    pb = Playbook.translated(state=NO_PNC)
    uid = pb.csms_sends("DeleteCertificate", {"certificateHashData": HASH})
    pb.charger_fails(pb.charger_receives("DeleteCertificate"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
    uid = pb.csms_sends("DeleteCertificate", {"certificateHashData": HASH})
    pb.charger_answers(pb.charger_receives("DeleteCertificate"), {"status": "NotFound"})
    assert pb.csms_receives_result(uid) == {"status": "NotFound"}  # the tunnel is known to be absent
    pb.nothing_pending()


# --- GetInstalledCertificateIds ---------------------------------------------------------------------------------------


@BOTH
def test_installed_certificates_are_gathered_from_every_place(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("GetInstalledCertificateIds", {})
    call = pb.charger_receives("GetInstalledCertificateIds")
    assert call.payload == {"certificateType": "CentralSystemRootCertificate"}
    pb.charger_answers(call, {"status": "Accepted", "certificateHashData": [HASH]})
    call = pb.charger_receives("GetInstalledCertificateIds")
    assert call.payload == {"certificateType": "ManufacturerRootCertificate"}
    pb.charger_answers(call, {"status": "NotFound"})
    sent = _tunnel_answer(pb, "GetInstalledCertificateIds", {"status": "Accepted", "certificateHashDataChain": [
        {"certificateType": "V2GRootCertificate", "certificateHashData": HASH2,
         "childCertificateHashData": [HASH]}]})
    assert sent == {"certificateType": ["V2GRootCertificate", "MORootCertificate", "V2GCertificateChain"]}
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "certificateHashDataChain": [
        {"certificateType": "CSMSRootCertificate", "certificateHashData": HASH},
        {"certificateType": "V2GRootCertificate", "certificateHashData": HASH2, "childCertificateHashData": [HASH]}]}


def test_only_the_asked_types_are_asked_for() -> None:
    pb = Playbook.translated(Version.V21)
    uid = pb.csms_sends("GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate",
                                                                           "OEMRootCertificate"]})
    call = pb.charger_receives("GetInstalledCertificateIds")
    assert call.payload == {"certificateType": "ManufacturerRootCertificate"}
    pb.charger_answers(call, {"status": "Accepted", "certificateHashData": [HASH, HASH2]})
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "certificateHashDataChain": [
        {"certificateType": "ManufacturerRootCertificate", "certificateHashData": h} for h in (HASH, HASH2)]}
    pb.nothing_pending()


def test_nothing_installed_anywhere_is_not_found() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate", "MORootCertificate"]})
    pb.charger_fails(pb.charger_receives("GetInstalledCertificateIds"), "NotImplemented")  # no whitepaper
    pb.charger_answers(pb.charger_receives("DataTransfer"), {"status": "UnknownVendorId"})  # no tunnel
    assert pb.csms_receives_result(uid) == {"status": "NotFound"}  # M03.FR.02


def test_a_failure_ends_the_inventory() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("GetInstalledCertificateIds", {})
    pb.charger_receives("GetInstalledCertificateIds")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    pb.nothing_pending()  # the remaining types are not asked after a timeout
    uid = pb.csms_sends("GetInstalledCertificateIds", {"certificateType": ["V2GCertificateChain"]})
    pb.charger_fails(pb.charger_receives("DataTransfer"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
