"""Any schema-valid request of the families added for issue 3 item 5, answered by the charger with anything,
gets exactly one well-formed, schema-valid answer, and never a bridge bug (DESIGN.md convention 6)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.translate.pnc import FROM_CHARGER, VENDOR_ID
from tests.playbook import Playbook

ints = st.integers(-3, 5) | st.integers(-(2**31), 2**31)
stamps = st.sampled_from(["2023-11-14T22:00:00Z", "2023-11-14T23:00:00Z", "2030-01-01T00:00:00+02:00"])
tokens = st.fixed_dictionaries({"idToken": st.text(max_size=25),
                                "type": st.sampled_from(["Central", "ISO14443", "NoAuthorization", "eMAID"])})
purposes = st.sampled_from(["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile",
                            "ChargingStationExternalConstraints"])
period = st.fixed_dictionaries({"startPeriod": ints, "limit": st.floats(-1e4, 1e4, allow_nan=False)},
                               optional={"numberPhases": st.integers(0, 3), "phaseToUse": st.integers(0, 3)})
schedule = st.fixed_dictionaries({"id": ints, "chargingRateUnit": st.sampled_from(["A", "W"]),
                                  "chargingSchedulePeriod": st.lists(period, min_size=1, max_size=2)},
                                 optional={"startSchedule": stamps, "duration": ints})
profile = st.fixed_dictionaries({"id": ints, "stackLevel": st.integers(0, 5), "chargingProfilePurpose": purposes,
                                 "chargingProfileKind": st.sampled_from(["Absolute", "Recurring", "Relative"]),
                                 "chargingSchedule": st.lists(schedule, min_size=1, max_size=2)},
                                optional={"transactionId": st.sampled_from(["tx-3", "nope"])})
hash_data = st.fixed_dictionaries({"hashAlgorithm": st.just("SHA256"), "issuerNameHash": st.text(max_size=5),
                                   "issuerKeyHash": st.text(max_size=5), "serialNumber": st.text(max_size=5)})
cert_types = st.sampled_from(["V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate",
                              "ManufacturerRootCertificate"])
requests = st.one_of(
    st.tuples(st.just("SetChargingProfile"), st.fixed_dictionaries({"evseId": ints, "chargingProfile": profile})),
    st.tuples(st.just("ClearChargingProfile"), st.fixed_dictionaries({}, optional={
        "chargingProfileId": ints, "chargingProfileCriteria": st.fixed_dictionaries({}, optional={
            "evseId": ints, "chargingProfilePurpose": purposes, "stackLevel": ints})})),
    st.tuples(st.just("GetCompositeSchedule"), st.fixed_dictionaries({"duration": ints, "evseId": ints})),
    st.tuples(st.just("GetChargingProfiles"), st.fixed_dictionaries({"requestId": ints, "chargingProfile": st.just({
        "stackLevel": 1})}, optional={"evseId": ints})),
    st.tuples(st.just("UpdateFirmware"), st.fixed_dictionaries({"requestId": ints, "firmware": st.fixed_dictionaries(
        {"location": st.sampled_from(["https://x/y", "nope", "ftp://a"]), "retrieveDateTime": stamps},
        optional={"installDateTime": stamps, "signingCertificate": st.just("c"), "signature": st.just("s")})})),
    st.tuples(st.just("GetLog"), st.fixed_dictionaries({
        "log": st.fixed_dictionaries({"remoteLocation": st.sampled_from(["https://x/y", "nope"])}),
        "logType": st.sampled_from(["DiagnosticsLog", "SecurityLog"]), "requestId": ints})),
    st.tuples(st.just("SendLocalList"), st.fixed_dictionaries({
        "versionNumber": ints, "updateType": st.sampled_from(["Full", "Differential"])}, optional={
        "localAuthorizationList": st.lists(st.fixed_dictionaries({"idToken": tokens}, optional={
            "idTokenInfo": st.fixed_dictionaries({"status": st.sampled_from(["Accepted", "Unknown"])})}),
            min_size=1, max_size=3)})),
    st.tuples(st.just("GetLocalListVersion"), st.just({})),
    st.tuples(st.just("ReserveNow"), st.fixed_dictionaries({"id": ints, "expiryDateTime": stamps, "idToken": tokens},
                                                           optional={"evseId": ints, "connectorType": st.just("cType2"),
                                                                     "groupIdToken": tokens})),
    st.tuples(st.just("CancelReservation"), st.fixed_dictionaries({"reservationId": ints})),
    st.tuples(st.just("CertificateSigned"), st.fixed_dictionaries({"certificateChain": st.text(max_size=10)}, optional={
        "certificateType": st.sampled_from(["ChargingStationCertificate", "V2GCertificate"])})),
    st.tuples(st.just("InstallCertificate"), st.fixed_dictionaries({"certificateType": cert_types,
                                                                    "certificate": st.text(max_size=10)})),
    st.tuples(st.just("DeleteCertificate"), st.fixed_dictionaries({"certificateHashData": hash_data})),
    st.tuples(st.just("GetInstalledCertificateIds"), st.fixed_dictionaries({}, optional={
        "certificateType": st.lists(cert_types, min_size=1, max_size=3)})),
    st.tuples(st.just("TriggerMessage"), st.fixed_dictionaries({"requestedMessage": st.sampled_from(
        ["SignChargingStationCertificate", "SignV2GCertificate", "LogStatusNotification"])})),
    st.tuples(st.just("GetTransactionStatus"), st.fixed_dictionaries({}, optional={
        "transactionId": st.sampled_from(["tx-3", "nope"])})),
)
charger_answers = st.one_of(
    st.fixed_dictionaries({"status": st.sampled_from(["Accepted", "Rejected", "NotSupported", "NotFound", "Unknown",
                                                      "Failed", "UnknownVendorId", "NotImplemented"])},
                          optional={"data": st.sampled_from(['{"status": "Accepted"}', "x", '{"status": "Nope"}']),
                                    "fileName": st.text(max_size=5),
                                    "certificateHashData": st.lists(hash_data, min_size=1, max_size=2)}),
    st.just({}),
    st.fixed_dictionaries({"listVersion": ints}),
)


@settings(max_examples=400, deadline=None)
@given(request=requests, answers=st.lists(charger_answers | st.sampled_from(["NotImplemented", "InternalError",
                                                                             "timeout"]), max_size=4),
       upstream=st.sampled_from([Version.V201, Version.V21]), with_tx=st.booleans())
def test_any_valid_request_gets_exactly_one_valid_answer(request: tuple[str, dict[str, Any]], answers: list[Any],
                                                         upstream: Version, with_tx: bool) -> None:
    pb = Playbook.translated(upstream)
    if with_tx:
        pb.start(connector=1)
    action, payload = request
    uid = pb.csms_sends(action, payload)  # a request the schema refuses gets its CALLERROR: also one answer
    for answer in answers:
        calls = [f for f in pb.to_charger if f.type_id == 2]
        if not calls:
            break
        pb.to_charger.remove(calls[0])
        if answer == "timeout":
            pb.advance(25)
        elif isinstance(answer, str):
            pb.charger_fails(calls[0], answer)
        else:
            pb.charger_answers(calls[0], answer)
    pb.advance(25)
    pb.advance(25)
    pb.advance(25)
    pb.advance(25)
    replies = [f for f in pb.to_csms if f.unique_id == uid]
    assert len(replies) == 1 and replies[0].type_id in (3, 4)
    assert "bug" not in pb.emitted_kinds(), [e.fields for e in pb.emitted if e.kind == "bug"]


@settings(max_examples=200, deadline=None)
@given(message_id=st.sampled_from([*FROM_CHARGER, "Other"]), data=st.one_of(
    st.text(max_size=20), st.builds(lambda v: orjson.dumps(v).decode(), st.dictionaries(
        st.sampled_from(["idToken", "csr", "ocspRequestData", "action", "exiRequest", "iso15118SchemaVersion"]),
        st.text(max_size=5) | st.fixed_dictionaries({"idToken": st.text(max_size=5), "type": st.just("eMAID")}))),
), upstream=st.sampled_from([Version.V201, Version.V21]))
def test_any_tunnelled_message_is_answered_once(message_id: str, data: str, upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.charger_sends("DataTransfer", {"vendorId": VENDOR_ID, "messageId": message_id, "data": data})
    if pb.to_csms:
        pb.csms_answers(pb.to_csms.pop(0), {"status": "Accepted"})
    answers = [f for f in pb.to_charger if f.unique_id == uid]
    assert len(answers) == 1
    assert "bug" not in pb.emitted_kinds()
