"""The per-connection state machine of a translated (1.6-J charger <-> 2.0.1/2.1 CSMS) session.

Why this exists: it is the one place where a frame from either peer becomes commands. It parses and validates
every frame (both directions, DESIGN.md convention 6: a bad frame yields a CALLERROR, never an exception),
dispatches calls to the translation handlers registered in ``translate/``, runs their follow-up calls through
the two :class:`~.lanes.Lane` objects, and turns late or missing answers into timeouts. Handlers see the small
API below (``reply_*``, ``fail_*``, ``call_*``, ``persist``, ``emit``) and nothing of the wire.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import Any

from . import rpc, validate
from .events import (
    CloseCharger,
    Command,
    Emit,
    Event,
    ExchangeDone,
    FrameFromCharger,
    FrameFromCsms,
    Persist,
    PersistFailed,
    ScheduleWakeup,
    SendToCharger,
    SendToCsms,
    SessionStarted,
    Tick,
    UpstreamConnected,
    UpstreamLost,
)
from .lanes import Continuation, Lane, Outcome, Pending
from .ledger import Ledger
from .outbox import Outbox
from .rpc import Call, CallError, CallResult, ErrorCode, Version
from .settings import CoreSettings
from .state import ChargerMeta, QueuedMessage, Record, TxRecord
from .translate import CHARGER_ROUTES, CSMS_ROUTES, START_HOOKS

Origin = tuple[str, Call] | None
_GRACE_TIMER = "outage.grace"
MAX_WAITING_CALLS = 16  # held CALLs per side before further ones are refused
_V16 = Version.V16.value  # the charger side's protocol name, in every exchange record


def _failure_outcome(code: ErrorCode) -> str:
    return "refused" if code in (ErrorCode.NOT_SUPPORTED, ErrorCode.NOT_IMPLEMENTED) else "failed"


def _record_key(record: Record) -> tuple[str, int]:
    if isinstance(record, TxRecord):
        return ("tx", record.local_id)
    if isinstance(record, QueuedMessage):
        return ("queue", record.seq)
    return ("meta", 0)  # ("charger" | "csms", the call that started this exchange)


class _Write:
    """The records one write of the event being handled will hold, by record; a Persist when the event ends."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], Record] = {}


def _only_deliveries(records: tuple[Record, ...]) -> bool:
    """Whether a write only deletes delivered queued messages: no answer or send depends on it."""
    for record in records:  # noqa: SIM110 (a loop, not all(<generator>): it runs for every write, hot path)
        if type(record) is not QueuedMessage or not record.delivered:
            return False
    return True


