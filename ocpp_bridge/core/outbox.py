"""Durable, ordered delivery of the messages the bridge has acknowledged to the charger (issue 4, 2.0.1 E13).

Why this exists: transaction and meter data are money. Once the bridge answered a charger's MeterValues or
StopTransaction, the charger forgets the data, so the bridge must deliver it whatever happens upstream: the
message is persisted (atomically with the ledger change that produced it) before the charger hears anything,
delivered per charger strictly in order, retried with back-off while the CSMS answers CALLERROR or nothing
(MessageAttemptInterval semantics, E13.FR.01-03), held while the CSMS is unreachable, replayed after a
restart, and deleted only when the CSMS has accepted it. A message is never dropped; a growing queue is visible
through ``queue.*`` events.

Delivery is at-least-once: if the bridge dies between sending a message and recording the CSMS's acceptance, the
message is sent again after the restart, with the same content and seqNo (the CSMS can tell it is a repeat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .lanes import Outcome
from .rpc import ErrorCode
from .state import QueuedMessage

if TYPE_CHECKING:
    from .session import TranslatingSession

AnswerHook = Callable[[Outcome], None]
DeliveryRule = Callable[["TranslatingSession", QueuedMessage, Outcome], None]

# action -> what to do once the CSMS accepted such a message (registered by the translation families)
DELIVERY_RULES: dict[str, DeliveryRule] = {}
_RETRY_TIMER: Final = "outbox.retry"
# Transaction data is money: retried until accepted, whatever the CSMS answers (issue 4).
_NEVER_DROPPED: Final = frozenset({"TransactionEvent", "MeterValues"})
# Answers that no retry can change: the CSMS does not support the message or finds it malformed.
_PERMANENT: Final = frozenset({ErrorCode.NOT_SUPPORTED, ErrorCode.NOT_IMPLEMENTED, ErrorCode.FORMAT_VIOLATION,
                               ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
                               ErrorCode.TYPE_CONSTRAINT_VIOLATION})
PERMANENT_ATTEMPTS: Final = 3
QUEUE_ALERT_STEP: Final = 1000  # a queue.growing event each time the depth crosses a multiple of this


def on_delivered(action: str) -> Callable[[DeliveryRule], DeliveryRule]:
    def register(rule: DeliveryRule) -> DeliveryRule:
        DELIVERY_RULES[action] = rule
        return rule

    return register


class Outbox:
    """The queue of one charger. Owned by its session; every change is persisted through it."""

    def __init__(self, session: TranslatingSession) -> None:
        self.session = session
        self.items: list[QueuedMessage] = []
        self.sending: QueuedMessage | None = None
        self.backing_off = False
        self._hooks: dict[int, AnswerHook] = {}  # seq -> who waits for the first answer (in memory only)

    def load(self, queued: tuple[QueuedMessage, ...]) -> None:
        self.items = sorted((q for q in queued if q.identity == self.session.identity and not q.delivered),
                            key=lambda q: q.seq)
        # The counter is not written with every queued message (it would rewrite the charger record, a few KB,
        # per MeterValues): numbers only order what is queued, so the next one follows the highest stored.
        if self.items:
            meta = self.session.meta
            meta.next_queue_seq = max(meta.next_queue_seq, self.items[-1].seq + 1)

    def __len__(self) -> int:
        return len(self.items)

    def oldest_age(self) -> float:
        return self.session.now - self.items[0].created if self.items else 0.0

    def enqueue(self, action: str, payload: dict[str, Any], *, key: str | None = None, local_id: int | None = None,
                on_answer: AnswerHook | None = None) -> QueuedMessage:
        """Queue a message and persist it (with the messages it replaces) in one atomic write.

        Callers add their own records (the transaction) to the same write by persisting them *before* calling
        this, in the same event; the shell applies consecutive Persist commands before any send. The message is
        sent when the event has been handled (:meth:`pump` from ``session.feed``), never from here: a send in
        between would split what one charger message changed into two writes.
        """
        meta = self.session.meta
        item = QueuedMessage(self.session.identity, meta.next_queue_seq, action, payload, self.session.now, key,
                             local_id)
        meta.next_queue_seq += 1
        replaced = self._coalesce(key) if key else []
        self.items.append(item)
        self.session.note_peer(f"queued:{item.seq}", action)
        if on_answer is not None:
            self._hooks[item.seq] = on_answer
        self.session.persist(item, *replaced)
        if len(self.items) % QUEUE_ALERT_STEP == 0:
            self.session.emit("queue.growing", depth=len(self.items), oldest_age=round(self.oldest_age(), 1))
        if self.session.offline and len(self.items) > self.session.settings.max_queue:
            self.session.end_ride_through(f"more than {self.session.settings.max_queue} messages queued")
        return item

    def on_answer(self, match: Callable[[QueuedMessage], bool], hook: AnswerHook) -> bool:
        """Have ``hook`` called with the CSMS's next answer to the queued message ``match`` selects (replacing
        whoever waited for it before, e.g. a call lost with a restart); ``False`` if no such message is queued."""
        item = next((q for q in self.items if match(q)), None)
        if item is None:
            return False
        self._hooks[item.seq] = hook
        return True

    def _coalesce(self, key: str) -> list[QueuedMessage]:
        """Drop queued, not yet sent messages with the same key: only the newest state is worth replaying."""
        stale = [q for q in self.items if q.key == key and q is not self.sending]
        for item in stale:
            self.items.remove(item)
            item.delivered = True  # i.e. removed from the store; it was superseded, not lost
            self._hooks.pop(item.seq, None)
        return stale

    def pump(self) -> None:
        """Send the head of the queue if the CSMS is reachable and nothing is in flight or backing off."""
        if self.sending is not None or self.backing_off or not self.items or not self.session.upstream_up:
            return
        item = self.sending = self.items[0]
        self.session.call_csms_detached(item.action, item.payload, lambda outcome: self._answered(item, outcome))

    def _answered(self, item: QueuedMessage, outcome: Outcome) -> None:
        self.sending = None
        hook = self._hooks.pop(item.seq, None)
        if outcome.ok:
            self.items.remove(item)
            item.delivered = True
            self.session.persist(item)
            self.session.emit("queue.delivered", seq=item.seq, action=item.action, attempts=item.attempts)
            if hook is not None:
                hook(outcome)
            rule = DELIVERY_RULES.get(item.action)
            if rule is not None:
                rule(self.session, item, outcome)
            self.pump()
            return
        if hook is not None:
            hook(outcome)  # whoever waited for the first answer decides without the CSMS
        if not self.session.upstream_up:
            return  # the link went down with the message in flight: it is sent again on reconnect
        item.attempts += 1
        if self._refused_for_good(item, outcome):
            return
        self.session.persist(item)
        delay = self.session.settings.retry_delay(item.attempts)
        self.session.emit("queue.retry", action=item.action, seq=item.seq, attempts=item.attempts,
                          delay=delay, error=outcome.error.code.value if outcome.error else None)
        self.backing_off = True
        self.session.set_timer(_RETRY_TIMER, self.session.now + delay, self._retry)

    def _refused_for_good(self, item: QueuedMessage, outcome: Outcome) -> bool:
        """A status report the CSMS keeps refusing as unsupported or malformed is set aside after a few tries, so
        it cannot hold the transaction data queued behind it hostage. Transaction data is never set aside."""
        code = outcome.error.code if outcome.error is not None else None
        if item.action in _NEVER_DROPPED or code not in _PERMANENT or item.attempts < PERMANENT_ATTEMPTS:
            return False
        self.items.remove(item)
        item.delivered = True  # removed from the store, with an error line: the CSMS will never take it
        self.session.persist(item)
        self.session.emit("queue.refused", action=item.action, seq=item.seq, attempts=item.attempts,
                          error=code.value if code else None, payload=item.payload)
        self.pump()
        return True

    def _retry(self) -> None:
        self.backing_off = False
        self.pump()

    def upstream_lost(self) -> None:
        self.session.cancel_timer(_RETRY_TIMER)
        self.backing_off = False
