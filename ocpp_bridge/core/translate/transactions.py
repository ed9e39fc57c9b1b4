"""StartTransaction / MeterValues / StopTransaction -> TransactionEvent Started / Updated / Ended (2.0.1 E).

Why this exists: this is where money is. The bridge mints both transaction ids, writes the transaction record
and the queued event in one atomic write before the charger hears anything, and then owns the delivery
(``txevents``/``core.outbox``). Retries are idempotent by content: a charger that repeats a request whose answer
it lost gets the same answer again, never a second transaction or a second Ended (DESIGN.md "Things peers got
wrong"). StartTransaction waits for the CSMS's idTokenInfo while the CSMS can answer in time; otherwise the
charger gets the CSMS's own earlier decision about the token, or the unknown-token policy (``core.authcache``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import authcache
from ..convert import id_tag_info, id_token, meter_values, register_sample, timestamp
from ..lanes import Outcome
from ..ledger import content_hash
from ..rpc import ErrorCode
from ..state import TxRecord
from . import from_charger, reservation
from .txevents import (
    CHARGING_STATE,
    METER_TRIGGERS,
    REMOTE_START_VALIDITY,
    STOP_REASONS,
    queue_event,
    tx_info,
)

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

__all__ = ["CHARGING_STATE", "REMOTE_START_VALIDITY", "STOP_REASONS", "queue_event", "refused_connector"]


def refused_connector(session: TranslatingSession, call: Call, lowest: int) -> bool:
    """Refuse a connectorId below ``lowest``. 1.6 field definitions: StartTransaction.req connectorId > 0,
    MeterValues/StatusNotification connectorId >= 0 (0 = main controller). The 1.6 schemas do not say so, and a
    negative id would become an EVSE id the 2.1 schemas (minimum 0) and real CSMSs refuse."""
    if call.payload["connectorId"] >= lowest:
        return False
    session.fail_charger(call, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, f"connectorId must be >= {lowest}")
    return True


def _answer(session: TranslatingSession, tx: TxRecord, call: Call, answer: dict[str, Any]) -> None:
    """Record the answer with the transaction (durably) and give it to the charger."""
    tx.last_answer = answer
    session.persist(tx)
    session.reply_charger(call, answer)


def _repeat(session: TranslatingSession, call: Call, tx: TxRecord, request_hash: str) -> bool:
    """A request the charger sent before (its answer got lost): the same answer again, nothing upstream."""
    if tx.last_hash != request_hash or tx.last_answer is None:
        return False
    session.emit("transaction.retry_answered", action=call.action, transaction_id=tx.tx_id)
    _answer(session, tx, call, tx.last_answer)  # re-persisted: the first write may be the one that failed
    return True


def _take_remote_start(session: TranslatingSession, connector_id: int, id_tag: str) -> dict[str, Any] | None:
    """The pending RequestStartTransaction this start answers (same connector, or any connector + same tag).

    Entries older than REMOTE_START_VALIDITY are dropped: a remote start the driver never followed up must not
    turn a later local start with the same token into a "RemoteStart".
    """
    meta = session.meta
    meta.remote_starts[:] = [e for e in meta.remote_starts if e.get("expires", float("inf")) > session.now]
    for entry in meta.remote_starts:
        if entry["idTag"] == id_tag and entry.get("connectorId") in (None, connector_id):
            meta.remote_starts.remove(entry)
            return entry
    return None


def _answer_start(session: TranslatingSession, tx: TxRecord, call: Call, outcome: Outcome | None) -> None:
    """StartTransaction.conf: the CSMS's idTokenInfo if it answered in time, else a decision it made before."""
    if tx.start_answer is not None:
        return
    session.cancel_timer(f"start.{tx.local_id}")
    info = outcome.result.get("idTokenInfo") if outcome is not None and outcome.ok else None
    if info is not None:
        tag_info = id_tag_info(info)
        authcache.remember(session, tx.id_token, tag_info)
    elif tx.remote_start_id is not None:
        tag_info = {"status": "Accepted"}  # the CSMS itself asked for this start with this token
    else:
        tag_info = authcache.offline_answer(session, tx.id_token)  # never an acceptance the CSMS did not give
    tx.start_answer = {"transactionId": tx.local_id, "idTagInfo": tag_info}
    session.persist(session.meta)
    _answer(session, tx, call, tx.start_answer)


