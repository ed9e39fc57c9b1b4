"""The local authorization list (mapping reference §2.2 Local auth list; 2.0.1 D01, D02)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])


def _item(token: str, status: str | None = "Accepted", **info: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"idToken": {"idToken": token, "type": "Central"}}
    if status is not None:
        item["idTokenInfo"] = {"status": status, **info}
    return item


@BOTH
def test_send_local_list_is_renamed_field_by_field(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("SendLocalList", {"versionNumber": 3, "updateType": "Differential", "localAuthorizationList": [
        _item("04A1B2C3", "Accepted", cacheExpiryDateTime="2024-06-01T00:00:00Z",
              groupIdToken={"idToken": "FLEET-1", "type": "Central"}),
        _item("04A1B2C4", "NotAtThisTime"),  # a status 1.6 lacks
        _item("04A1B2C5", None),  # no info: remove it (D01.FR.17)
    ]})
    call = pb.charger_receives("SendLocalList")
    assert call.payload == {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": [
        {"idTag": "04A1B2C3", "idTagInfo": {"status": "Accepted", "expiryDate": "2024-06-01T00:00:00Z",
                                            "parentIdTag": "FLEET-1"}},
        {"idTag": "04A1B2C4", "idTagInfo": {"status": "Invalid"}},
        {"idTag": "04A1B2C5"},
    ]}
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    assert pb.session.meta.token_types["04A1B2C3"] == "Central"  # later starts use the CSMS's token type


def test_a_full_update_without_a_list_empties_it() -> None:
    pb = Playbook.translated()
    pb.csms_sends("SendLocalList", {"versionNumber": 9, "updateType": "Full"})
    assert pb.charger_receives("SendLocalList").payload == {"listVersion": 9, "updateType": "Full"}  # D01.FR.04


@pytest.mark.parametrize(("upstream", "token"), [(Version.V201, "A" * 21), (Version.V21, "B" * 200),
                                                 (Version.V201, "")])
def test_a_token_1_6_cannot_hold_fails_the_whole_list(upstream: Version, token: str) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("SendLocalList", {"versionNumber": 2, "updateType": "Full",
                                          "localAuthorizationList": [_item("OK"), _item(token)]})
    answer = pb.csms_receives_result(uid)
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "InvalidIdToken"
    pb.nothing_pending()
    assert "OK" not in pb.session.meta.token_types


@pytest.mark.parametrize(("answer", "expected"), [("Accepted", "Accepted"), ("Failed", "Failed"),
                                                  ("VersionMismatch", "VersionMismatch"), ("NotSupported", "Failed")])
def test_send_local_list_answers(answer: str, expected: str) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("SendLocalList", {"versionNumber": 2, "updateType": "Full"})
    pb.charger_answers(pb.charger_receives("SendLocalList"), {"status": answer})
    result = pb.csms_receives_result(uid)
    assert result["status"] == expected
    assert ("statusInfo" in result) == (answer == "NotSupported")


@BOTH
def test_send_local_list_failures_are_relayed(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("SendLocalList", {"versionNumber": 2, "updateType": "Full"})
    pb.charger_fails(pb.charger_receives("SendLocalList"), "NotSupported", "no local list")
    pb.csms_receives_error("NotSupported", uid)
    uid = pb.csms_sends("SendLocalList", {"versionNumber": 2, "updateType": "Full"})
    pb.charger_receives("SendLocalList")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)


@BOTH
@pytest.mark.parametrize(("version", "expected"), [(5, 5), (0, 0), (-1, 0)])  # -1: not supported (D02.FR.03)
def test_get_local_list_version(upstream: Version, version: int, expected: int) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("GetLocalListVersion", {})
    call = pb.charger_receives("GetLocalListVersion")
    assert call.payload == {}
    pb.charger_answers(call, {"listVersion": version})
    assert pb.csms_receives_result(uid) == {"versionNumber": expected}


def test_get_local_list_version_failures() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("GetLocalListVersion", {})
    pb.charger_fails(pb.charger_receives("GetLocalListVersion"), "NotImplemented")
    pb.csms_receives_error("NotImplemented", uid)
    uid = pb.csms_sends("GetLocalListVersion", {})
    pb.charger_answers(pb.charger_receives("GetLocalListVersion"), {"listVersion": "1"})  # invalid answer
    pb.csms_receives_error("InternalError", uid)
