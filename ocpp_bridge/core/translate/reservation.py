"""Reservations: ReserveNow, CancelReservation, and ReservationStatusUpdate synthesized (2.0.1 H01-H04; 1.6 §5.1,
§5.13).

Why this exists: the requests map one to one (id <-> reservationId, evseId <-> connectorId, idToken <-> idTag),
but 2.0.1 also wants to hear when a reservation ends without being used: ReservationStatusUpdate Expired when its
expiryDateTime passes (H04.FR.01) and Removed when its EVSE becomes Faulted or Unavailable (H01.FR.16/17). A 1.6
charger ends the reservation in both cases without saying so (1.6 §5.13), so the bridge keeps each accepted
reservation in the charger record, with a timer at its expiry (re-armed after a restart), and reports the end
itself, unless a transaction that carried the reservationId consumed it (H03.FR.09, H01.FR.15).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from ..convert import MAX_V16_ID_TAG, seconds
from ..lanes import Outcome
from . import from_csms, on_session_start
from .common import status_answer

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

MAX_RESERVATIONS: Final = 64  # bounded so a CSMS cannot grow the charger record forever
_RECENT_TRANSACTIONS: Final = 256  # how far back (in 1.6 transaction ids) a consuming transaction is looked for
_ENDING_STATUSES: Final = frozenset({"Faulted", "Unavailable"})  # 1.6 §5.13 (3); H01.FR.16/17
# Messages the bridge sends the CSMS on its own, for the coverage matrix.
SYNTHESIZES: Final = {"ReservationStatusUpdate": "Expired when a reservation the charger accepted passes its "
                      "expiryDateTime unused (H04.FR.01); Removed when its connector became Faulted/Unavailable "
                      "(H01.FR.16/17, 1.6 §5.13)"}


def _timer(reservation_id: int) -> str:
    return f"reservation:{reservation_id}"


def _refusal(payload: dict[str, Any]) -> str | None:
    token, group = payload["idToken"], payload.get("groupIdToken")
    if token["type"] == "NoAuthorization" or not token["idToken"] or len(token["idToken"]) > MAX_V16_ID_TAG:
        return f"the idToken does not fit in a 1.6 idTag (1..{MAX_V16_ID_TAG} characters)"
    if group is not None and not 0 < len(group["idToken"]) <= MAX_V16_ID_TAG:
        return f"the groupIdToken does not fit in a 1.6 parentIdTag (1..{MAX_V16_ID_TAG} characters)"
    if payload.get("evseId", 0) < 0:
        return "no such EVSE"
    if "connectorType" in payload and "evseId" not in payload:  # H01.FR.06: 1.6 reserves connectors, not types
        return "1.6 cannot reserve by connector type"
    return None


@from_csms("ReserveNow", note="id -> reservationId, evseId -> connectorId (absent: 0 = any connector), idToken -> "
           "idTag, groupIdToken -> parentIdTag; tokens longer than 20 characters, or a connectorType without "
           "evseId: Rejected; accepted reservations are remembered until used, cancelled, removed or expired")
def reserve_now(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    why = _refusal(payload)
    if why is not None:
        session.reply_csms(call, status_answer("Rejected", "InvalidValue", why))
        return
    token = payload["idToken"]
    request: dict[str, Any] = {"connectorId": payload.get("evseId", 0), "expiryDate": payload["expiryDateTime"],
                               "idTag": token["idToken"], "reservationId": payload["id"]}
    if "groupIdToken" in payload:
        request["parentIdTag"] = payload["groupIdToken"]["idToken"]
    session.meta.remember_token_type(token["idToken"], token["type"])

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        if outcome.result["status"] == "Accepted":  # stored before the CSMS hears it
            _keep(session, payload["id"], request["connectorId"], seconds(payload["expiryDateTime"]))
        session.reply_csms(call, status_answer(outcome.result["status"]))

    session.call_charger("ReserveNow", request, answered)


def _keep(session: TranslatingSession, reservation_id: int, connector_id: int, expires: float) -> None:
    """H01.FR.02: a reservation with a known id replaces the old one."""
    reservations = session.meta.reservations
    reservations[:] = [r for r in reservations if r["id"] != reservation_id]
    reservations.append({"id": reservation_id, "connectorId": connector_id, "expires": expires})
    for dropped in reservations[:-MAX_RESERVATIONS]:
        session.cancel_timer(_timer(dropped["id"]))
    del reservations[:-MAX_RESERVATIONS]
    session.persist(session.meta)
    _arm(session, reservation_id, expires)


def _arm(session: TranslatingSession, reservation_id: int, expires: float) -> None:
    session.set_timer(_timer(reservation_id), expires, functools.partial(_expired, session, reservation_id))


def _forget(session: TranslatingSession, reservation_id: int) -> dict[str, Any] | None:
    entry = next((r for r in session.meta.reservations if r["id"] == reservation_id), None)
    if entry is not None:
        session.meta.reservations.remove(entry)
        session.cancel_timer(_timer(reservation_id))
        session.persist(session.meta)
    return entry


@from_csms("CancelReservation", note="identical; the bridge forgets the reservation when the charger cancelled it "
           "or does not know it (Rejected, H02.FR.01)")
def cancel_reservation(session: TranslatingSession, call: Call) -> None:
    reservation_id = call.payload["reservationId"]

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        _forget(session, reservation_id)  # cancelled (H02.FR.02), or not on the charger (any more)
        session.reply_csms(call, status_answer(outcome.result["status"]))

    session.call_charger("CancelReservation", {"reservationId": reservation_id}, answered)


# --- ReservationStatusUpdate (synthesized) ------------------------------------------------------------------------


def _used(session: TranslatingSession, reservation_id: int) -> bool:
    """H03.FR.09: a transaction started with this reservationId (1.6 §5.13: StartTransaction carries it) consumed
    it. The ledger keeps every open transaction and the recent closed ones, which covers any transaction started
    while the reservation was valid."""
    newest = session.meta.next_local_id
    recent = (session.ledger.get(n) for n in range(max(1, newest - _RECENT_TRANSACTIONS), newest))
    return any(tx is not None and tx.reservation_id == reservation_id
               for tx in (*session.ledger.open_transactions(), *recent))


def _report(session: TranslatingSession, reservation_id: int, status: str) -> None:
    session.emit("reservation.ended", reservation_id=reservation_id, status=status)
    # Queued like the charger's own notifications: delivered in order, and after an outage (issue 4).
    session.outbox.enqueue("ReservationStatusUpdate", {"reservationId": reservation_id,
                                                       "reservationUpdateStatus": status})


def _expired(session: TranslatingSession, reservation_id: int) -> None:
    entry = _forget(session, reservation_id)
    if entry is None:
        return
    if _used(session, reservation_id):
        session.emit("reservation.used", reservation_id=reservation_id)
        return
    status = session.meta.connector_status.get(str(entry["connectorId"]))
    # A connector that went Faulted/Unavailable ended it earlier (1.6 §5.13) if nobody told us at the time.
    _report(session, reservation_id, "Removed" if status in _ENDING_STATUSES else "Expired")  # H04.FR.01


def consumed(session: TranslatingSession, reservation_id: int) -> None:
    """For the StartTransaction handler: a start carrying the reservationId ends the reservation (H03.FR.09) at
    once, instead of at its expiry (when :func:`_used` finds the transaction in the ledger)."""
    if _forget(session, reservation_id) is not None:
        session.emit("reservation.used", reservation_id=reservation_id)


def connector_status_changed(session: TranslatingSession, connector_id: int, status: str) -> None:
    """For the StatusNotification handler: a connector (0 = the whole charger) that becomes Faulted or
    Unavailable ends its reservations on the charger (1.6 §5.13), which 2.0.1 reports as Removed (H01.FR.16/17)."""
    if status not in _ENDING_STATUSES:
        return
    for entry in list(session.meta.reservations):
        if connector_id in (0, entry["connectorId"]) and not _used(session, entry["id"]):
            _forget(session, entry["id"])
            _report(session, entry["id"], "Removed")


@on_session_start
def _rearm(session: TranslatingSession) -> None:
    """Timers live in memory: re-arm one per stored reservation (one that expired meanwhile fires at once)."""
    for entry in session.meta.reservations:
        _arm(session, entry["id"], entry["expires"])

