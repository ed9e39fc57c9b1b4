"""What the translation families share: the 2.x ``{status, statusInfo}`` answer, forwarding one call to the
charger, checking a 1.6 request before it is sent, queueing a charger notification, and what the bridge learnt
about the charger's optional messages.

Why this exists: most 2.x operations become exactly one 1.6 call whose status maps back one to one, and the
optional 1.6 messages (the security whitepaper's GetLog, ExtendedTriggerMessage, SignedUpdateFirmware; the ISO
15118 DataTransfer tunnel) may or may not be implemented by a given charger. A charger that answers one of them
with CALLERROR NotImplemented/NotSupported is remembered, so the bridge refuses the next such request itself
(with the negative status the 2.x enum has, 2.0.1 Part 4 §4.3) instead of asking again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .. import validate
from ..lanes import Outcome
from ..rpc import ErrorCode, Version

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

UNSUPPORTED: Final = "UnsupportedRequest"  # reasonCode for what a 1.6 charger cannot do (2.0.1 appendix 5)
_UNSUPPORTED_CODES: Final = frozenset({ErrorCode.NOT_IMPLEMENTED, ErrorCode.NOT_SUPPORTED})


def status_answer(value: str, reason: str | None = None, info: str | None = None) -> dict[str, Any]:
    """A 2.x ``{status, statusInfo?}`` answer; reasonCode is string[20], additionalInfo string[512] in 2.0.1."""
    answer: dict[str, Any] = {"status": value}
    if reason is not None:
        answer["statusInfo"] = {"reasonCode": reason[:20]} | ({"additionalInfo": info[:512]} if info else {})
    return answer


def forward(session: TranslatingSession, call: Call, action: str, request: dict[str, Any],
            answer: Callable[[str], dict[str, Any]] = status_answer,
            accepted: Callable[[], None] | None = None) -> None:
    """Send ``request`` to the charger; answer the CSMS with ``answer(1.6 status)`` or relay the failure.

    ``accepted`` runs (and may persist) before the CSMS hears an ``Accepted``.
    """
    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        result = outcome.result["status"]
        if accepted is not None and result == "Accepted":
            accepted()
        session.reply_csms(call, answer(result))

    session.call_charger(action, request, answered)


def notify(session: TranslatingSession, call: Call, action: str, request: dict[str, Any]) -> None:
    """Queue a charger notification for ordered, retried delivery and acknowledge it once stored (issue 4).

    A 1.6 charger retries only transaction messages, so a CALLERROR would lose the notification; once it is in
    the bridge's durable queue, the bridge owns its delivery (A04.FR.02 requires that for security events)."""
    session.outbox.enqueue(action, request)
    session.reply_charger(call, {})


def unfit(action: str, request: dict[str, Any]) -> str | None:
    """Why ``request`` is not a valid 1.6 ``action`` (e.g. a 2.1 length 1.6 does not allow), or ``None``.

    Checked before sending, so a value 1.6 cannot hold is refused with a clear status instead of surfacing as
    an InternalError (the session's own output check)."""
    violation = validate.check(Version.V16, action, request, response=False)
    return None if violation is None else violation.message


def unsupported(outcome: Outcome) -> bool:
    """The charger answered CALLERROR NotImplemented / NotSupported: it does not implement the message."""
    return outcome.error is not None and not outcome.timed_out and outcome.error.code in _UNSUPPORTED_CODES


def remember(session: TranslatingSession, feature: str, known: bool) -> None:
    """Record whether the charger implements ``feature`` (persisted when it changes)."""
    if session.meta.features.get(feature) is not known:
        session.meta.features[feature] = known
        session.persist(session.meta)


def learn(session: TranslatingSession, feature: str, outcome: Outcome) -> None:
    """Remember whether the charger implements ``feature`` from how it answered a call that needs it."""
    if outcome.ok:
        remember(session, feature, True)
    elif unsupported(outcome):
        remember(session, feature, False)
    # a timeout or another error says nothing about support


def supports(session: TranslatingSession, feature: str) -> bool | None:
    return session.meta.features.get(feature)


def call_optional(session: TranslatingSession, call: Call, action: str, request: dict[str, Any], *,
                  negative: str, missing: str, answer: Callable[[dict[str, Any]], dict[str, Any]],
                  feature: str | None = None, check: bool = True) -> None:
    """Carry ``call`` as ``action``, a message a 1.6 charger may not implement (security whitepaper).

    A request 1.6 cannot hold (``check``) -> ``negative`` status InvalidValue; a charger known (``feature``)
    or found (CALLERROR NotImplemented/NotSupported) not to implement it -> ``negative`` status with
    ``missing`` as the explanation; otherwise the CSMS gets ``answer(charger's result)``, or the relayed failure.
    """
    why = unfit(action, request) if check else None
    if why is not None:
        session.reply_csms(call, status_answer(negative, "InvalidValue", why))
        return
    if feature is not None and supports(session, feature) is False:
        session.reply_csms(call, status_answer(negative, UNSUPPORTED, missing))
        return

    def answered(outcome: Outcome) -> None:
        if feature is not None:
            learn(session, feature, outcome)
        if outcome.ok:
            session.reply_csms(call, answer(outcome.result))
        elif unsupported(outcome):
            session.reply_csms(call, status_answer(negative, UNSUPPORTED, missing))
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger(action, request, answered)
