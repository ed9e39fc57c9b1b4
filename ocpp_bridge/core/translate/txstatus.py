"""GetTransactionStatus and CostUpdated: transaction questions the bridge answers itself (2.0.1 E14, I02).

Why this exists: a 1.6 charger has neither message. What GetTransactionStatus asks, whether a transaction is
still going and whether messages about it still wait for delivery, is exactly what the bridge's ledger and queue
know, for this charger's transactions only. CostUpdated would be shown on the charger's display, which 1.6 cannot
address; the bridge acknowledges it (its answer is empty in both versions) and leaves a trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Handling, from_csms

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession


def _queued(session: TranslatingSession, tx_id: str | None) -> bool:
    """Whether TransactionEvents (of transaction ``tx_id``, or any) still wait for the CSMS's acceptance."""
    return any(item.action == "TransactionEvent"
               and (tx_id is None or item.payload["transactionInfo"]["transactionId"] == tx_id)
               for item in session.outbox.items)


@from_csms("GetTransactionStatus", Handling.ANSWERED, becomes=(),
           note="from the ledger (this charger's transactions only) and the delivery queue: ongoingIndicator for "
                "a known transaction, false for an unknown one (E14.FR.01-03), messagesInQueue from the queue")
def get_transaction_status(session: TranslatingSession, call: Call) -> None:
    tx_id = call.payload.get("transactionId")
    if tx_id is None:  # E14.FR.06-08: no ongoingIndicator
        session.reply_csms(call, {"messagesInQueue": _queued(session, None)})
        return
    tx = session.ledger.by_tx_id(tx_id)
    answer: dict[str, Any] = {"ongoingIndicator": tx is not None and not tx.ended,  # E14.FR.01-03
                              "messagesInQueue": _queued(session, tx_id)}  # E14.FR.04/05
    session.reply_csms(call, answer)


@from_csms("CostUpdated", Handling.ANSWERED, becomes=(),
           note="acknowledged ({}): 1.6 has no way to show a running cost; traced as a cost.updated event")
def cost_updated(session: TranslatingSession, call: Call) -> None:
    session.emit("cost.updated", transaction_id=call.payload["transactionId"], total=call.payload["totalCost"])
    session.reply_csms(call, {})