@from_charger("StartTransaction", becomes=("TransactionEvent",),
              note="TransactionEvent Started, queued durably; the bridge mints the 1.6 integer id and the 2.0.1 "
                   "transactionId; idTagInfo from the CSMS's answer, or offline from its earlier decision about the "
                   "token; triggerReason RemoteStart with remoteStartId after a RequestStartTransaction")
def start_transaction(session: TranslatingSession, call: Call) -> None:
    if refused_connector(session, call, 1):
        return
    payload = call.payload
    request_hash = content_hash(call.action, payload)
    known = session.ledger.by_start_hash(request_hash)
    if known is not None:  # a repeat: its answer got lost, or the charger gave up waiting for it
        session.emit("transaction.retry_answered", action=call.action, transaction_id=known.tx_id)
        if known.start_answer is not None:
            _answer(session, known, call, known.start_answer)
        elif session.offline or not session.outbox.on_answer(
                lambda q: q.local_id == known.local_id and q.payload.get("eventType") == "Started",
                lambda o: _answer_start(session, known, call, o)):
            _answer_start(session, known, call, None)  # the CSMS cannot be asked, or answered already (cached)
        else:  # never answered (e.g. lost with a restart): the CSMS's answer to the queued Started decides
            _wait_for_start_answer(session, known, call)
        return
    tx = _begin(session, payload, request_hash, session.assigned_ids.pop(call.unique_id, None))
    started_at = tx.started_at
    event: dict[str, Any] = {
        "eventType": "Started",
        "timestamp": started_at,
        "triggerReason": "RemoteStart" if tx.remote_start_id is not None else "Authorized",  # F01.FR.19
        "transactionInfo": tx_info(tx, remoteStartId=tx.remote_start_id),  # F02.FR.01
        "evse": {"id": tx.evse_id, "connectorId": tx.evse_connector_id},  # E01.FR.16
        "idToken": id_token(session, payload["idTag"]),
        "meterValue": [register_sample(started_at, payload["meterStart"], "Transaction.Begin")],
    }
    if tx.reservation_id is not None:
        event["reservationId"] = tx.reservation_id  # H01.FR.15
    session.emit("transaction.started", transaction_id=tx.tx_id, local_id=tx.local_id)
    if session.offline:
        queue_event(session, tx, event, request_hash)
        _answer_start(session, tx, call, None)
        return
    queue_event(session, tx, event, request_hash, on_answer=lambda o: _answer_start(session, tx, call, o))
    _wait_for_start_answer(session, tx, call)


def _wait_for_start_answer(session: TranslatingSession, tx: TxRecord, call: Call) -> None:
    """If the CSMS is slow (or a backlog is ahead of the Started event), do not let the charger time out waiting."""
    session.set_timer(f"start.{tx.local_id}", session.now + session.settings.call_timeout,
                      lambda: _answer_start(session, tx, call, None))


