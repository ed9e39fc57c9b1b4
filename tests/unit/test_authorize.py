"""Authorize, charger -> CSMS: token type from the token's format, IdTokenInfo folded into 1.6 IdTagInfo
(mapping reference §2.1, §3.1)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings, TokenTypeRule
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from tests.playbook import Playbook


def _authorize(pb: Playbook, id_tag: str, info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one Authorize through the bridge: (the 2.0.1 request the CSMS saw, the 1.6 answer the charger got)."""
    uid = pb.charger_sends("Authorize", {"idTag": id_tag})
    call = pb.csms_receives("Authorize")
    pb.csms_answers(call, {"idTokenInfo": info})
    return call.payload, pb.charger_receives_result(uid)


@pytest.mark.parametrize(("id_tag", "token_type"), [
    ("04A1B2C3", "ISO14443"),  # 4-byte UID
    ("04a1b2c3d4e5f6", "ISO14443"),  # 7-byte UID, lower case
    ("04A1B2C3D4E5F6A7B8C9", "ISO14443"),  # 10-byte UID
    ("E004010012345678", "ISO15693"),  # 8-byte UID
    ("NLTNMC00122045K", "eMAID"),
    ("NL-TNM-C00122045-K", "eMAID"),
    ("DE-8EO-C12345678", "eMAID"),  # no check digit
    ("1234", "Local"),
    ("04A1B2C3D", "Local"),  # 9 hex digits: no UID length
    ("04A1B2G3", "Local"),  # not hex
    ("alice", "Local"),
])
def test_token_type_follows_the_token_format(id_tag: str, token_type: str) -> None:
    pb = Playbook.translated()
    request, _ = _authorize(pb, id_tag, {"status": "Accepted"})
    assert request == {"idToken": {"idToken": id_tag, "type": token_type}}


def test_token_type_rules_are_configurable() -> None:
    settings = CoreSettings(token_rules=(TokenTypeRule(re.compile(r"KC\d+"), "KeyCode"),),
                            default_token_type="Central")
    pb = Playbook.translated(settings=settings)
    assert _authorize(pb, "KC1234", {"status": "Accepted"})[0]["idToken"]["type"] == "KeyCode"
    assert _authorize(pb, "04A1B2C3", {"status": "Accepted"})[0]["idToken"]["type"] == "Central"


def test_a_token_the_csms_typed_keeps_its_type() -> None:
    meta = ChargerMeta("CP-1")
    meta.remember_token_type("04A1B2C3", "Central")
    pb = Playbook.translated(state=ChargerState(meta))
    assert _authorize(pb, "04A1B2C3", {"status": "Accepted"})[0]["idToken"] == {"idToken": "04A1B2C3",
                                                                                "type": "Central"}


@pytest.mark.parametrize(("status", "expected"), [
    ("Accepted", "Accepted"),
    ("Blocked", "Blocked"),
    ("Expired", "Expired"),
    ("Invalid", "Invalid"),
    ("ConcurrentTx", "ConcurrentTx"),
    ("Unknown", "Invalid"),
    ("NoCredit", "Invalid"),
    ("NotAtThisTime", "Invalid"),
    ("NotAtThisLocation", "Invalid"),
    ("NotAllowedTypeEVSE", "Invalid"),
])
@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_status_mapping(upstream: Version, status: str, expected: str) -> None:
    pb = Playbook.translated(upstream)
    assert _authorize(pb, "04A1B2C3", {"status": status})[1] == {"idTagInfo": {"status": expected}}


def test_group_token_becomes_parent_id_tag_when_it_fits() -> None:
    pb = Playbook.translated()
    _, answer = _authorize(pb, "04A1B2C3", {"status": "Accepted", "groupIdToken": {"idToken": "G" * 20,
                                                                                  "type": "Central"}})
    assert answer["idTagInfo"]["parentIdTag"] == "G" * 20


def test_group_token_longer_than_20_is_dropped() -> None:
    pb = Playbook.translated()
    _, answer = _authorize(pb, "04A1B2C3", {"status": "Accepted", "groupIdToken": {"idToken": "G" * 21,
                                                                                  "type": "Central"}})
    assert answer == {"idTagInfo": {"status": "Accepted"}}


def test_cache_expiry_becomes_expiry_date_and_extras_are_dropped() -> None:
    pb = Playbook.translated()
    _, answer = _authorize(pb, "04A1B2C3", {
        "status": "Accepted", "cacheExpiryDateTime": "2024-06-01T00:00:00.000Z", "chargingPriority": 3,
        "language1": "nl", "evseId": [1], "personalMessage": {"format": "UTF8", "content": "hi"},
    })
    assert answer == {"idTagInfo": {"status": "Accepted", "expiryDate": "2024-06-01T00:00:00.000Z"}}


def test_certificate_status_is_not_relayed() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_answers(pb.csms_receives("Authorize"), {"idTokenInfo": {"status": "Accepted"},
                                                    "certificateStatus": "Accepted"})
    assert pb.charger_receives_result(uid) == {"idTagInfo": {"status": "Accepted"}}


@pytest.mark.parametrize(("csms_code", "charger_code"), [
    ("FormatViolation", "FormationViolation"),
    ("OccurrenceConstraintViolation", "OccurenceConstraintViolation"),
    ("InternalError", "InternalError"),
    ("SecurityError", "SecurityError"),
])
def test_csms_error_is_relayed_not_turned_into_a_decision(csms_code: str, charger_code: str) -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_fails(pb.csms_receives("Authorize"), csms_code, "nope")
    error = pb.charger_receives_error(charger_code, uid)
    assert error.raw[3] == "nope"
    pb.nothing_pending()


def test_authorize_timeout_is_not_a_decision() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("Authorize", {"idTag": "04A1B2C3"})
    pb.csms_receives("Authorize")
    pb.advance(21)
    pb.charger_receives_error("InternalError", uid)
    pb.nothing_pending()
