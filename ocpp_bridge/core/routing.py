"""Route modes of a 1.6 charger (issue 8): translate, legacy pass-through, shadow; switched while it stays connected.

Why this exists: operators migrate a fleet charger by charger. A routed session sits where a translated session
would, and decides per frame which central system is authoritative for the charger:

* ``translate``: the new 2.0.1/2.1 CSMS, through the :class:`~.session.TranslatingSession` it wraps (unchanged);
* ``legacy``: the old 1.6 central system; frames are validated and passed through untranslated;
* ``shadow``: the old system answers the charger, and every charger CALL it answered is also given to the
  translating session, whose upstream is the new CSMS. The translating session's answers are captured, never
  sent: they are compared with the old system's, and the differences that matter for a migration decision go
  into a :class:`ShadowReport`. Its ledger and device model stay current, so at cut-over the new CSMS already
  knows the station and its open transactions (a shadowed StartTransaction is given the id the old system
  assigned, so the charger's id means the same transaction on both routes).

A route change (:class:`~.events.RouteChanged`) only switches the upstream side. Calls in flight finish on the
side that received them, the translating session's queue keeps delivering to the new CSMS, transactions the new
CSMS knows keep reaching it on a legacy route until they end, and a transaction the old system opened that ends
on another route is owed a StopTransaction, kept durably (``ChargerMeta.legacy_backlog``) and delivered to it.
On a non-translate route the new CSMS may only read: its read-only calls are answered from the bridge's own
knowledge (or read-only calls to the charger), the rest is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from . import rpc, validate
from .events import (
    CloseCharger,
    Command,
    Emit,
    Event,
    FrameFromCharger,
    FrameFromCsms,
    FrameFromLegacy,
    LegacyConnected,
    LegacyLost,
    Links,
    RouteChanged,
    ScheduleWakeup,
    SendToCharger,
    SendToCsms,
    SendToLegacy,
    SessionStarted,
    Tick,
    UpstreamConnected,
    UpstreamLost,
)
from .rpc import Call, CallError, CallResult, ErrorCode, Version
from .session import TranslatingSession
from .settings import CoreSettings

MODES: Final = ("translate", "legacy", "shadow")
# New-CSMS calls a legacy or shadow route lets through: they only read what the bridge knows about the station.
READ_ONLY_CSMS: Final = frozenset({"GetVariables", "GetBaseReport", "GetReport", "GetTransactionStatus",
                                   "GetLocalListVersion", "GetCompositeSchedule", "GetChargingProfiles"})
# Calls the translating session may make to a charger it does not own (its device model, read-only answers).
READ_ONLY_CHARGER: Final = frozenset({"GetConfiguration", "GetLocalListVersion", "GetCompositeSchedule"})
MIRROR_BACKLOG: Final = 1000  # charger calls held for the translating session on a shadow route
# Differences that matter for a migration decision (issue 8 §2); others are counted but do not block readiness.
MATTERING: Final = frozenset({"authorization", "boot_status", "csms_error", "schema_error", "timeout",
                              "transaction_rejected", "transaction_unknown", "transaction_id_collision",
                              "mirror_dropped"})
RECENT_DIFFERENCES: Final = 50
_TRANSACTION_ACTIONS: Final = frozenset({"MeterValues", "StopTransaction"})


@dataclass(slots=True)
class ShadowReport:
    """What a charger's shadow route showed: counters per kind and a bounded log of recent differences.

    Kept by the shell per identity, so a reconnecting charger keeps its history within one process.
    """

    counts: dict[str, int] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_DIFFERENCES))
    compared: int = 0  # charger calls both central systems answered
    compared_clean: int = 0  # ... since the last difference that matters
    shadow_since: float | None = None  # when the current shadow period began (None: not in shadow)
    last_difference: float | None = None

    def record(self, now: float, kind: str, **detail: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.recent.append({"at": now, "kind": kind, "matters": kind in MATTERING, **detail})
        if kind in MATTERING:
            self.last_difference = now
            self.compared_clean = 0

    def compared_one(self) -> None:
        self.compared += 1
        self.compared_clean += 1

    @property
    def differences(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind in MATTERING)

    def as_dict(self, now: float) -> dict[str, Any]:
        clean_since = max(t for t in (self.shadow_since, self.last_difference) if t is not None) \
            if self.shadow_since is not None else None
        return {
            "compared": self.compared,
            "differences": self.differences,
            "counts": dict(sorted(self.counts.items())),
            "in_shadow_seconds": round(now - self.shadow_since, 1) if self.shadow_since is not None else None,
            "clean_seconds": round(now - clean_since, 1) if clean_since is not None else None,
            "clean_messages": self.compared_clean,
        }


@dataclass(slots=True)
class _Forwarded:
    """A charger CALL sent to the old system, waiting for its answer."""

    call: Call
    text: str
    mirror: bool  # give it to the translating session once the old system accepted it
    deadline: float


class _ChargerLane:
    """OCPP-J: one outstanding CALL toward the charger, whoever sends it (the old system or the bridge)."""

    def __init__(self) -> None:
        self.busy: tuple[str, float] | None = None  # (messageId, deadline)
        self.queue: deque[tuple[str, str]] = deque()  # (messageId, text)

    def submit(self, unique_id: str, text: str, now: float, timeout: float) -> str | None:
        self.queue.append((unique_id, text))
        return self._next(now, timeout)

    def answered(self, unique_id: str, now: float, timeout: float) -> str | None:
        if self.busy is None or self.busy[0] != unique_id:
            return None
        self.busy = None
        return self._next(now, timeout)

    def expire(self, now: float, timeout: float) -> str | None:
        if self.busy is not None and self.busy[1] <= now:
            self.busy = None
        return self._next(now, timeout)

    def _next(self, now: float, timeout: float) -> str | None:
        if self.busy is not None or not self.queue:
            return None
        unique_id, text = self.queue.popleft()
        self.busy = (unique_id, now + timeout)
        return text


class RoutedSession:
    """Feed :mod:`.events`; get commands back. A 1.6 charger with a legacy and a new-CSMS side (issue 8)."""

    def __init__(self, identity: str, mode: str, upstream: Version, settings: CoreSettings,
                 new_id: Callable[[], str], report: ShadowReport, *, csms_open: bool, legacy_open: bool) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown route mode {mode!r}")
        self.identity = identity
        self.mode = mode
        self.new_id = new_id
        self.report = report
        self.core = TranslatingSession(identity, upstream, settings, new_id)
        self.core.upstream_up = csms_open
        self.core.max_waiting_calls = MIRROR_BACKLOG
        self.legacy_up = legacy_open
        self.now = 0.0
        self._forwarded: dict[str, _Forwarded] = {}  # charger CALLs at the old system
        self._legacy_calls: dict[str, str] = {}  # old-system CALLs at the charger: messageId -> action
        self._captured: dict[str, tuple[Call, CallResult]] = {}  # mirrored calls -> the old system's answer
        self._lane = _ChargerLane()
        self._backlog_id: str | None = None  # the owed StopTransaction in flight to the old system
        self._backlog_deadline = 0.0
        self._links: Links | None = None
        self._wakeup: float | None = None
        self._held: list[tuple[Call, str, CallResult]] = []  # mirrored calls waiting for the first CSMS link
        self._hold_until = 0.0
        self._out: list[Command] = []

    # --- what the shell and the admin API read -----------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self.core.idle and not self._forwarded and not self._legacy_calls and self._lane.busy is None

    @property
    def timeout(self) -> float:
        return self.core.settings.call_timeout

    # --- the event interface ------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Command]:
        self.now = event.now
        if isinstance(event, FrameFromCharger):
            self._from_charger(event)
        elif isinstance(event, FrameFromLegacy):
            self._from_legacy(event.text)
        elif isinstance(event, FrameFromCsms):
            self._from_csms(event)
        elif isinstance(event, Tick):
            self._core(self.core.feed(event))
            self._expire()
            if self._held and self.now >= self._hold_until:
                self._release_held()  # no link in time: the translating session answers them as offline
        elif isinstance(event, LegacyLost):
            self._legacy_lost()
        elif isinstance(event, LegacyConnected):
            self.legacy_up = True
            self._emit("legacy.connected", mode=self.mode, owed=len(self.core.meta.legacy_backlog))
        elif isinstance(event, RouteChanged):
            self._route_changed(event.mode)
        else:
            self._core(self.core.feed(event))
            if isinstance(event, SessionStarted):
                # a report outlives its session: a period of an earlier connection is not this one's
                self.report.shadow_since = event.now if self.mode == "shadow" else None
                if not self.core.upstream_up:
                    self._hold_until = event.now + self.timeout
            if isinstance(event, UpstreamLost) and self.mode != "translate":
                self.core.disarm_grace()  # the old system answers for the charger: no outage to end
            if isinstance(event, UpstreamConnected):
                self._release_held()
        self._pump_backlog()
        self._update_links()
        self._schedule()
        out, self._out = self._out, []
        return out

    # --- the charger ----------------------------------------------------------------------------------------

    def _from_charger(self, event: FrameFromCharger) -> None:
        text = event.text
        if self.mode == "translate" and self._lane.busy is None:
            self._core(self.core.feed(event))  # the foundation's path, untouched
            return
        try:
            frame = rpc.parse(text, Version.V16)
        except (rpc.FrameError, rpc.UnknownMessageType):
            self._core(self.core.feed(event))  # the translating session answers a broken frame (or ignores it)
            return
        if isinstance(frame, CallResult | CallError):
            action = self._legacy_calls.pop(frame.unique_id, None)
            if action is not None:
                self._charger_answered_legacy(frame, action, _text(text))
                return
            self._core(self.core.feed(event))
            self._lane_answered(frame.unique_id)
        elif isinstance(frame, Call):
            if self.mode == "translate":
                self._core(self.core.feed(event))
            else:
                self._to_legacy(frame, _text(text))

    def _to_legacy(self, call: Call, text: str) -> None:
        violation = validate.check(Version.V16, call.action, call.payload, response=False)
        if violation is not None:  # never forwarded: the charger gets the error, as on any route
            self._emit("frame.invalid", side="charger", action=call.action, code=violation.code.value,
                       detail=violation.message)
            self._send_charger(CallError(call.unique_id, violation.code, violation.message))
            return
        if not self.legacy_up:
            self._send_charger(CallError(call.unique_id, ErrorCode.GENERIC_ERROR,
                                         "the central system is unreachable"))
            return
        mirror = self.mode == "shadow" or (call.action in _TRANSACTION_ACTIONS and self._known_open(call))
        self._forwarded[call.unique_id] = _Forwarded(call, text, mirror, self.now + 2 * self.timeout)
        self._out.append(SendToLegacy(text))

    def _known_open(self, call: Call) -> bool:
        """A transaction the new CSMS knows and has not seen end: its messages reach it on a legacy route too."""
        local_id = call.payload.get("transactionId")
        tx = self.core.ledger.get(local_id) if isinstance(local_id, int) else None
        return tx is not None and not tx.ended

    def _charger_answered_legacy(self, frame: CallResult | CallError, action: str, text: str) -> None:
        if isinstance(frame, CallResult):
            violation = validate.check(Version.V16, action, frame.payload, response=True)
            if violation is not None:  # the old system gets an answer it can act on, never the invalid payload
                self._emit("frame.invalid", side="charger", action=action, detail=violation.message)
                text = rpc.serialize(CallError(frame.unique_id, ErrorCode.INTERNAL_ERROR,
                                               f"the charger answered {action} with an invalid payload"), Version.V16)
        self._out.append(SendToLegacy(text))  # unchanged, byte for byte, when valid
        self._lane_answered(frame.unique_id)

    def _lane_answered(self, unique_id: str) -> None:
        self._send_next(self._lane.answered(unique_id, self.now, self.timeout))

    def _send_next(self, text: str | None) -> None:
        if text is not None:
            self._out.append(SendToCharger(text))

    # --- the old central system ---------------------------------------------------------------------------

    def _from_legacy(self, text: str | bytes) -> None:
        try:
            frame = rpc.parse(text, Version.V16)
        except rpc.FrameError as exc:
            self._emit("frame.invalid", side="legacy", code=exc.code.value, detail=exc.description)
            self._out.append(SendToLegacy(rpc.serialize(CallError(exc.unique_id, exc.code, exc.description),
                                                        Version.V16)))
            return
        except rpc.UnknownMessageType as exc:  # 1.6-J §4.1.3: ignored
            self._emit("frame.ignored", side="legacy", detail=str(exc))
            return
        if isinstance(frame, Call):
            self._legacy_call(frame, _text(text))
        elif isinstance(frame, CallResult | CallError):
            if frame.unique_id == self._backlog_id:
                self._backlog_answered(frame)
                return
            forwarded = self._forwarded.pop(frame.unique_id, None)
            if forwarded is None:
                self._emit("frame.stray", side="legacy", message_id=frame.unique_id)
                return
            self._legacy_answered(forwarded, frame, _text(text))

    def _legacy_call(self, call: Call, text: str) -> None:
        violation = validate.check(Version.V16, call.action, call.payload, response=False)
        if violation is not None:
            self._emit("frame.invalid", side="legacy", action=call.action, detail=violation.message)
            self._out.append(SendToLegacy(rpc.serialize(CallError(call.unique_id, violation.code,
                                                                  violation.message), Version.V16)))
            return
        if self.mode == "translate" or call.unique_id in self._legacy_calls:
            reason = "the charger is routed to the new CSMS" if self.mode == "translate" \
                else "a call with this messageId is being handled already"
            self._out.append(SendToLegacy(rpc.serialize(CallError(call.unique_id, ErrorCode.NOT_SUPPORTED, reason),
                                                        Version.V16)))
            return
        self._legacy_calls[call.unique_id] = call.action
        self._send_next(self._lane.submit(call.unique_id, text, self.now, self.timeout))

    def _legacy_answered(self, forwarded: _Forwarded, frame: CallResult | CallError, text: str) -> None:
        call = forwarded.call
        if isinstance(frame, CallResult):
            violation = validate.check(Version.V16, call.action, frame.payload, response=True)
            if violation is not None:  # never relayed: the charger gets an error it retries on
                self._emit("frame.invalid", side="legacy", action=call.action, detail=violation.message)
                self._send_charger(CallError(call.unique_id, ErrorCode.INTERNAL_ERROR,
                                             f"the central system answered {call.action} with an invalid payload"))
                return
            result = frame
            self._core(self.core.apply(self.now, lambda: self._bookkeeping(call, result.payload)))
            if forwarded.mirror:
                self._mirror(call, forwarded.text, result)
        # after the translating session's write of the same message: the charger's acknowledgement comes last
        self._out.append(SendToCharger(text))

    def _bookkeeping(self, call: Call, answer: dict[str, Any]) -> None:
        """Which transactions the old system has open (and so is owed a StopTransaction for)."""
        meta = self.core.meta
        if call.action == "StartTransaction":
            meta.legacy_open.append(answer["transactionId"])
        elif call.action == "StopTransaction" and call.payload["transactionId"] in meta.legacy_open:
            meta.legacy_open.remove(call.payload["transactionId"])
        else:
            return
        self.core.persist(meta)

    # --- the mirror: the translating session sees what the old system accepted ---------------------------

    def _mirror(self, call: Call, text: str, answer: CallResult) -> None:
        if not self.core.upstream_up and self.now < self._hold_until:
            # The new CSMS's link is still being opened (a session that starts on a shadow route opens it after
            # the charger's handshake): the charger's first messages, its BootNotification above all, wait for it.
            self._held.append((call, text, answer))
            return
        if call.action == "StartTransaction":
            local_id = answer.payload["transactionId"]
            if self.core.ledger.get(local_id) is not None:  # e.g. an id the bridge numbered before a roll-back
                self._differ("transaction_id_collision", transaction_id=local_id,
                             detail="the old system reused a transactionId the ledger holds: not mirrored")
                return
            self.core.assigned_ids[call.unique_id] = local_id
        elif call.action == "StopTransaction" and not self._known_open(call):
            self._differ("transaction_unknown", action=call.action,
                               transaction_id=call.payload["transactionId"],
                               detail="the new CSMS never saw this transaction start: it gets a Started+Ended pair")
        self._captured[call.unique_id] = (call, answer)
        self._core(self.core.feed(FrameFromCharger(text, self.now)))

    def _release_held(self) -> None:
        self._hold_until = 0.0  # holding is for the first opening only; later outages are the queue's business
        held, self._held = self._held, []
        for call, text, answer in held:
            self._mirror(call, text, answer)

    def _compare(self, call: Call, legacy: CallResult, text: str) -> None:
        """The translating session answered a mirrored call: what would the new CSMS have told the charger?"""
        ours = rpc.parse(text, Version.V16)
        self.report.compared_one()
        if isinstance(ours, CallError):
            if ours.code is ErrorCode.GENERIC_ERROR and "too many outstanding calls" in ours.description:
                self._differ("mirror_dropped", action=call.action, detail=ours.description)
            else:
                self._differ("csms_error", action=call.action, csms=ours.code.value,
                                   detail=ours.description)
            return
        if not isinstance(ours, CallResult):
            return
        if call.action in ("Authorize", "StartTransaction"):
            old = legacy.payload.get("idTagInfo", {}).get("status")
            new = ours.payload.get("idTagInfo", {}).get("status")
            if old != new:
                self._differ("authorization", action=call.action, id_tag=call.payload["idTag"],
                                   legacy=old, csms=new)
        elif call.action == "BootNotification" and legacy.payload.get("status") != ours.payload.get("status"):
            self._differ("boot_status", legacy=legacy.payload.get("status"),
                               csms=ours.payload.get("status"))

    # --- the new CSMS ---------------------------------------------------------------------------------------

    def _from_csms(self, event: FrameFromCsms) -> None:
        if self.mode != "translate":
            call = _peek_call(event.text)
            if call is not None and call[1] not in READ_ONLY_CSMS:
                self._differ("csms_call_refused", action=call[1])
                error = CallError(call[0], ErrorCode.NOT_SUPPORTED,
                                  f"the charger is on a {self.mode} route: the old central system is in charge")
                self._out.append(SendToCsms(rpc.serialize(error, self.core.upstream)))
                return
        self._core(self.core.feed(event))

    # --- the translating session's commands -----------------------------------------------------------------

    def _core(self, commands: list[Command]) -> None:
        refused: list[str] = []
        for command in commands:
            if isinstance(command, ScheduleWakeup):
                continue  # merged with this session's own deadlines in _schedule
            if isinstance(command, SendToCharger):
                if command.text.startswith("[2,"):
                    self._core_call(command.text, refused)
                    continue
                if self._captured:
                    unique_id = _answer_id(command.text)
                    captured = self._captured.pop(unique_id, None) if unique_id is not None else None
                    if captured is not None:
                        self._compare(captured[0], captured[1], command.text)
                        continue
                self._out.append(command)
            elif isinstance(command, CloseCharger) and self.mode != "translate":
                self._emit("route.close_suppressed", reason=command.reason, mode=self.mode)
            elif isinstance(command, Emit) and self.mode != "translate":
                self._out.append(self._route_emit(command))
            else:
                self._out.append(command)
        for text in refused:  # the charger is not ours to change on this route: the call fails at once
            self._core(self.core.feed(FrameFromCharger(text, self.now)))

    def _core_call(self, text: str, refused: list[str]) -> None:
        unique_id, action = orjson.loads(text)[1:3]
        if self.mode != "translate" and action not in READ_ONLY_CHARGER:
            self._emit("route.call_refused", action=action, mode=self.mode)
            refused.append(rpc.serialize(CallError(unique_id, ErrorCode.NOT_SUPPORTED,
                                                   f"{action} is not sent to a charger on a {self.mode} route"),
                                         Version.V16))
            return
        if self.mode == "translate" and self._lane.busy is None:
            self._out.append(SendToCharger(text))  # its own lane keeps one call at a time
            return
        self._send_next(self._lane.submit(unique_id, text, self.now, self.timeout))

    def _route_emit(self, emit: Emit) -> Emit:
        """What the translating session reports, seen from a route where it does not answer the charger."""
        if emit.kind == "upstream.lost" and self._links is not None and not self._links.csms:
            return Emit("route.link_released", {**emit.fields, "link": "csms"})  # not needed here: not an outage
        self._difference(emit)
        return emit

    def _difference(self, emit: Emit) -> None:
        fields = emit.fields
        kind = emit.kind
        if kind == "call.timeout" and fields.get("side") == "csms":
            self._differ("timeout", action=fields.get("action"))
        elif kind == "frame.invalid" and fields.get("side") == "csms":
            self._differ("schema_error", action=fields.get("action"), detail=fields.get("detail"))
        elif kind == "transaction.deauthorized" or (kind in ("queue.retry", "queue.refused")
                                                    and fields.get("action") == "TransactionEvent"):
            self._differ("transaction_rejected", transaction_id=fields.get("transaction_id"),
                               detail=fields.get("status") or fields.get("error"))

    # --- owed StopTransactions --------------------------------------------------------------------------------

    def _pump_backlog(self) -> None:
        backlog = self.core.meta.legacy_backlog
        if not backlog or not self.legacy_up or self._backlog_id is not None or not self.core.started:
            return
        self._backlog_id = self.new_id()
        self._backlog_deadline = self.now + self.timeout
        item = backlog[0]
        self._out.append(SendToLegacy(rpc.serialize(Call(self._backlog_id, item["action"], item["payload"]),
                                                    Version.V16)))
        self._emit("legacy.owed_sent", action=item["action"], transaction_id=item["payload"].get("transactionId"))

    def _backlog_answered(self, frame: CallResult | CallError) -> None:
        self._backlog_id = None
        if isinstance(frame, CallError):  # the old system will never take it: not worth blocking the rest
            self._emit("legacy.owed_refused", code=frame.code.value, detail=frame.description)

        def done() -> None:
            self.core.meta.legacy_backlog.pop(0)
            self.core.persist(self.core.meta)

        self._core(self.core.apply(self.now, done))

    # --- time, links, route changes ---------------------------------------------------------------------------

    def _expire(self) -> None:
        for unique_id in [k for k, f in self._forwarded.items() if f.deadline <= self.now]:
            del self._forwarded[unique_id]  # the charger timed out long ago; a late answer is a stray
            if self.mode == "shadow":
                self._differ("legacy_timeout", message_id=unique_id)
        busy = self._lane.busy
        text = self._lane.expire(self.now, self.timeout)
        if busy is not None and self._lane.busy != busy:
            self._legacy_calls.pop(busy[0], None)
        self._send_next(text)
        if self._backlog_id is not None and self._backlog_deadline <= self.now:
            self._backlog_id = None  # sent again below

    def _schedule(self) -> None:
        """One wake-up for the translating session's timers and this session's own deadlines."""
        wake = [f.deadline for f in self._forwarded.values()]
        wake += [t for t in (self.core.wakeup, self._lane.busy[1] if self._lane.busy else None,
                             self._backlog_deadline if self._backlog_id else None,
                             self._hold_until if self._held else None) if t is not None]
        at = min(wake) if wake else None
        if at is not None and at != self._wakeup:
            self._out.append(ScheduleWakeup(at))
        self._wakeup = at

    def _legacy_lost(self) -> None:
        self.legacy_up = False
        self._backlog_id = None
        self._forwarded.clear()
        if self.mode in ("legacy", "shadow"):  # the old system was answering for the charger: it must reconnect
            self._emit("legacy.lost", mode=self.mode)
            self._out.append(CloseCharger(1001, "central system connection closed"))

    def _route_changed(self, mode: str) -> None:
        if mode not in MODES or mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        self._emit("route.changed", previous=previous, mode=mode,
                   open_transactions=len(self.core.ledger.open_transactions()), queue=len(self.core.outbox))
        self.report.shadow_since = self.now if mode == "shadow" else None
        if mode == "translate":
            if not self.core.upstream_up:
                self._core(self.core.apply(self.now, self.core.arm_grace))
        else:
            self.core.disarm_grace()
        self._core(self.core.apply(self.now, lambda: None))  # pump the queue toward the new CSMS if it can

    def wanted_links(self) -> Links:
        core, meta = self.core, self.core.meta
        csms = self.mode != "legacy" or bool(core.ledger.open_transactions()) or bool(core.outbox.items) \
            or not core.idle
        legacy = self.mode != "translate" or bool(meta.legacy_open) or bool(meta.legacy_backlog) \
            or bool(self._legacy_calls) or bool(self._forwarded)
        return Links(csms=csms, legacy=legacy)

    def _update_links(self) -> None:
        if not self.core.started:
            return
        links = self.wanted_links()
        if links != self._links:
            self._links = links
            self._out.append(links)

    # --- small helpers ------------------------------------------------------------------------------------------

    def _differ(self, kind: str, **detail: Any) -> None:
        """A difference between the two central systems: in the report, and as ``shadow.<kind>`` (log + metric)."""
        self.report.record(self.now, kind, **detail)
        self._emit(f"shadow.{kind}", matters=kind in MATTERING, **detail)

    def _send_charger(self, frame: rpc.Frame) -> None:
        self._out.append(SendToCharger(rpc.serialize(frame, Version.V16)))

    def _emit(self, kind: str, **fields: Any) -> None:
        self._out.append(Emit(kind, {"identity": self.identity, **fields}))


def _text(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode("utf-8", "replace")


def _answer_id(text: str) -> str | None:
    """The messageId of a CALLRESULT/CALLERROR the bridge serialized itself."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return frame[1] if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) else None


def _peek_call(text: str | bytes) -> tuple[str, str] | None:
    """(messageId, action) when ``text`` is a well-formed CALL; anything else goes to the translating session,
    which answers broken frames itself."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2 and isinstance(frame[1], str) \
            and isinstance(frame[2], str) and 0 < len(frame[1]) <= 36:
        return frame[1], frame[2]
    return None


__all__ = ["MATTERING", "MODES", "READ_ONLY_CHARGER", "READ_ONLY_CSMS", "RoutedSession", "ShadowReport"]
