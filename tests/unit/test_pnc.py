"""ISO 15118 Plug & Charge through the 1.6 DataTransfer tunnel (mapping reference §2.9): what the charger tunnels
reaches the CSMS as native 2.0.1/2.1 messages, and their answers go back tunnelled."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.translate.pnc import VENDOR_ID
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
OCSP = {"hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "01",
        "responderURL": "http://ocsp.example.com"}
REQUESTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # messageId -> (2.0.1 request, CSMS answer)
    "Authorize": ({"idToken": {"idToken": "DE8AA1A2B3C4D56", "type": "eMAID"}, "certificate": "pem",
                   "iso15118CertificateHashData": [OCSP]},
                  {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}),
    "GetCertificateStatus": ({"ocspRequestData": OCSP}, {"status": "Accepted", "ocspResult": "MIIB"}),
    "SignCertificate": ({"csr": "pem", "certificateType": "V2GCertificate"}, {"status": "Accepted"}),
    "Get15118EVCertificate": ({"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install",
                               "exiRequest": "gAA="}, {"status": "Accepted", "exiResponse": "gAB="}),
}


def _tunnel(pb: Playbook, message_id: str, data: Any, vendor: str = VENDOR_ID) -> str:
    payload: dict[str, Any] = {"vendorId": vendor, "messageId": message_id}
    if data is not None:
        payload["data"] = data if isinstance(data, str) else orjson.dumps(data).decode()
    return pb.charger_sends("DataTransfer", payload)


@BOTH
@pytest.mark.parametrize("message_id", sorted(REQUESTS))
def test_tunnelled_requests_become_native(upstream: Version, message_id: str) -> None:
    pb = Playbook.translated(upstream)
    request, answer = REQUESTS[message_id]
    uid = _tunnel(pb, message_id, request)
    call = pb.csms_receives(message_id)
    assert call.payload == request
    pb.nothing_pending()
    pb.csms_answers(call, answer)
    result = pb.charger_receives_result(uid)
    assert result["status"] == "Accepted"
    assert orjson.loads(result["data"]) == answer
    assert pb.session.meta.features["pnc"] is True


def test_the_vendor_id_is_case_insensitive() -> None:
    pb = Playbook.translated()
    _tunnel(pb, "SignCertificate", REQUESTS["SignCertificate"][0], vendor=VENDOR_ID.upper())
    pb.csms_receives("SignCertificate")


def test_a_tunnelled_authorize_remembers_the_token_and_the_decision() -> None:
    pb = Playbook.translated()
    uid = _tunnel(pb, "Authorize", REQUESTS["Authorize"][0])
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Blocked"}})
    pb.charger_receives_result(uid)
    assert pb.session.meta.token_types["DE8AA1A2B3C4D56"] == "eMAID"
    assert pb.session.meta.auth_cache["DE8AA1A2B3C4D56"]["info"] == {"status": "Blocked"}


def test_a_2_1_answer_is_sent_down_as_2_0_1() -> None:
    pb = Playbook.translated(Version.V21)
    uid = _tunnel(pb, "Authorize", REQUESTS["Authorize"][0])
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"},
                                                    "allowedEnergyTransfer": ["DC"]})  # 2.1 only
    assert orjson.loads(pb.charger_receives_result(uid)["data"]) == {"idTokenInfo": {"status": "Accepted"}}


def test_a_2_1_answer_2_0_1_cannot_hold_is_rejected() -> None:
    pb = Playbook.translated(Version.V21)
    uid = _tunnel(pb, "GetCertificateStatus", REQUESTS["GetCertificateStatus"][0])
    pb.csms_answers(pb.csms_receives("GetCertificateStatus"), {"status": "Accepted", "ocspResult": "A" * 6000})
    assert pb.charger_receives_result(uid) == {"status": "Rejected"}
    assert "pnc.invalid" in pb.emitted_kinds()


@pytest.mark.parametrize("data", [None, "not json", "[1, 2]", {"idToken": "no object"},
                                  {"idToken": {"idToken": "x", "type": "eMAID"}, "colour": "red"}])
def test_invalid_tunnelled_payloads_are_never_forwarded(data: Any) -> None:
    pb = Playbook.translated()
    uid = _tunnel(pb, "Authorize", data)
    assert pb.charger_receives_result(uid) == {"status": "Rejected"}
    pb.nothing_pending()
    assert "pnc.invalid" in pb.emitted_kinds()


@pytest.mark.parametrize("message_id", ["CertificateSigned", "Frobnicate", None])
def test_unknown_tunnelled_messages(message_id: str | None) -> None:
    pb = Playbook.translated()
    payload: dict[str, Any] = {"vendorId": VENDOR_ID}
    if message_id is not None:
        payload["messageId"] = message_id
    uid = pb.charger_sends("DataTransfer", payload)
    assert pb.charger_receives_result(uid) == {"status": "UnknownMessageId"}
    pb.nothing_pending()


@BOTH
def test_csms_failures_reach_the_charger(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _tunnel(pb, "Get15118EVCertificate", REQUESTS["Get15118EVCertificate"][0])
    pb.csms_fails(pb.csms_receives("Get15118EVCertificate"), "InternalError", "no CPS")
    pb.charger_receives_error("InternalError", uid)
    uid = _tunnel(pb, "GetCertificateStatus", REQUESTS["GetCertificateStatus"][0])
    pb.csms_receives("GetCertificateStatus")
    pb.advance(25)
    pb.charger_receives_error("InternalError", uid)


def test_other_vendors_pass_through_untouched() -> None:
    pb = Playbook.translated()
    _tunnel(pb, "Authorize", {"x": 1}, vendor="com.acme")
    assert pb.csms_receives("DataTransfer").payload["vendorId"] == "com.acme"