def _begin(session: TranslatingSession, payload: dict[str, Any], request_hash: str,
           local_id: int | None) -> TxRecord:
    connector_id = payload["connectorId"]
    stale = session.ledger.open_on_connector(connector_id)
    if stale is not None and stale.start_answer is None:
        # The charger started anew before its previous start was ever answered: that one never ran.
        stale.ended = True
        session.persist(stale)
        session.emit("transaction.abandoned", transaction_id=stale.tx_id, local_id=stale.local_id)
    reservation_id = payload.get("reservationId")
    if reservation_id is not None and reservation_id < 0:  # no CSMS issued it (2.1: minimum 0): keep the start
        session.emit("transaction.bad_reservation", reservation_id=reservation_id)
        reservation_id = None
    if reservation_id is not None:
        reservation.consumed(session, reservation_id)  # H03.FR.09: a start with it ends the reservation
    status = session.meta.connector_status.get(str(connector_id), "Preparing")
    state = CHARGING_STATE[status] if status in ("Charging", "SuspendedEV", "SuspendedEVSE") else "EVConnected"
    remote = _take_remote_start(session, connector_id, payload["idTag"])
    tx = session.ledger.begin(
        session.meta, session.new_id(), local_id,
        connector_id=connector_id, evse_id=connector_id, evse_connector_id=1,
        id_token=payload["idTag"], id_token_type=id_token(session, payload["idTag"])["type"],
        meter_start=payload["meterStart"], started_at=timestamp(payload["timestamp"]), start_hash=request_hash,
        remote_start_id=remote["remoteStartId"] if remote else None,
        reservation_id=reservation_id, charging_state=state,
    )
    session.persist(session.meta)
    return tx


@from_charger("MeterValues", becomes=("TransactionEvent", "MeterValues"),
              note="in a transaction: TransactionEvent Updated (triggerReason from the reading context); outside: "
                   "MeterValues; both queued durably and acknowledged once stored. Temperature/RPM have no 2.0.1 "
                   "measurand: left out with a meter.unmapped event")
def meter_values_(session: TranslatingSession, call: Call) -> None:
    if refused_connector(session, call, 0):
        return
    payload = call.payload
    connector_id = payload["connectorId"]
    local_id = payload.get("transactionId")
    tx = session.ledger.get(local_id) if local_id is not None else session.ledger.open_on_connector(connector_id)
    if tx is None or tx.ended:
        if local_id is not None:
            session.emit("transaction.unknown", action=call.action, local_id=local_id)
        values = meter_values(session, payload["meterValue"])
        if values:  # J01: readings outside a transaction
            session.outbox.enqueue("MeterValues", {"evseId": connector_id, "meterValue": values})
        session.reply_charger(call, {})  # stored (or nothing 2.0.1 can carry: each sample was traced)
        return
    request_hash = content_hash(call.action, payload)
    if _repeat(session, call, tx, request_hash):
        return
    # a signed Transaction.Begin register value (signed meter values app note §3.1.2) signs meterStart
    values = meter_values(session, payload["meterValue"], readings={"Transaction.Begin": tx.meter_start})
    if values:
        context = payload["meterValue"][0]["sampledValue"][0].get("context", "Sample.Periodic")
        event = {
            "eventType": "Updated",
            "timestamp": values[0]["timestamp"],
            "triggerReason": METER_TRIGGERS.get(context, "MeterValuePeriodic"),
            "transactionInfo": tx_info(tx),
            "meterValue": values,  # J02.FR.11: transaction meter data only through TransactionEvent
        }
        queue_event(session, tx, event, request_hash)
    tx.last_hash = request_hash
    _answer(session, tx, call, {})


@from_charger("StopTransaction", becomes=("TransactionEvent",),
              note="TransactionEvent Ended with stoppedReason/triggerReason from the 1.6 reason; transactionData "
                   "and meterStop become meterValue; queued durably and acknowledged once stored; a transaction the "
                   "ledger does not know (e.g. started on the old central system) is carried as Started+Ended")
