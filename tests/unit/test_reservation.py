"""Reservations (mapping reference §2.2 Reservation, §2.7): ReserveNow / CancelReservation carried to a 1.6 charger,
ReservationStatusUpdate synthesized by the bridge (2.0.1 H01-H04; 1.6 §5.13)."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerState
from ocpp_bridge.core.translate import reservation
from tests.playbook import T0, Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}
EXPIRY = "2023-11-14T22:43:20Z"  # T0 + 30 minutes


def _reserve(pb: Playbook, answer: str = "Accepted", **change: Any) -> dict[str, Any]:
    uid = pb.csms_sends("ReserveNow", {"id": 11, "expiryDateTime": EXPIRY, "idToken": TOKEN, "evseId": 2, **change})
    call = pb.charger_receives("ReserveNow")
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}
    return call.payload


@BOTH
def test_reserve_now_is_renamed_field_by_field(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    sent = _reserve(pb, groupIdToken={"idToken": "FLEET", "type": "Central"})
    assert sent == {"connectorId": 2, "expiryDate": EXPIRY, "idTag": "04A1B2C3", "parentIdTag": "FLEET",
                    "reservationId": 11}
    assert pb.session.meta.reservations == [{"id": 11, "connectorId": 2, "expires": T0 + 1800}]
    assert pb.session.meta.token_types["04A1B2C3"] == "ISO14443"


def test_without_an_evse_any_connector_is_reserved() -> None:
    pb = Playbook.translated()
    uid = pb.csms_sends("ReserveNow", {"id": 1, "expiryDateTime": EXPIRY, "idToken": TOKEN})
    assert pb.charger_receives("ReserveNow").payload["connectorId"] == 0
    assert uid


@pytest.mark.parametrize("answer", ["Faulted", "Occupied", "Rejected", "Unavailable"])
def test_refusals_are_passed_on_and_not_remembered(answer: str) -> None:
    pb = Playbook.translated()
    _reserve(pb, answer)
    assert pb.session.meta.reservations == []
    pb.advance(3600)
    pb.nothing_pending()


@pytest.mark.parametrize(("upstream", "change"), [
    (Version.V201, {"idToken": {"idToken": "A" * 21, "type": "Central"}}),
    (Version.V21, {"idToken": {"idToken": "", "type": "NoAuthorization"}}),
    (Version.V201, {"groupIdToken": {"idToken": "G" * 30, "type": "Central"}}),
    (Version.V201, {"evseId": -1}),
    (Version.V201, {"evseId": None, "connectorType": "cType2"}),  # H01.FR.06: 1.6 reserves connectors
])
def test_reservations_1_6_cannot_express_are_rejected_locally(upstream: Version, change: dict[str, Any]) -> None:
    pb = Playbook.translated(upstream)
    payload = {"id": 1, "expiryDateTime": EXPIRY, "idToken": TOKEN, "evseId": 1, **change}
    uid = pb.csms_sends("ReserveNow", {k: v for k, v in payload.items() if v is not None})
    assert pb.csms_receives_result(uid)["status"] == "Rejected"
    pb.nothing_pending()


def test_a_connector_type_with_an_evse_is_fine() -> None:
    pb = Playbook.translated()
    assert "connectorType" not in _reserve(pb, connectorType="cType2")


@BOTH
def test_an_unused_reservation_expires(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    _reserve(pb)
    pb.advance(1799)
    pb.nothing_pending()
    pb.advance(1)
    update = pb.csms_receives("ReservationStatusUpdate")
    assert update.payload == {"reservationId": 11, "reservationUpdateStatus": "Expired"}  # H04.FR.01
    assert pb.session.meta.reservations == []
    pb.csms_answers(update, {})
    pb.nothing_pending()


def test_a_reservation_used_by_a_transaction_does_not_expire() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    uid = pb.charger_sends("StartTransaction", {"connectorId": 2, "idTag": "04A1B2C3", "meterStart": 0,
                                                "timestamp": "2023-11-14T22:20:00Z", "reservationId": 11})
    started = pb.csms_receives("TransactionEvent")
    assert started.payload["reservationId"] == 11  # H01.FR.15
    pb.csms_answers(started, {"idTokenInfo": {"status": "Accepted"}})
    pb.charger_receives_result(uid)
    pb.advance(1800)
    pb.nothing_pending()
    assert pb.session.meta.reservations == []
    assert "reservation.used" in pb.emitted_kinds()


def test_a_start_can_consume_the_reservation_at_once() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    reservation.consumed(pb.session, 11)  # what the StartTransaction handler can call (H03.FR.09)
    reservation.consumed(pb.session, 99)  # unknown: nothing happens
    assert pb.session.meta.reservations == []
    pb.advance(3600)
    pb.nothing_pending()


def test_a_new_reservation_with_the_same_id_replaces_the_old_one() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    _reserve(pb, evseId=3, expiryDateTime="2023-11-14T23:13:20Z")  # H01.FR.02
    assert pb.session.meta.reservations == [{"id": 11, "connectorId": 3, "expires": T0 + 3600}]
    pb.advance(1800)
    pb.nothing_pending()  # the old expiry is gone
    pb.advance(1800)
    assert pb.csms_receives("ReservationStatusUpdate").payload["reservationId"] == 11


@BOTH
@pytest.mark.parametrize("answer", ["Accepted", "Rejected"])
def test_cancel_reservation(upstream: Version, answer: str) -> None:
    pb = Playbook.translated(upstream)
    _reserve(pb)
    uid = pb.csms_sends("CancelReservation", {"reservationId": 11})
    call = pb.charger_receives("CancelReservation")
    assert call.payload == {"reservationId": 11}
    pb.charger_answers(call, {"status": answer})
    assert pb.csms_receives_result(uid) == {"status": answer}
    assert pb.session.meta.reservations == []  # cancelled, or the charger does not have it (H02.FR.01)
    pb.advance(3600)
    pb.nothing_pending()


def test_cancel_failures_keep_the_reservation() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    uid = pb.csms_sends("CancelReservation", {"reservationId": 11})
    pb.charger_fails(pb.charger_receives("CancelReservation"), "InternalError")
    pb.csms_receives_error("InternalError", uid)
    uid = pb.csms_sends("CancelReservation", {"reservationId": 11})
    pb.charger_receives("CancelReservation")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert [r["id"] for r in pb.session.meta.reservations] == [11]


def test_reserve_failures_are_relayed() -> None:
    pb = Playbook.translated(Version.V21)
    uid = pb.csms_sends("ReserveNow", {"id": 1, "expiryDateTime": EXPIRY, "idToken": TOKEN})
    pb.charger_fails(pb.charger_receives("ReserveNow"), "NotSupported")
    pb.csms_receives_error("NotSupported", uid)
    uid = pb.csms_sends("ReserveNow", {"id": 1, "expiryDateTime": EXPIRY, "idToken": TOKEN})
    pb.charger_receives("ReserveNow")
    pb.advance(25)
    pb.csms_receives_error("InternalError", uid)
    assert pb.session.meta.reservations == []


def test_the_expiry_survives_a_restart() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    stored = pb.session.meta.snapshot()
    again = Playbook.translated(state=ChargerState(stored))  # the bridge restarted
    again.advance(1800)
    assert again.csms_receives("ReservationStatusUpdate").payload["reservationUpdateStatus"] == "Expired"


def test_a_reservation_that_expired_while_the_bridge_was_down_is_reported_at_once() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    stored = pb.session.meta.snapshot()
    later = Playbook.translated(state=ChargerState(stored))
    later.advance(4000)
    assert later.csms_receives("ReservationStatusUpdate").payload["reservationUpdateStatus"] == "Expired"


@pytest.mark.parametrize(("connector", "status", "removed"), [
    (2, "Faulted", True), (2, "Unavailable", True), (0, "Unavailable", True),  # H01.FR.16/17, 1.6 §5.13
    (1, "Faulted", False), (2, "Available", False), (2, "Preparing", False),
])
def test_a_reserved_connector_that_fails_removes_the_reservation(connector: int, status: str, removed: bool) -> None:
    pb = Playbook.translated()
    _reserve(pb)
    reservation.connector_status_changed(pb.session, connector, status)
    pb.advance(0)  # collect what it produced
    if removed:
        assert pb.csms_receives("ReservationStatusUpdate").payload == {"reservationId": 11,
                                                                       "reservationUpdateStatus": "Removed"}
        assert pb.session.meta.reservations == []
    else:
        pb.nothing_pending()
        assert len(pb.session.meta.reservations) == 1


def test_a_connector_becoming_faulted_reports_removed_at_once_and_nothing_at_expiry() -> None:
    pb = Playbook.translated()
    _reserve(pb)
    pb.charger_sends("StatusNotification", {"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted"})
    updates = []
    while pb.to_csms:  # deliver the queue: status, error event and the reservation update, in order
        frame = pb.to_csms.pop(0)
        if frame.type_id == 2:
            if frame.action == "ReservationStatusUpdate":
                updates.append(frame.payload)
            pb.csms_answers(frame, {})
    assert [u["reservationUpdateStatus"] for u in updates] == ["Removed"]  # H01.FR.16/17, not at expiry
    pb.to_charger.clear()
    pb.advance(1800)
    assert not [f for f in pb.to_csms if f.type_id == 2 and f.action == "ReservationStatusUpdate"]
