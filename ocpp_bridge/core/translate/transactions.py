"""StartTransaction / MeterValues / StopTransaction -> TransactionEvent Started / Updated / Ended (2.0.1 E).

Why this exists: this is where money is. The bridge mints both transaction ids, numbers the events, writes the
record before the charger hears anything (``persist`` precedes every send), and makes retries idempotent by
content: a charger that repeats a request whose answer it lost gets the same answer, or the same event is sent
again with the same seqNo, never a second transaction or a second Ended (DESIGN.md "Things peers got wrong").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..convert import id_tag_info, id_token, meter_values, register_sample, timestamp
from ..lanes import Outcome
from ..ledger import Ledger, content_hash
from ..rpc import ErrorCode
from ..state import TxRecord
from . import from_charger

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# How long an accepted RequestStartTransaction waits for its StartTransaction. 1.6 chargers give up after
# ConnectionTimeOut (typically 30-180 s); the margin covers a charger that is slow to report the start.
REMOTE_START_VALIDITY: Final = 600.0

# 1.6 ChargePointStatus -> 2.0.1 ChargingStateEnumType while a transaction runs (mapping reference §3.2).
CHARGING_STATE: Final = {
    "Preparing": "EVConnected",
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "Finishing": "EVConnected",
    "Unavailable": "SuspendedEVSE",
    "Faulted": "SuspendedEVSE",
    "Available": "Idle",
}

# 1.6 Reason -> (2.0.1 stoppedReason, triggerReason) (mapping reference §3.4).
STOP_REASONS: Final = {
    "Local": ("Local", "StopAuthorized"),
    "Remote": ("Remote", "RemoteStop"),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"),
    "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "HardReset": ("ImmediateReset", "ResetCommand"),
    "SoftReset": ("ImmediateReset", "ResetCommand"),
    "Reboot": ("Reboot", "AbnormalCondition"),
    "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
    "UnlockCommand": ("Remote", "UnlockCommand"),
    "Other": ("Other", "AbnormalCondition"),
}

# 1.6 ReadingContext of a transaction's MeterValues -> triggerReason of the Updated event (§3.5).
METER_TRIGGERS: Final = {
    "Sample.Periodic": "MeterValuePeriodic",
    "Sample.Clock": "MeterValueClock",
    "Trigger": "Trigger",
    "Interruption.Begin": "AbnormalCondition",
    "Interruption.End": "AbnormalCondition",
}


def send_event(session: TranslatingSession, tx: TxRecord, event: dict[str, Any],
               then: Callable[[Outcome], None], request_hash: str | None = None) -> None:
    """Number ``event`` (next seqNo), persist the record, then send it. The record is durable first."""
    event = {**event, "seqNo": Ledger.next_seq_no(tx)}
    if request_hash is not None:
        tx.last_hash, tx.last_event, tx.last_answer = request_hash, event, None
    session.persist(tx)
    session.call_csms("TransactionEvent", event, then)


def _tx_info(tx: TxRecord, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": tx.tx_id}
    if tx.charging_state:
        info["chargingState"] = tx.charging_state
    info.update({k: v for k, v in extra.items() if v is not None})
    return info


def _retry(session: TranslatingSession, call: Call, tx: TxRecord, request_hash: str,
           answered: Callable[[Outcome], None]) -> bool:
    """Handle a repeated request: resend its stored answer, or its stored event with the same seqNo."""
    if tx.last_hash != request_hash or tx.last_event is None:
        return False
    if tx.last_answer is not None:
        session.emit("transaction.retry_answered", action=call.action, transaction_id=tx.tx_id)
        session.reply_charger(call, tx.last_answer)
    else:
        session.emit("transaction.retry_resent", action=call.action, transaction_id=tx.tx_id,
                     seq_no=tx.last_event["seqNo"])
        session.call_csms("TransactionEvent", tx.last_event, answered)
    return True


def refused_connector(session: TranslatingSession, call: Call, lowest: int) -> bool:
    """Refuse a connectorId below ``lowest``. 1.6 field definitions: StartTransaction.req connectorId > 0,
    MeterValues/StatusNotification connectorId >= 0 (0 = main controller). The 1.6 schemas do not say so, and a
    negative id would become an EVSE id the 2.1 schemas (minimum 0) and real CSMSs refuse."""
    if call.payload["connectorId"] >= lowest:
        return False
    session.fail_charger(call, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, f"connectorId must be >= {lowest}")
    return True


def _record_answer(session: TranslatingSession, tx: TxRecord, call: Call, answer: dict[str, Any]) -> None:
    tx.last_answer = answer
    session.persist(tx)
    session.reply_charger(call, answer)


def _take_remote_start(session: TranslatingSession, connector_id: int, id_tag: str) -> dict[str, Any] | None:
    """The pending RequestStartTransaction this start answers (same connector, or any connector + same tag).

    Entries older than REMOTE_START_VALIDITY are dropped: a remote start the driver never followed up must not
    turn a later local start with the same token into a "RemoteStart".
    """
    meta = session.meta
    meta.remote_starts[:] = [e for e in meta.remote_starts if e.get("expires", float("inf")) > session.now]
    for entry in meta.remote_starts:
        if entry["idTag"] == id_tag and entry.get("connectorId") in (None, connector_id):
            session.meta.remote_starts.remove(entry)
            return entry
    return None


@from_charger("StartTransaction", becomes=("TransactionEvent",),
              note="TransactionEvent Started; the bridge mints the 1.6 integer id and the 2.0.1 transactionId, "
                   "persists them before answering; triggerReason RemoteStart with remoteStartId after a "
                   "RequestStartTransaction, else Authorized")
def start_transaction(session: TranslatingSession, call: Call) -> None:
    if refused_connector(session, call, 1):
        return
    payload = call.payload
    request_hash = content_hash(call.action, payload)
    tx = session.ledger.by_start_hash(request_hash)

    def answered(outcome: Outcome) -> None:
        assert tx is not None
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        info = outcome.result.get("idTokenInfo")
        if info is not None:
            tag_info = id_tag_info(info)
        elif tx.remote_start_id is not None:
            tag_info = {"status": "Accepted"}  # the CSMS itself asked for this start with this token
        else:  # a CSMS that omits idTokenInfo; never invent an acceptance it did not give
            tag_info = session.auth_decisions.get(tx.id_token, {"status": "Invalid"})
        tx.start_answer = {"transactionId": tx.local_id, "idTagInfo": tag_info}
        _record_answer(session, tx, call, tx.start_answer)

    if tx is not None and _retry(session, call, tx, request_hash, answered):
        return
    if tx is not None and tx.start_answer is not None:  # a repeat that arrives after later messages of its tx
        session.emit("transaction.retry_answered", action=call.action, transaction_id=tx.tx_id)
        session.reply_charger(call, tx.start_answer)
        return
    connector_id = payload["connectorId"]
    started_at = timestamp(payload["timestamp"])
    token = id_token(session, payload["idTag"])
    remote = _take_remote_start(session, connector_id, payload["idTag"])
    status = session.meta.connector_status.get(str(connector_id), "Preparing")
    state = CHARGING_STATE.get(status) if status in ("Charging", "SuspendedEV", "SuspendedEVSE") else "EVConnected"
    stale = session.ledger.open_on_connector(connector_id)
    if stale is not None and stale.start_answer is None:
        # The charger gave up on a start the CSMS never accepted (it only ever got CALLERRORs) and starts anew.
        stale.ended = True
        session.persist(stale)
        session.emit("transaction.abandoned", transaction_id=stale.tx_id, local_id=stale.local_id)
    reservation_id = payload.get("reservationId")
    if reservation_id is not None and reservation_id < 0:  # no CSMS issued it (2.1: minimum 0): keep the start
        session.emit("transaction.bad_reservation", reservation_id=reservation_id)
        reservation_id = None
    tx = session.ledger.begin(
        session.meta, session.new_id(),
        connector_id=connector_id, evse_id=connector_id, evse_connector_id=1,
        id_token=payload["idTag"], id_token_type=token["type"], meter_start=payload["meterStart"],
        started_at=started_at, start_hash=request_hash,
        remote_start_id=remote["remoteStartId"] if remote else None,
        reservation_id=reservation_id, charging_state=state,
    )
    event: dict[str, Any] = {
        "eventType": "Started",
        "timestamp": started_at,
        "triggerReason": "RemoteStart" if remote else "Authorized",
        "transactionInfo": _tx_info(tx, remoteStartId=tx.remote_start_id),
        "evse": {"id": tx.evse_id, "connectorId": tx.evse_connector_id},  # E01.FR.16
        "idToken": token,
        "meterValue": [register_sample(started_at, payload["meterStart"], "Transaction.Begin")],
    }
    if tx.reservation_id is not None:
        event["reservationId"] = tx.reservation_id  # H01.FR.15
    session.persist(session.meta)
    session.emit("transaction.started", transaction_id=tx.tx_id, local_id=tx.local_id)
    send_event(session, tx, event, answered, request_hash)


@from_charger("MeterValues", becomes=("TransactionEvent", "MeterValues"),
              note="in a transaction: TransactionEvent Updated (triggerReason from the reading context); outside: "
                   "MeterValues. Temperature/RPM have no 2.0.1 measurand: dropped with a meter.unmapped event")
def meter_values_(session: TranslatingSession, call: Call) -> None:
    if refused_connector(session, call, 0):
        return
    payload = call.payload
    connector_id = payload["connectorId"]
    local_id = payload.get("transactionId")
    tx = session.ledger.get(local_id) if local_id is not None else session.ledger.open_on_connector(connector_id)
    values = meter_values(session, payload["meterValue"])

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
        elif tx is not None and not tx.ended:
            _record_answer(session, tx, call, {})
        else:
            session.reply_charger(call, {})

    if tx is None or tx.ended:
        if local_id is not None:
            session.emit("transaction.unknown", action=call.action, local_id=local_id)
        if not values:
            session.reply_charger(call, {})  # nothing 2.0.1 can carry; each sample was traced by convert
            return
        session.call_csms("MeterValues", {"evseId": connector_id, "meterValue": values}, answered)
        return
    request_hash = content_hash(call.action, payload)
    if _retry(session, call, tx, request_hash, answered):
        return
    if not values:
        session.reply_charger(call, {})
        return
    context = payload["meterValue"][0]["sampledValue"][0].get("context", "Sample.Periodic")
    event = {
        "eventType": "Updated",
        "timestamp": values[0]["timestamp"],
        "triggerReason": METER_TRIGGERS.get(context, "MeterValuePeriodic"),
        "transactionInfo": _tx_info(tx),
        "meterValue": values,
    }
    send_event(session, tx, event, answered, request_hash)


@from_charger("StopTransaction", becomes=("TransactionEvent",),
              note="TransactionEvent Ended with stoppedReason/triggerReason from the 1.6 reason; transactionData "
                   "and meterStop become meterValue; a transaction the ledger does not know (e.g. started on the "
                   "old central system) is carried as Started+Ended so no billing data is lost")
def stop_transaction(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    request_hash = content_hash(call.action, payload)
    tx = session.ledger.get(payload["transactionId"])

    def answered(outcome: Outcome) -> None:
        assert tx is not None
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        answer: dict[str, Any] = {}
        if "idTag" in payload and "idTokenInfo" in outcome.result:
            answer["idTagInfo"] = id_tag_info(outcome.result["idTokenInfo"])
        _record_answer(session, tx, call, answer)
        session.emit("transaction.ended", transaction_id=tx.tx_id, local_id=tx.local_id)
        session.ledger.prune()
        _after_last_transaction(session)

    if tx is None:
        tx = _adopt_unknown(session, call)
        if tx is None:
            return
    elif _retry(session, call, tx, request_hash, answered):
        return
    elif tx.ended:  # a different StopTransaction for an ended transaction: the CSMS must not see two Ended
        session.emit("transaction.duplicate_stop", transaction_id=tx.tx_id)
        session.reply_charger(call, tx.last_answer or {})
        return
    stopped_at = timestamp(payload["timestamp"])
    stopped, trigger = STOP_REASONS[payload.get("reason", "Local")]
    if payload.get("reason", "Local") == "Local" and "idTag" not in payload:
        trigger = "EVCommunicationLost" if session.meta.connector_status.get(str(tx.connector_id)) == "Available" \
            else "ChargingStateChanged"
    values = meter_values(session, payload.get("transactionData", []))
    values.append(register_sample(stopped_at, payload["meterStop"], "Transaction.End"))
    tx.ended = True
    # After a 1.6 stop no energy flows: the EV is still connected unless the stop was its disconnection (§4.4).
    tx.charging_state = "Idle" if payload.get("reason") == "EVDisconnected" else "EVConnected"
    info = _tx_info(tx, stoppedReason=stopped if stopped != "Local" else None)
    event: dict[str, Any] = {"eventType": "Ended", "timestamp": stopped_at, "triggerReason": trigger,
                             "transactionInfo": info, "meterValue": values}
    if "idTag" in payload:
        event["idToken"] = id_token(session, payload["idTag"])  # E07.FR.02
    send_event(session, tx, event, answered, request_hash)


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
                               "offline": True, "transactionInfo": _tx_info(tx)}
    if token:
        started["idToken"] = token
    session.persist(session.meta)

    def logged(outcome: Outcome) -> None:
        if not outcome.ok:
            session.emit("transaction.adopt_failed", transaction_id=tx.tx_id)

    send_event(session, tx, started, logged)
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

