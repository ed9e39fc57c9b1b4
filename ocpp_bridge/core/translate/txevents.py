"""Transaction events: the 1.6 -> 2.0.1 tables, numbering, queueing, and what happens on delivery.

Why this exists: every TransactionEvent the bridge produces, whatever 1.6 message caused it, is numbered (seqNo,
E01: from 0, +1 per event), flagged offline when produced during a CSMS outage (E12), persisted with its
transaction record and queued for ordered, at-least-once delivery (``core.outbox``). When the CSMS finally
answers, a non-Accepted idTokenInfo for a transaction the charger was told it may run makes the bridge stop it
(the charger's StopTransactionOnInvalidId behaviour, which a 1.6 charger only applies to a conf it receives).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .. import authcache
from ..convert import id_tag_info
from ..lanes import Outcome
from ..ledger import Ledger
from ..outbox import AnswerHook, on_delivered
from ..state import QueuedMessage, TxRecord

if TYPE_CHECKING:
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




def queue_event(session: TranslatingSession, tx: TxRecord, event: dict[str, Any],
                request_hash: str | None = None, on_answer: AnswerHook | None = None) -> None:
    """Number ``event``, persist the transaction and queue the event, in one atomic write."""
    event = {**event, "seqNo": Ledger.next_seq_no(tx)}
    if session.offline:
        event["offline"] = True  # E12.FR.02: produced while the CSMS could not be reached
    if request_hash is not None:
        tx.last_hash, tx.last_answer = request_hash, None
    session.persist(tx)
    session.outbox.enqueue("TransactionEvent", event, local_id=tx.local_id, on_answer=on_answer)


def tx_info(tx: TxRecord, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": tx.tx_id}
    if tx.charging_state:
        info["chargingState"] = tx.charging_state
    if extra:
        info.update({k: v for k, v in extra.items() if v is not None})
    return info


@on_delivered("TransactionEvent")
def _check_authorization(session: TranslatingSession, item: QueuedMessage, outcome: Outcome) -> None:
    """The CSMS's idTokenInfo on a delivered event: remember it, and stop a transaction it does not allow."""
    info = outcome.result.get("idTokenInfo")
    if info is None:
        return
    tx = session.ledger.get(item.local_id) if item.local_id is not None else None
    if tx is None:
        return
    decided = id_tag_info(info)
    if tx.id_token:
        authcache.remember(session, tx.id_token, decided)
        session.persist(session.meta)
    told = (tx.start_answer or {}).get("idTagInfo", {}).get("status")
    if decided["status"] == "Accepted" or tx.ended or told != "Accepted":
        return
    # E05/C15: the CSMS does not allow this transaction, but the charger runs it on an earlier (cached) answer.
    session.emit("transaction.deauthorized", transaction_id=tx.tx_id, local_id=tx.local_id,
                 status=decided["status"])

    def stopped(result: Outcome) -> None:
        accepted = result.ok and result.result.get("status") == "Accepted"
        session.emit("transaction.remote_stop_sent", transaction_id=tx.tx_id, accepted=accepted)

    session.call_charger("RemoteStopTransaction", {"transactionId": tx.local_id}, stopped)
