"""Smart charging (mapping reference §2.5, §2.8): SetChargingProfile, ClearChargingProfile, GetCompositeSchedule
carried to a 1.6 charger, and GetChargingProfiles answered from what the charger accepted (2.0.1 K01, K08-K10)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState, TxRecord
from ocpp_bridge.core.translate.smartcharging import MAX_PROFILES
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])


def _profile(**change: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "id": 5, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
        "chargingSchedule": [{"id": 9, "startSchedule": "2024-05-01T00:00:00Z", "chargingRateUnit": "A",
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.05},
                                                         {"startPeriod": 3600, "limit": 10, "numberPhases": 1,
                                                          "phaseToUse": 2}]}],
    }
    profile.update(change)
    return profile


def _set(pb: Playbook, evse_id: int, profile: dict[str, Any], answer: str = "Accepted") -> dict[str, Any]:
    uid = pb.csms_sends("SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile})
    call = pb.charger_receives("SetChargingProfile")
    pb.charger_answers(call, {"status": answer})
    result = pb.csms_receives_result(uid)
    result["_sent"] = call.payload
    return result


def _local(pb: Playbook, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    uid = pb.csms_sends(action, payload)
    result = pb.csms_receives_result(uid)
    pb.nothing_pending()
    return result


# --- SetChargingProfile ---------------------------------------------------------------------------------------


@BOTH
def test_a_default_profile_is_converted_and_remembered(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    result = _set(pb, 2, _profile())
    assert result["_sent"] == {"connectorId": 2, "csChargingProfiles": {
        "chargingProfileId": 5, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "2024-05-01T00:00:00Z",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0},
                                                        {"startPeriod": 3600, "limit": 10, "numberPhases": 1}]}}}
    assert result["status"] == "Accepted"
    [entry] = pb.session.meta.charging_profiles
    assert entry["evseId"] == 2
    assert entry["profile"]["chargingSchedule"][0]["id"] == 9  # the schedule id the CSMS gave
    assert entry["profile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 16.0  # what is in force


def test_the_station_max_profile_is_renamed_and_needs_evse_0() -> None:
    pb = Playbook.translated()
    result = _set(pb, 0, _profile(chargingProfilePurpose="ChargingStationMaxProfile"))
    assert result["_sent"]["csChargingProfiles"]["chargingProfilePurpose"] == "ChargePointMaxProfile"
    assert result["_sent"]["connectorId"] == 0
    for evse, kind in ((1, "Absolute"), (0, "Relative")):  # 1.6 §3.13.1; K01.FR.38
        profile = _profile(chargingProfilePurpose="ChargingStationMaxProfile", chargingProfileKind=kind)
        profile["chargingSchedule"][0].pop("startSchedule")
        answer = _local(pb, "SetChargingProfile", {"evseId": evse, "chargingProfile": profile})
        assert answer["status"] == "Rejected"


@BOTH
def test_a_tx_profile_uses_the_chargers_transaction_id(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    local_id, tx_id = pb.start(connector=1)
    result = _set(pb, 1, _profile(chargingProfilePurpose="TxProfile", transactionId=tx_id))
    assert result["_sent"]["csChargingProfiles"]["transactionId"] == local_id
    assert result["status"] == "Accepted"
    assert pb.session.meta.charging_profiles[0]["profile"]["transactionId"] == tx_id


def test_a_tx_profile_without_transaction_id_applies_to_the_running_transaction() -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start(connector=1)
    result = _set(pb, 1, _profile(chargingProfilePurpose="TxProfile"))
    assert "transactionId" not in result["_sent"]["csChargingProfiles"]  # 1.6: the connector's transaction
    assert pb.session.meta.charging_profiles[0]["profile"]["transactionId"] == tx_id


def test_tx_profiles_for_transactions_the_charger_does_not_have_are_rejected() -> None:
    foreign = TxRecord(identity="CP-2", local_id=1, tx_id="tx-of-cp2", connector_id=1, evse_id=1,
                       evse_connector_id=1, id_token="x", id_token_type="Local", meter_start=0,
                       started_at="2024-05-01T10:00:00.000Z", start_hash="h")
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1"), (foreign,)))
    cases = [(1, {"transactionId": "tx-of-cp2"}),  # K01.FR.33, and never another charger's
             (1, {"transactionId": "unknown"}),
             (1, {}),  # K01.FR.09: no transaction on the EVSE
             (0, {})]  # K01.FR.16
    for evse, extra in cases:
        answer = _local(pb, "SetChargingProfile",
                        {"evseId": evse, "chargingProfile": _profile(chargingProfilePurpose="TxProfile", **extra)})
        assert answer["status"] == "Rejected", (evse, extra)
    _, tx_id = pb.start(connector=2)
    answer = _local(pb, "SetChargingProfile",  # a transaction on another EVSE
                    {"evseId": 1, "chargingProfile": _profile(chargingProfilePurpose="TxProfile", transactionId=tx_id)})
    assert answer["status"] == "Rejected"
    answer = _local(pb, "SetChargingProfile",  # transactionId belongs in a TxProfile only
                    {"evseId": 2, "chargingProfile": _profile(transactionId=tx_id)})
    assert answer["status"] == "Rejected"


@pytest.mark.parametrize(("upstream", "profile"), [
    (Version.V201, _profile(chargingProfilePurpose="ChargingStationExternalConstraints")),  # K01.FR.22
    (Version.V201, _profile(chargingSchedule=[_profile()["chargingSchedule"][0]] * 2)),  # K01.FR.34
    (Version.V201, _profile(chargingSchedule=[{**_profile()["chargingSchedule"][0], "salesTariff": {
        "id": 1, "salesTariffEntry": [{"relativeTimeInterval": {"start": 0}}]}, "extra": 1}])),
    (Version.V21, _profile(chargingProfilePurpose="PriorityCharging")),
    (Version.V21, _profile(chargingProfilePurpose="LocalGeneration")),
    (Version.V21, _profile(chargingProfileKind="Dynamic")),
    (Version.V21, _profile(maxOfflineDuration=60)),
    (Version.V21, _profile(chargingSchedule=[{**_profile()["chargingSchedule"][0],
                                              "chargingSchedulePeriod": [{"startPeriod": 0, "setpoint": 5.0}]}])),
])
def test_profiles_1_6_cannot_hold_are_rejected_locally(upstream: Version, profile: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
    if pb.to_csms and pb.to_csms[0].type_id == 4:  # not even schema-valid (the made-up "extra" field)
        pb.csms_receives_error("FormatViolation", uid)
        return
    answer = pb.csms_receives_result(uid)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "InvalidProfile"
    pb.nothing_pending()
    assert pb.session.meta.charging_profiles == []


@pytest.mark.parametrize(("answer", "expected"), [("Rejected", "Rejected"), ("NotSupported", "Rejected")])
def test_charger_refusals(answer: str, expected: str) -> None:
    pb = Playbook.translated()
    result = _set(pb, 1, _profile(), answer)
    assert result["status"] == expected
    if answer == "NotSupported":
        assert result["statusInfo"]["reasonCode"] == "UnsupportedRequest"
    assert pb.session.meta.charging_profiles == []


@BOTH
def test_set_profile_charger_error_and_timeout_are_relayed(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("SetChargingProfile", {"evseId": 1, "chargingProfile": _profile()})
    pb.charger_fails(pb.charger_receives("SetChargingProfile"), "NotSupported", "no smart charging")
    pb.csms_receives_error("NotSupported", uid)  # K01.FR.29
    uid = pb.csms_sends("SetChargingProfile", {"evseId": 1, "chargingProfile": _profile()})
    pb.charger_receives("SetChargingProfile")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.charging_profiles == []


def test_a_profile_replaces_the_one_with_its_id_or_its_slot() -> None:
    pb = Playbook.translated()
    _set(pb, 1, _profile(id=1, stackLevel=1))
    _set(pb, 1, _profile(id=2, stackLevel=2))
    _set(pb, 1, _profile(id=1, stackLevel=3))  # K01.FR.05: same id
    _set(pb, 1, _profile(id=3, stackLevel=2))  # 1.6 §5.16: same EVSE, purpose and stackLevel
    ids = [entry["profile"]["id"] for entry in pb.session.meta.charging_profiles]
    assert ids == [1, 3]


def test_remembered_profiles_are_bounded() -> None:
    pb = Playbook.translated()
    for n in range(MAX_PROFILES + 3):
        _set(pb, 1, _profile(id=n, stackLevel=n))
    assert len(pb.session.meta.charging_profiles) == MAX_PROFILES


# --- ClearChargingProfile ---------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(("request_", "expected", "left"), [
    ({"chargingProfileId": 1}, {"id": 1}, [2, 3]),  # K10.FR.03
    ({"chargingProfileCriteria": {"evseId": 1}}, {"connectorId": 1}, [3]),  # K10.FR.04
    ({"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile"}},
     {"chargingProfilePurpose": "ChargePointMaxProfile"}, [1, 2]),
    ({"chargingProfileCriteria": {"evseId": 1, "stackLevel": 2}}, {"connectorId": 1, "stackLevel": 2}, [1, 3]),
])
def test_clear_is_carried_and_forgets_what_was_cleared(upstream: Version, request_: dict[str, Any],
                                                        expected: dict[str, Any], left: list[int]) -> None:
    pb = Playbook.translated(upstream)
    _set(pb, 1, _profile(id=1, stackLevel=1))
    _set(pb, 1, _profile(id=2, stackLevel=2))
    station_max = _profile(id=3, stackLevel=1, chargingProfilePurpose="ChargingStationMaxProfile")
    _set(pb, 0, station_max)
    uid = pb.csms_sends("ClearChargingProfile", request_)
    call = pb.charger_receives("ClearChargingProfile")
    assert call.payload == expected
    pb.charger_answers(call, {"status": "Accepted"})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    assert [e["profile"]["id"] for e in pb.session.meta.charging_profiles] == left


def test_clear_of_purposes_1_6_cannot_have_is_unknown_locally() -> None:
    pb = Playbook.translated(Version.V21)
    for purpose in ("ChargingStationExternalConstraints", "PriorityCharging"):  # K10.FR.06/08
        answer = _local(pb, "ClearChargingProfile", {"chargingProfileCriteria": {"chargingProfilePurpose": purpose}})
        assert answer == {"status": "Unknown"}


def test_clear_unknown_and_failures() -> None:
    pb = Playbook.translated()
    _set(pb, 1, _profile(id=1))
    uid = pb.csms_sends("ClearChargingProfile", {"chargingProfileId": 1})
    pb.charger_answers(pb.charger_receives("ClearChargingProfile"), {"status": "Unknown"})
    assert pb.csms_receives_result(uid) == {"status": "Unknown"}
    assert pb.session.meta.charging_profiles == []  # the charger does not have it: neither does the bridge
    uid = pb.csms_sends("ClearChargingProfile", {})
    pb.charger_fails(pb.charger_receives("ClearChargingProfile"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
    uid = pb.csms_sends("ClearChargingProfile", {})
    pb.charger_receives("ClearChargingProfile")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)


# --- GetCompositeSchedule ----------------------------------------------------------------------------------------


@BOTH
def test_composite_schedule_is_reshaped(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("GetCompositeSchedule", {"duration": 3600, "chargingRateUnit": "W", "evseId": 1})
    call = pb.charger_receives("GetCompositeSchedule")
    assert call.payload == {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"}
    pb.charger_answers(call, {"status": "Accepted", "connectorId": 1, "scheduleStart": "2024-05-01T10:00:00Z",
                              "chargingSchedule": {"chargingRateUnit": "W", "minChargingRate": 1000.0,
                                                   "chargingSchedulePeriod": [
                                                       {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}]}})
    assert pb.csms_receives_result(uid) == {"status": "Accepted", "schedule": {
        "evseId": 1, "duration": 3600, "scheduleStart": "2024-05-01T10:00:00.000Z", "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}]}}


def test_composite_schedule_without_a_start_runs_from_the_request() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("GetCompositeSchedule", {"duration": 60, "evseId": 0})
    pb.charger_answers(pb.charger_receives("GetCompositeSchedule"), {"status": "Accepted", "chargingSchedule": {
        "chargingRateUnit": "A", "duration": 30, "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}})
    schedule = pb.csms_receives_result(uid)["schedule"]
    assert schedule["duration"] == 30
    assert schedule["scheduleStart"] == "2023-11-14T22:13:20.000Z"  # the playbook clock when it was asked


@pytest.mark.parametrize("answer", [
    {"status": "Rejected"},
    {"status": "Accepted"},
    {"status": "Accepted", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": []}},
])
def test_composite_schedules_2_x_cannot_show_are_rejected(answer: dict[str, Any]) -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("GetCompositeSchedule", {"duration": 60, "evseId": 1})
    pb.charger_answers(pb.charger_receives("GetCompositeSchedule"), answer)
    assert pb.csms_receives_result(uid)["status"] == "Rejected"


def test_composite_schedule_of_an_impossible_evse_and_failures() -> None:
    pb = Playbook.translated()
    assert _local(pb, "GetCompositeSchedule", {"duration": 60, "evseId": -1})["status"] == "Rejected"  # K08.FR.05
    uid = pb.csms_sends("GetCompositeSchedule", {"duration": 60, "evseId": 1})
    pb.charger_fails(pb.charger_receives("GetCompositeSchedule"), "NotImplemented")
    pb.csms_receives_error("NotImplemented", uid)


# --- GetChargingProfiles ------------------------------------------------------------------------------------------


def _reports(pb: Playbook) -> list[Any]:
    """The ReportChargingProfiles the bridge sends, one after the other (one CALL in flight per direction)."""
    reports = []
    while pb.to_csms:
        reports.append(pb.csms_receives("ReportChargingProfiles"))
        pb.csms_answers(reports[-1], {})
    return reports


def _installed(pb: Playbook) -> str:
    _set(pb, 0, _profile(id=1, chargingProfilePurpose="ChargingStationMaxProfile"))
    _set(pb, 1, _profile(id=2))
    _set(pb, 2, _profile(id=3, stackLevel=4))
    _, tx_id = pb.start(connector=2)
    _set(pb, 2, _profile(id=4, chargingProfilePurpose="TxProfile", transactionId=tx_id))
    return tx_id


@BOTH
def test_get_charging_profiles_reports_per_evse(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    tx_id = _installed(pb)
    uid = pb.csms_sends("GetChargingProfiles", {"requestId": 42, "chargingProfile": {"stackLevel": 1}})
    assert pb.csms_receives_result(uid) == {"status": "Accepted"}
    reports = _reports(pb)
    assert [(r.payload["evseId"], [p["id"] for p in r.payload["chargingProfile"]], r.payload.get("tbc"))
            for r in reports] == [(0, [1], True), (1, [2], True), (2, [4], None)]  # K09.FR.02
    assert all(r.payload["requestId"] == 42 and r.payload["chargingLimitSource"] == "CSO" for r in reports)
    assert reports[2].payload["chargingProfile"][0]["transactionId"] == tx_id
    pb.nothing_pending()


@pytest.mark.parametrize(("request_", "ids"), [
    ({"evseId": 0, "chargingProfile": {"chargingProfilePurpose": "ChargingStationMaxProfile"}}, [1]),  # K09.FR.05
    ({"evseId": 2, "chargingProfile": {"stackLevel": 4}}, [3]),  # K09.FR.04
    ({"chargingProfile": {"chargingProfileId": [2, 4, 99]}}, [2, 4]),  # K09.FR.06
    ({"chargingProfile": {"chargingLimitSource": ["CSO", "EMS"]}}, [1, 2, 3, 4]),
    ({"chargingProfile": {"chargingLimitSource": ["EMS"]}}, []),
    ({"chargingProfile": {"chargingProfileId": [99]}}, []),
])
def test_get_charging_profiles_filters(request_: dict[str, Any], ids: list[int]) -> None:
    pb = Playbook.translated()
    _installed(pb)
    uid = pb.csms_sends("GetChargingProfiles", {"requestId": 1, **request_})
    assert pb.csms_receives_result(uid) == {"status": "Accepted" if ids else "NoProfiles"}
    reported = [p["id"] for frame in _reports(pb) for p in frame.payload["chargingProfile"]]
    assert sorted(reported) == ids


def test_tx_profiles_end_with_their_transaction() -> None:
    pb = Playbook.translated()
    _, tx_id = pb.start(connector=1)
    _set(pb, 1, _profile(id=7, chargingProfilePurpose="TxProfile", transactionId=tx_id))
    local_id = pb.session.ledger.by_tx_id(tx_id).local_id  # type: ignore[union-attr]
    pb.charger_sends("StopTransaction", {"transactionId": local_id, "meterStop": 10,
                                         "timestamp": "2024-05-01T11:00:00Z"})
    while pb.to_csms:
        frame = pb.to_csms.pop(0)
        if frame.type_id == 2:
            pb.csms_answers(frame, {})
    pb.to_charger.clear()
    assert _local(pb, "GetChargingProfiles", {"requestId": 1, "chargingProfile": {}}) == {"status": "NoProfiles"}
    assert pb.session.meta.charging_profiles == []


def test_a_failed_report_is_traced() -> None:
    pb = Playbook.translated()
    _set(pb, 1, _profile())
    uid = pb.csms_sends("GetChargingProfiles", {"requestId": 1, "chargingProfile": {"stackLevel": 1}})
    pb.csms_receives_result(uid)
    pb.csms_fails(pb.csms_receives("ReportChargingProfiles"), "InternalError")
    assert "report.failed" in pb.emitted_kinds()


def test_profiles_survive_a_restart() -> None:
    pb = Playbook.translated()
    _set(pb, 1, _profile())
    stored = copy.deepcopy(pb.session.meta.snapshot())
    again = Playbook.translated(state=ChargerState(stored))
    uid = again.csms_sends("GetChargingProfiles", {"requestId": 3, "chargingProfile": {"stackLevel": 1}})
    assert again.csms_receives_result(uid) == {"status": "Accepted"}
    assert again.csms_receives("ReportChargingProfiles").payload["chargingProfile"][0]["id"] == 5
