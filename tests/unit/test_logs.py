"""Log uploads (mapping reference §2.2 GetLog, §2.1): GetLog carried as GetDiagnostics or the whitepaper's GetLog,
and upload status notifications carrying the GetLog's requestId (2.0.1 N01)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
LOG = {"remoteLocation": "ftp://logs.example.com/up", "oldestTimestamp": "2024-05-01T00:00:00Z",
       "latestTimestamp": "2024-05-01T10:00:00Z"}


def _get_log(pb: Playbook, log_type: str = "DiagnosticsLog", request_id: int = 4, **extra: Any) -> str:
    return pb.csms_sends("GetLog", {"log": LOG, "logType": log_type, "requestId": request_id, **extra})


def _with_get_log(supported: bool) -> ChargerState:
    return ChargerState(ChargerMeta("CP-1", features={"GetLog": supported}))


@BOTH
def test_diagnostics_go_through_get_diagnostics(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _get_log(pb, retries=2, retryInterval=30)
    call = pb.charger_receives("GetDiagnostics")
    assert call.payload == {"location": LOG["remoteLocation"], "startTime": LOG["oldestTimestamp"],
                            "stopTime": LOG["latestTimestamp"], "retries": 2, "retryInterval": 30}
    pb.charger_answers(call, {"fileName": "diag-2024-05-01.zip"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "filename": "diag-2024-05-01.zip"}  # N01.FR.01
    assert (pb.session.meta.log_request_id, pb.session.meta.log_via) == (4, "GetDiagnostics")


def test_no_file_name_means_nothing_to_upload() -> None:
    pb = Playbook.translated()
    uid = _get_log(pb)
    pb.charger_answers(pb.charger_receives("GetDiagnostics"), {})
    answer = pb.csms_receives_result(uid)
    assert answer["status"] == "Rejected"  # N01.FR.05
    assert pb.session.meta.log_request_id is None


@BOTH
@pytest.mark.parametrize("answer", [{"status": "Accepted", "filename": "sec.log"}, {"status": "Rejected"},
                                    {"status": "AcceptedCanceled", "filename": "sec.log"}])
def test_the_security_log_goes_through_the_whitepapers_get_log(upstream: Version, answer: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    uid = _get_log(pb, "SecurityLog", retries=1)
    call = pb.charger_receives("GetLog")
    assert call.payload == {"log": LOG, "logType": "SecurityLog", "requestId": 4, "retries": 1}
    pb.charger_answers(call, answer)
    assert pb.csms_receives_result(uid) == answer
    assert pb.session.meta.features["GetLog"] is True
    assert pb.session.meta.log_via == ("GetLog" if answer["status"] != "Rejected" else None)


def test_diagnostics_use_get_log_once_the_charger_showed_it_has_it() -> None:
    pb = Playbook.translated(state=_with_get_log(True))
    uid = _get_log(pb)
    call = pb.charger_receives("GetLog")
    assert call.payload["logType"] == "DiagnosticsLog"
    pb.charger_answers(call, {"status": "Accepted", "filename": "d.tgz"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "filename": "d.tgz"}


def test_a_charger_without_get_log_refuses_the_security_log() -> None:
    pb = Playbook.translated()
    uid = _get_log(pb, "SecurityLog")
    pb.charger_fails(pb.charger_receives("GetLog"), "NotImplemented")
    answer = pb.csms_receives_result(uid)
    assert (answer["status"], answer["statusInfo"]["reasonCode"]) == ("Rejected", "UnsupportedRequest")
    assert pb.session.meta.features["GetLog"] is False
    uid = _get_log(pb, "SecurityLog")
    assert pb.csms_receives_result(uid)["status"] == "Rejected"
    pb.nothing_pending()
    _get_log(pb)  # diagnostics still go through GetDiagnostics
    pb.charger_receives("GetDiagnostics")


@pytest.mark.parametrize(("upstream", "payload"), [
    (Version.V21, {"logType": "DataCollectorLog"}),
    (Version.V201, {"log": {"remoteLocation": "not a uri"}}),  # GetDiagnostics location is a URI
    (Version.V21, {"logType": "SecurityLog", "log": {"remoteLocation": "https://x/" + "y" * 600}}),  # 1.6: 512
])
def test_requests_1_6_cannot_carry_are_rejected_locally(upstream: Version, payload: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("GetLog", {"log": LOG, "logType": "DiagnosticsLog", "requestId": 1, **payload})
    assert pb.csms_receives_result(uid)["status"] == "Rejected"
    pb.nothing_pending()


@BOTH
def test_get_log_failures_are_relayed(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _get_log(pb)
    pb.charger_fails(pb.charger_receives("GetDiagnostics"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
    uid = _get_log(pb, "SecurityLog")
    pb.charger_receives("GetLog")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert "GetLog" not in pb.session.meta.features


# --- status notifications ------------------------------------------------------------------------------------------


def _notify(pb: Playbook, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    uid = pb.charger_sends(action, payload)
    assert pb.charger_receives_result(uid) == {}  # stored: from now on the bridge owns its delivery
    call = pb.csms_receives("LogStatusNotification")
    pb.csms_answers(call, {})
    pb.nothing_pending()
    return call.payload


@BOTH
@pytest.mark.parametrize(("status", "expected"), [
    ("Idle", "Idle"), ("Uploaded", "Uploaded"), ("Uploading", "Uploading"), ("UploadFailed", "UploadFailure"),
])
def test_diagnostics_status_becomes_log_status(upstream: Version, status: str, expected: str) -> None:
    pb = Playbook.translated(upstream)
    assert _notify(pb, "DiagnosticsStatusNotification", {"status": status}) == {"status": expected}


@BOTH
def test_diagnostics_status_carries_the_get_log_request_id(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = _get_log(pb, request_id=77)
    pb.charger_answers(pb.charger_receives("GetDiagnostics"), {"fileName": "d.zip"})
    pb.csms_receives_result(uid)
    assert _notify(pb, "DiagnosticsStatusNotification", {"status": "Uploading"}) == {
        "status": "Uploading", "requestId": 77}  # N01.FR.07
    assert _notify(pb, "DiagnosticsStatusNotification", {"status": "UploadFailed"}) == {
        "status": "UploadFailure", "requestId": 77}
    assert _notify(pb, "DiagnosticsStatusNotification", {"status": "Idle"}) == {"status": "Idle"}  # N01.FR.13


@BOTH
@pytest.mark.parametrize("status", ["BadMessage", "Idle", "NotSupportedOperation", "PermissionDenied", "Uploaded",
                                    "UploadFailure", "Uploading"])
def test_log_status_notification_is_identical(upstream: Version, status: str) -> None:
    pb = Playbook.translated(upstream)
    assert _notify(pb, "LogStatusNotification", {"status": status, "requestId": 3}) == {
        "status": status, "requestId": 3}
    assert pb.session.meta.features["GetLog"] is True  # only a charger with GetLog sends it


def test_log_status_without_an_id_gets_the_remembered_one() -> None:
    pb = Playbook.translated()
    uid = _get_log(pb, "SecurityLog", request_id=8)
    pb.charger_answers(pb.charger_receives("GetLog"), {"status": "Accepted"})
    pb.csms_receives_result(uid)
    assert _notify(pb, "LogStatusNotification", {"status": "Uploaded"}) == {"status": "Uploaded", "requestId": 8}
    # DiagnosticsStatusNotification belongs to GetDiagnostics, not to this GetLog
    assert _notify(pb, "DiagnosticsStatusNotification", {"status": "Uploaded"}) == {"status": "Uploaded"}


def test_a_csms_timeout_is_retried_not_lost() -> None:
    pb = Playbook.translated()
    uid = pb.charger_sends("DiagnosticsStatusNotification", {"status": "Uploading"})
    assert pb.charger_receives_result(uid) == {}
    pb.csms_receives("LogStatusNotification")
    pb.advance(25)
    pb.advance(10)
    assert pb.csms_receives("LogStatusNotification").payload == {"status": "Uploading"}


@pytest.mark.parametrize(("via", "expected"), [
    (None, ("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})),
    ("GetDiagnostics", ("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})),
    ("GetLog", ("ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"})),
])
def test_triggered_log_status_asks_for_the_message_of_the_last_upload(via: str | None,
                                                                     expected: tuple[str, Any]) -> None:
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1", log_request_id=1, log_via=via)))
    uid = pb.csms_sends("TriggerMessage", {"requestedMessage": "LogStatusNotification"})
    call = pb.charger_receives(expected[0])
    assert call.payload == expected[1]
    pb.charger_answers(call, {"status": "Rejected"})
    assert pb.csms_receives_result(uid) == {"status": "Rejected"}