def stop_transaction(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    request_hash = content_hash(call.action, payload)
    _owed_to_legacy(session, call)
    tx = session.ledger.get(payload["transactionId"])
    if tx is None:
        tx = _adopt_unknown(session, call)
        if tx is None:
            return
    elif _repeat(session, call, tx, request_hash):
        return
    elif tx.ended:  # a different StopTransaction for an ended transaction: the CSMS must not see two Ended
        session.emit("transaction.duplicate_stop", transaction_id=tx.tx_id)
        _answer(session, tx, call, tx.last_answer or {})
        return
    stopped_at = timestamp(payload["timestamp"])
    reason = payload.get("reason", "Local")  # absent means Local (1.6 StopTransaction.req)
    stopped, trigger = STOP_REASONS[reason]
    if reason == "Local" and "idTag" not in payload:
        trigger = "EVCommunicationLost" if session.meta.connector_status.get(str(tx.connector_id)) == "Available" \
            else "ChargingStateChanged"
    values = meter_values(session, payload.get("transactionData", []),
                          readings={"Transaction.End": payload["meterStop"]})
    if not _signed_register(values, "Transaction.End"):  # else meterStop already travels with its signature
        values.append(register_sample(stopped_at, payload["meterStop"], "Transaction.End"))
    tx.ended = True
    # After a 1.6 stop no energy flows: the EV is still connected unless the stop was its disconnection (§4.4).
    tx.charging_state = "Idle" if reason == "EVDisconnected" else "EVConnected"
    event: dict[str, Any] = {"eventType": "Ended", "timestamp": stopped_at, "triggerReason": trigger,
                             "transactionInfo": tx_info(tx, stoppedReason=stopped if stopped != "Local" else None),
                             "meterValue": values}
    if "idTag" in payload:
        event["idToken"] = id_token(session, payload["idTag"])  # E07.FR.02
    queue_event(session, tx, event, request_hash)
    _answer(session, tx, call, {})
    session.emit("transaction.ended", transaction_id=tx.tx_id, local_id=tx.local_id)
    session.ledger.prune()
    _after_last_transaction(session)


def _owed_to_legacy(session: TranslatingSession, call: Call) -> None:
    """A transaction the old central system opened (shadow or legacy route) stopped while the charger is routed
    elsewhere: the old system is owed this StopTransaction, delivered by the routed session (core/routing.py)."""
    local_id = call.payload["transactionId"]
    if local_id in session.meta.legacy_open:
        session.meta.legacy_open.remove(local_id)
        session.meta.legacy_backlog.append({"action": call.action, "payload": call.payload})
        session.persist(session.meta)


def _signed_register(values: list[dict[str, Any]], context: str) -> bool:
    return any(s.get("context") == context and "signedMeterValue" in s
               and s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
               for value in values for s in value["sampledValue"])


def _adopt_unknown(session: TranslatingSession, call: Call) -> TxRecord | None:
    """A StopTransaction for an id this charger never got from the bridge (a migration leftover).

    The billing data is real, so it reaches the CSMS as a Started (offline) + Ended pair under this charger's
    own identity; the ledger records the charger's id so a retry is idempotent and the id is never minted.
    """
    payload = call.payload
    local_id = payload["transactionId"]
    session.emit("transaction.unknown", action=call.action, local_id=local_id)
    if local_id <= 0:
        session.fail_charger(call, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "transactionId must be positive")
        return None
    stopped_at = timestamp(payload["timestamp"])
    id_tag = payload.get("idTag")
    token = id_token(session, id_tag) if id_tag else None
    tx = TxRecord(identity=session.identity, local_id=local_id, tx_id=session.new_id(), connector_id=0,
                  evse_id=0, evse_connector_id=0, id_token=id_tag or "", id_token_type=token["type"] if token else "",
                  meter_start=payload["meterStop"], started_at=stopped_at, start_hash="")
    session.ledger.adopt(tx)
    session.meta.next_local_id = max(session.meta.next_local_id, local_id + 1)
    started: dict[str, Any] = {"eventType": "Started", "timestamp": stopped_at, "triggerReason": "Authorized",
                               "offline": True, "transactionInfo": tx_info(tx)}
    if token:
        started["idToken"] = token
    session.persist(session.meta)
    queue_event(session, tx, started)
    return tx


def _after_last_transaction(session: TranslatingSession) -> None:
    """B12.FR.01: a Reset OnIdle the bridge answered Scheduled runs once the last transaction has ended."""
    if not session.meta.reset_on_idle or session.ledger.open_transactions():
        return
    session.meta.reset_on_idle = False
    session.meta.boot_reason = "ScheduledReset"
    session.persist(session.meta)

    def done(outcome: Outcome) -> None:
        session.emit("reset.scheduled_done", accepted=bool(outcome.ok and outcome.result["status"] == "Accepted"))

    session.call_charger("Reset", {"type": "Soft"}, done)