class TranslatingSession:
    """Feed :mod:`.events`; get :mod:`.events` commands back. One instance per charger connection."""

    def __init__(self, identity: str, upstream: Version, settings: CoreSettings,
                 new_id: Callable[[], str]) -> None:
        self.identity = identity
        self.upstream = upstream
        self.settings = settings
        self.new_id = new_id
        self.now = 0.0
        self.meta = ChargerMeta(identity)
        self.ledger = Ledger(identity, ())
        self.to_csms = Lane("csms", settings.call_timeout, self._send_csms_call)
        self.to_charger = Lane("charger", settings.call_timeout, self._send_charger_call)
        self._charger_calls: dict[str, Call] = {}  # charger CALLs not answered yet
        self._waiting_charger: deque[Call] = deque()  # CALLs a charger sent without waiting (held, in order)
        self._waiting_csms: deque[Call] = deque()
        self._csms_calls: dict[str, Call] = {}  # CSMS CALLs not answered yet
        self._origin: Origin = None
        # (side, messageId) -> (arrival time, [(peer messageId, peer action)]) of CALLs being handled
        self._exchanges: dict[tuple[str, str], tuple[float, list[tuple[str, str]]]] = {}
        self._out: list[Command | _Write] = []
        self._dirty: dict[tuple[str, int], Record] = {}  # records the store refused, written again next time
        self.upstream_up = True  # a session starts with its upstream connection open (opened in the handshake)
        self.outbox = Outbox(self)
        self._wakeup: float | None = None
        self._timers: dict[str, tuple[float, Callable[[], None]]] = {}  # name -> (due time, what to run)
        self.started = False
        # charger messageId of a StartTransaction -> the 1.6 transactionId its authoritative central system gave
        # (a shadow route feeds the start after the old system answered it, issue 8)
        self.assigned_ids: dict[str, int] = {}
        self.max_waiting_calls = MAX_WAITING_CALLS

    # --- the event interface ----------------------------------------------------------------------

    def feed(self, event: Event) -> list[Command]:
        self.now = event.now
        if isinstance(event, SessionStarted):
            self.meta = event.state.meta
            self.ledger = Ledger(self.identity, event.state.transactions)
            self.outbox.load(event.state.queue)
            self.started = True
            for hook in START_HOOKS:
                self._guarded(None, functools.partial(hook, self))
            if self.outbox.items:
                self.emit("queue.replay", depth=len(self.outbox))
            self._guarded(None, self.outbox.pump)
        elif not self.started:
            self.emit("bug", detail=f"{type(event).__name__} before SessionStarted")
        elif isinstance(event, FrameFromCharger):
            self._frame_from_charger(event.text)
        elif isinstance(event, FrameFromCsms):
            self._frame_from_csms(event.text)
        elif isinstance(event, Tick):
            self._expire()
            self._run_timers()
        elif isinstance(event, UpstreamLost):
            self._upstream_lost()
        elif isinstance(event, UpstreamConnected):
            self._upstream_connected()
        elif isinstance(event, PersistFailed):
            for record in event.records:
                self._dirty[_record_key(record)] = record
        return self._finish()

    def apply(self, now: float, step: Callable[[], None]) -> list[Command]:
        """Run ``step`` (code that changes this session's state, e.g. a routed session's bookkeeping) as if it
        were an event: its writes and calls come out as commands, in order, like those of :meth:`feed`."""
        self.now = now
        self._guarded(None, step)
        return self._finish()

    def _finish(self) -> list[Command]:
        if self.started:
            self._next_waiting()  # held CALLs whose turn has come
            # what this event queued goes out after its one store write (and the charger's answer)
            self._guarded(None, self.outbox.pump)
        self._schedule()
        out, self._out = self._out, []
        commands: list[Command] = []
        for command in out:
            if isinstance(command, _Write):  # immutable copies of what this event wrote, taken once
                records = tuple([record.snapshot() for record in command.records.values()])
                commands.append(Persist(records, wait=not _only_deliveries(records)))
            else:
                commands.append(command)
        return commands

    # --- the handler API ----------------------------------------------------------------------------

    def reply_charger(self, call: Call, payload: dict[str, Any]) -> None:
        if self._charger_calls.pop(call.unique_id, None) is None:
            return  # already answered (e.g. failed by a timeout); never answer twice
        if self._output_invalid(Version.V16, call.action, payload, response=True):
            self._send_charger(CallError(call.unique_id, ErrorCode.INTERNAL_ERROR, "bridge produced an invalid answer"))
            self._exchange_done("charger", call, "failed")
            return
        self._send_charger(CallResult(call.unique_id, payload))
        self._exchange_done("charger", call, None)

    def fail_charger(self, call: Call, code: ErrorCode, description: str) -> None:
        if self._charger_calls.pop(call.unique_id, None) is not None:
            self._send_charger(CallError(call.unique_id, code, description))
            self._exchange_done("charger", call, _failure_outcome(code))

    def reply_csms(self, call: Call, payload: dict[str, Any]) -> None:
        if self._csms_calls.pop(call.unique_id, None) is None:
            return
        if self._output_invalid(self.upstream, call.action, payload, response=True):
            self._send_csms(CallError(call.unique_id, ErrorCode.INTERNAL_ERROR, "bridge produced an invalid answer"))
            self._exchange_done("csms", call, "failed")
            return
        self._send_csms(CallResult(call.unique_id, payload))
        self._exchange_done("csms", call, None)

    def fail_csms(self, call: Call, code: ErrorCode, description: str) -> None:
        if self._csms_calls.pop(call.unique_id, None) is not None:
            self._send_csms(CallError(call.unique_id, code, description))
            self._exchange_done("csms", call, _failure_outcome(code))

    def _exchange_done(self, side: str, call: Call, outcome: str | None) -> None:
        """One :class:`ExchangeDone` per answered CALL: both sides' message ids, outcome, start and end."""
        started, peers = self._exchanges.pop((side, call.unique_id), (self.now, []))
        version, other = (_V16, self.upstream.value) if side == "charger" else (self.upstream.value, _V16)
        self._out.append(ExchangeDone(self.identity, side, call.action, call.unique_id, tuple(peers),
                                      outcome or ("translated" if peers else "synthesized"), version, other,
                                      started, self.now))

    def relay_failure(self, call: Call, outcome: Outcome, to: str) -> None:
        """Answer ``call`` (from ``to``) with the error the other peer gave; the code is respelled for ``to``."""
        error = outcome.error or CallError("", ErrorCode.INTERNAL_ERROR, "no answer")
        if to == "charger":
            self.fail_charger(call, error.code, error.description)
        else:
            self.fail_csms(call, error.code, error.description)

    def call_csms(self, action: str, payload: dict[str, Any], then: Continuation) -> None:
        if not self.upstream_up:
            then(Outcome(error=CallError("", ErrorCode.GENERIC_ERROR, "the CSMS is unreachable")))
            return
        if self._output_invalid(self.upstream, action, payload, response=False):
            then(Outcome(error=CallError("", ErrorCode.INTERNAL_ERROR, f"bridge produced an invalid {action}")))
            return
        self.to_csms.submit(self._pending(action, payload, then), self.now)

    def call_charger(self, action: str, payload: dict[str, Any], then: Continuation) -> None:
        if self._output_invalid(Version.V16, action, payload, response=False):
            then(Outcome(error=CallError("", ErrorCode.INTERNAL_ERROR, f"bridge produced an invalid {action}")))
            return
        self.to_charger.submit(self._pending(action, payload, then), self.now)

    @property
    def idle(self) -> bool:
        """No call in flight in either direction (what a graceful shutdown waits for)."""
        return not self._charger_calls and not self._csms_calls and self.to_csms.busy is None \
            and self.to_charger.busy is None

    @property
    def wakeup(self) -> float | None:
        """When this session next needs a Tick (its last ScheduleWakeup), if at all."""
        return self._wakeup

    def reconfigure(self, settings: CoreSettings) -> None:
        """New settings for a running session (SIGHUP): mappings, timeouts, policies; nothing is interrupted."""
        self.settings = settings
        self.to_csms.timeout = self.to_charger.timeout = settings.call_timeout

    def set_timer(self, name: str, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` at epoch time ``at`` (a Tick at or after it); a timer with the same name is replaced."""
        self._timers[name] = (at, action)

    def cancel_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def persist(self, *records: Record) -> None:
        """Write ``records`` before the commands that follow. Adjacent writes merge into one atomic write, and
        records the store refused earlier ride along (in their current version) until a write succeeds."""
        out = self._out
        index = len(out)
        while index and type(out[index - 1]) is Emit:  # log lines do not separate two writes
            index -= 1
        write = out[index - 1] if index else None
        if type(write) is _Write:
            if index != len(out):  # the merged write goes after those log lines, as a new one would
                del out[index - 1]
                out.append(write)
        else:
            write = _Write()
            out.append(write)
        merged = write.records
        if self._dirty:
            for key, old in self._dirty.items():
                merged[key] = self._current(key, old)
            self._dirty.clear()
        for record in records:
            merged[_record_key(record)] = record  # live records: frozen once, at the end of the event

    def _current(self, key: tuple[str, int], old: Record) -> Record:
        kind, number = key
        if kind == "meta":
            return self.meta
        if kind == "tx":
            return self.ledger.get(number) or old
        return next((q for q in self.outbox.items if q.seq == number), old)

    @property
    def offline(self) -> bool:
        return not self.upstream_up

    def emit(self, kind: str, **fields: Any) -> None:
        self._out.append(Emit(kind, {"identity": self.identity, **fields}))

    # --- frames from the charger -----------------------------------------------------------------

    def _frame_from_charger(self, text: str | bytes) -> None:
        try:
            frame = rpc.parse(text, Version.V16)
        except rpc.FrameError as exc:
            self.emit("frame.invalid", side="charger", code=exc.code.value, detail=exc.description)
            self._send_charger(CallError(exc.unique_id, exc.code, exc.description))
            return
        except rpc.UnknownMessageType as exc:  # 1.6-J §4.1.3: ignore unknown message types
            self.emit("frame.ignored", side="charger", detail=str(exc))
            return
        if isinstance(frame, Call):
            self._charger_call(frame)
        elif isinstance(frame, CallResult | CallError):
            self._answer(self.to_charger, frame, Version.V16, "charger")

    def _charger_call(self, call: Call) -> None:
        if call.unique_id in self._charger_calls or (
                self._waiting_charger and any(c.unique_id == call.unique_id for c in self._waiting_charger)):
            self._send_charger(CallError(call.unique_id, ErrorCode.PROTOCOL_ERROR,
                                         "a call with this messageId is being handled already"))
            return
        if self._charger_calls:  # OCPP-J §4.1.1: one CALL at a time; a peer that does not wait is queued
            self._hold(call, self._waiting_charger, self._send_charger, ErrorCode.PROTOCOL_ERROR)
            return
        violation = validate.check(Version.V16, call.action, call.payload, response=False)
        if violation is not None:
            self.emit("frame.invalid", side="charger", action=call.action, code=violation.code.value,
                      detail=violation.message)
            self._send_charger(CallError(call.unique_id, violation.code, violation.message))
            self._exchange_done("charger", call, "invalid")
            return
        self._charger_calls[call.unique_id] = call
        self._exchanges[("charger", call.unique_id)] = (self.now, [])
        route = CHARGER_ROUTES.get(call.action)
        if route is None:
            self.fail_charger(call, ErrorCode.NOT_SUPPORTED, f"{call.action} is not supported by this bridge")
            return
        self._guarded(("charger", call), lambda: route.handler(self, call))

    # --- frames from the CSMS ---------------------------------------------------------------------

    def _frame_from_csms(self, text: str | bytes) -> None:
        try:
            frame = rpc.parse(text, self.upstream)
        except rpc.FrameError as exc:
            self.emit("frame.invalid", side="csms", code=exc.code.value, detail=exc.description)
            self._send_csms(CallError(exc.unique_id, exc.code, exc.description))
            return
        except rpc.UnknownMessageType as exc:
            self.emit("frame.ignored", side="csms", detail=str(exc))
            if self.upstream is Version.V201:  # 2.0.1 Part 4 §4.4 (2.1 says ignore)
                self._send_csms(CallError(exc.unique_id, ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, str(exc)))
            return
        if isinstance(frame, Call):
            self._csms_call(frame)
        elif isinstance(frame, CallResult | CallError):
            self._answer(self.to_csms, frame, self.upstream, "csms")
        elif isinstance(frame, rpc.CallResultError):
            self.emit("csms.rejected_result", message_id=frame.unique_id, code=frame.code.value,
                      detail=frame.description)
        else:  # SEND: the CSMS never sends one to a station in 2.1; nothing to answer (21P4 §4.2.4)
            self.emit("frame.ignored", side="csms", detail=f"SEND {frame.action}")

    def _csms_call(self, call: Call) -> None:
        if call.unique_id in self._csms_calls or (
                self._waiting_csms and any(c.unique_id == call.unique_id for c in self._waiting_csms)):
            self._send_csms(CallError(call.unique_id, ErrorCode.RPC_FRAMEWORK_ERROR,
                                      "a call with this messageId is being handled already"))
            return
        if self._csms_calls:  # 2.0.1 Part 4 §4.1.1: one CALL at a time; the rest waits its turn, bounded
            self._hold(call, self._waiting_csms, self._send_csms, ErrorCode.GENERIC_ERROR)
            return
        violation = validate.check(self.upstream, call.action, call.payload, response=False)
        if violation is not None:
            self.emit("frame.invalid", side="csms", action=call.action, code=violation.code.value,
                      detail=violation.message)
            self._send_csms(CallError(call.unique_id, violation.code, violation.message))
            self._exchange_done("csms", call, "invalid")
            return
        self._csms_calls[call.unique_id] = call
        self._exchanges[("csms", call.unique_id)] = (self.now, [])
        route = CSMS_ROUTES.get(call.action)
        if route is None:
            self.fail_csms(call, ErrorCode.NOT_SUPPORTED, f"{call.action} cannot be carried to an OCPP 1.6 charger")
            return
        self._guarded(("csms", call), lambda: route.handler(self, call))

    # --- answers, timeouts and safety --------------------------------------------------------------

    def _answer(self, lane: Lane, frame: CallResult | CallError, version: Version, side: str) -> None:
        pending = lane.answer(frame.unique_id, self.now)
        if pending is None:
            self.emit("frame.stray", side=side, message_id=frame.unique_id)
            return
        if isinstance(frame, CallError):
            outcome = Outcome(error=frame)
        else:
            violation = validate.check(version, pending.action, frame.payload, response=True)
            if violation is not None:
                self.emit("frame.invalid", side=side, action=pending.action, code=violation.code.value,
                          detail=violation.message)
                if version is Version.V21:  # 21P4 §4.2.3: tell the CSMS its CALLRESULT was unusable
                    self._send_csms(rpc.CallResultError(frame.unique_id, violation.code, violation.message))
                outcome = Outcome(error=CallError(frame.unique_id, ErrorCode.INTERNAL_ERROR,
                                                  f"{side} answered {pending.action} with an invalid payload"))
            else:
                outcome = Outcome(payload=frame.payload)
        self._continue(pending, outcome)
        lane.advance(self.now)

    def _expire(self) -> None:
        for lane, side in ((self.to_csms, "CSMS"), (self.to_charger, "charger")):
            pending = lane.expire(self.now)
            if pending is None:
                continue
            self.emit("call.timeout", side=side.lower(), action=pending.action, message_id=pending.unique_id)
            error = CallError(pending.unique_id, ErrorCode.INTERNAL_ERROR,
                              f"the {side} did not answer {pending.action} within {lane.timeout:g} s")
            self._continue(pending, Outcome(error=error, timed_out=True))
            lane.advance(self.now)

    def _hold(self, call: Call, waiting: deque[Call], send: Callable[[rpc.Frame], None], code: ErrorCode) -> None:
        if len(waiting) >= self.max_waiting_calls:
            self.emit("frame.refused", action=call.action, detail="too many calls without waiting for answers")
            send(CallError(call.unique_id, code, "too many outstanding calls: wait for each answer"))
            return
        waiting.append(call)

    def _next_waiting(self) -> None:
        """Take the next held CALL of a side once its previous one has been answered."""
        while not self._charger_calls and self._waiting_charger:
            self._charger_call(self._waiting_charger.popleft())
        while not self._csms_calls and self._waiting_csms:
            self._csms_call(self._waiting_csms.popleft())

    def _upstream_lost(self) -> None:
        if not self.upstream_up:
            return
        self.upstream_up = False
        self.outbox.upstream_lost()
        self.emit("upstream.lost", queue=len(self.outbox))
        lost = CallError("", ErrorCode.GENERIC_ERROR, "the CSMS connection was lost")
        for pending in self.to_csms.drain():
            self._continue(pending, Outcome(error=lost))
        self.arm_grace()

    def arm_grace(self) -> None:
        """The CSMS is unreachable while it answers for the charger: ride through for a while, or close now."""
        if self.settings.outage_mode == "close":
            self._give_up("CSMS connection lost")
        else:
            self.set_timer(_GRACE_TIMER, self.now + self.settings.outage_grace,
                           lambda: self._give_up("CSMS unreachable for longer than the grace window"))

    def disarm_grace(self) -> None:
        """Another central system answers for the charger (a legacy or shadow route): no outage to end."""
        self.cancel_timer(_GRACE_TIMER)

    def _upstream_connected(self) -> None:
        self.upstream_up = True
        self.cancel_timer(_GRACE_TIMER)
        self.emit("upstream.restored", queue=len(self.outbox))
        self.outbox.pump()

    def end_ride_through(self, reason: str) -> None:
        """Close the charger at once (after the answers of the current event): the outage lasts too long."""
        self.set_timer(_GRACE_TIMER, self.now, lambda: self._give_up(reason))

    def _give_up(self, reason: str) -> None:
        """OCPP-J §6.3 (Local Controller): close the charger so it queues for itself; the queue stays stored."""
        self.emit("outage.closing_charger", reason=reason, queue=len(self.outbox))
        self._out.append(CloseCharger(1001, reason[:120]))

    def _continue(self, pending: Pending, outcome: Outcome) -> None:
        self._guarded(pending.origin, lambda: pending.then(outcome))

    def _guarded(self, origin: Origin, step: Callable[[], None]) -> None:
        """Run handler code; a bug in it fails the exchange with InternalError instead of escaping the core."""
        previous, self._origin = self._origin, origin
        try:
            step()
        except Exception as exc:
            self.emit("bug", error=f"{type(exc).__name__}: {exc}"[:300])
            if origin is not None:
                side, call = origin
                fail = self.fail_charger if side == "charger" else self.fail_csms
                fail(call, ErrorCode.INTERNAL_ERROR, "the bridge failed to translate this message")
        finally:
            self._origin = previous

    def _output_invalid(self, version: Version, action: str, payload: dict[str, Any], *, response: bool) -> bool:
        if not self.settings.validate_output:
            return False
        violation = validate.check(version, action, payload, response=response)
        if violation is not None:
            self.emit("bug", detail=f"invalid output to {version.value}: {violation.message}")
            return True
        return False

    # --- wire output -----------------------------------------------------------------------------

    def _pending(self, action: str, payload: dict[str, Any], then: Continuation) -> Pending:
        pending = Pending(self.new_id(), action, payload, then, origin=self._origin)
        self.note_peer(pending.unique_id, action)
        return pending

    def note_peer(self, reference: str, action: str) -> None:
        """Link a message sent (or queued) on behalf of the exchange being handled to it, for its trace."""
        if self._origin is not None:
            exchange = self._exchanges.get((self._origin[0], self._origin[1].unique_id))
            if exchange is not None:
                exchange[1].append((reference, action))

    def call_csms_detached(self, action: str, payload: dict[str, Any], then: Continuation) -> None:
        """A call the bridge makes on its own behalf (queued delivery), belonging to no charger exchange."""
        saved, self._origin = self._origin, None
        try:
            self.call_csms(action, payload, then)
        finally:
            self._origin = saved

    def _send_csms_call(self, pending: Pending) -> None:
        self._send_call(pending, self._send_csms)

    def _send_charger_call(self, pending: Pending) -> None:
        self._send_call(pending, self._send_charger)

    def _send_call(self, pending: Pending, send: Callable[[rpc.Frame], None]) -> None:
        # A lane sends queued calls outside any handler (after the previous answer), so a payload that cannot
        # be serialized must not raise here: the call expires at the next Tick and its continuation runs then.
        try:
            send(Call(pending.unique_id, pending.action, pending.payload))
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            self.emit("bug", detail=f"cannot serialize {pending.action}: {exc}"[:300])
            pending.deadline = self.now

    def _send_charger(self, frame: rpc.Frame) -> None:
        self._out.append(SendToCharger(self._serialize(frame, Version.V16)))

    def _send_csms(self, frame: rpc.Frame) -> None:
        self._out.append(SendToCsms(self._serialize(frame, self.upstream)))

    def _serialize(self, frame: rpc.Frame, version: Version) -> str:
        """An answer is always sent: one that cannot be encoded (an integer over 64 bits, nesting deeper than
        the encoder allows) becomes an InternalError for the same call. A CALL raises to :meth:`_send_call`."""
        try:
            return rpc.serialize(frame, version)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            if isinstance(frame, Call | rpc.Send):
                raise
            self.emit("bug", detail=f"cannot serialize an answer: {exc}"[:300])
            return rpc.serialize(CallError(frame.unique_id, ErrorCode.INTERNAL_ERROR,
                                           "the bridge produced an answer it cannot encode"), version)

    def _run_timers(self) -> None:
        due = sorted((at, name) for name, (at, _) in self._timers.items() if at <= self.now)
        for _, name in due:
            entry = self._timers.pop(name, None)
            if entry is not None:
                self._guarded(None, entry[1])

    def _schedule(self) -> None:
        wakeup = self.to_csms.deadline()
        other = self.to_charger.deadline()
        if other is not None and (wakeup is None or other < wakeup):
            wakeup = other
        if self._timers:
            first = min(at for at, _ in self._timers.values())
            if wakeup is None or first < wakeup:
                wakeup = first
        if wakeup is not None and wakeup != self._wakeup:
            self._out.append(ScheduleWakeup(wakeup))
        self._wakeup = wakeup

