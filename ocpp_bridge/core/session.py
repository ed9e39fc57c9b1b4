"""The per-connection state machine of a translated (1.6-J charger <-> 2.0.1/2.1 CSMS) session.

Why this exists: it is the one place where a frame from either peer becomes commands. It parses and validates
every frame (both directions, DESIGN.md convention 6: a bad frame yields a CALLERROR, never an exception),
dispatches calls to the translation handlers registered in ``translate/``, runs their follow-up calls through
the two :class:`~.lanes.Lane` objects, and turns late or missing answers into timeouts. Handlers see the small
API below (``reply_*``, ``fail_*``, ``call_*``, ``persist``, ``emit``) and nothing of the wire.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import rpc, validate
from .events import (
    Command,
    Emit,
    Event,
    FrameFromCharger,
    FrameFromCsms,
    Persist,
    ScheduleWakeup,
    SendToCharger,
    SendToCsms,
    SessionStarted,
    Tick,
)
from .lanes import Continuation, Lane, Outcome, Pending
from .ledger import Ledger
from .rpc import Call, CallError, CallResult, ErrorCode, Version
from .settings import CoreSettings
from .state import ChargerMeta, Record
from .translate import CHARGER_ROUTES, CSMS_ROUTES, START_HOOKS

Origin = tuple[str, Call] | None  # ("charger" | "csms", the call that started this exchange)


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
        self._csms_calls: dict[str, Call] = {}  # CSMS CALLs not answered yet
        self._origin: Origin = None
        self.auth_decisions: dict[str, dict[str, Any]] = {}  # idTag -> idTagInfo the CSMS gave this session
        self._out: list[Command] = []
        self._wakeup: float | None = None
        self._timers: dict[str, tuple[float, Callable[[], None]]] = {}  # name -> (due time, what to run)
        self.started = False

    # --- the event interface ----------------------------------------------------------------------

    def feed(self, event: Event) -> list[Command]:
        self.now = event.now
        if isinstance(event, SessionStarted):
            self.meta = event.state.meta
            self.ledger = Ledger(self.identity, event.state.transactions)
            self.started = True
            for hook in START_HOOKS:
                self._guarded(None, functools.partial(hook, self))
        elif not self.started:
            self.emit("bug", detail=f"{type(event).__name__} before SessionStarted")
        elif isinstance(event, FrameFromCharger):
            self._frame_from_charger(event.text)
        elif isinstance(event, FrameFromCsms):
            self._frame_from_csms(event.text)
        elif isinstance(event, Tick):
            self._expire()
            self._run_timers()
        self._schedule()
        out, self._out = self._out, []
        return out

    # --- the handler API ----------------------------------------------------------------------------

    def reply_charger(self, call: Call, payload: dict[str, Any]) -> None:
        if self._charger_calls.pop(call.unique_id, None) is None:
            return  # already answered (e.g. failed by a timeout); never answer twice
        if self._output_invalid(Version.V16, call.action, payload, response=True):
            self._send_charger(CallError(call.unique_id, ErrorCode.INTERNAL_ERROR, "bridge produced an invalid answer"))
            return
        self._send_charger(CallResult(call.unique_id, payload))

    def fail_charger(self, call: Call, code: ErrorCode, description: str) -> None:
        if self._charger_calls.pop(call.unique_id, None) is not None:
            self._send_charger(CallError(call.unique_id, code, description))

    def reply_csms(self, call: Call, payload: dict[str, Any]) -> None:
        if self._csms_calls.pop(call.unique_id, None) is None:
            return
        if self._output_invalid(self.upstream, call.action, payload, response=True):
            self._send_csms(CallError(call.unique_id, ErrorCode.INTERNAL_ERROR, "bridge produced an invalid answer"))
            return
        self._send_csms(CallResult(call.unique_id, payload))

    def fail_csms(self, call: Call, code: ErrorCode, description: str) -> None:
        if self._csms_calls.pop(call.unique_id, None) is not None:
            self._send_csms(CallError(call.unique_id, code, description))

    def relay_failure(self, call: Call, outcome: Outcome, to: str) -> None:
        """Answer ``call`` (from ``to``) with the error the other peer gave; the code is respelled for ``to``."""
        error = outcome.error or CallError("", ErrorCode.INTERNAL_ERROR, "no answer")
        if to == "charger":
            self.fail_charger(call, error.code, error.description)
        else:
            self.fail_csms(call, error.code, error.description)

    def call_csms(self, action: str, payload: dict[str, Any], then: Continuation) -> None:
        if self._output_invalid(self.upstream, action, payload, response=False):
            then(Outcome(error=CallError("", ErrorCode.INTERNAL_ERROR, f"bridge produced an invalid {action}")))
            return
        self.to_csms.submit(self._pending(action, payload, then), self.now)

    def call_charger(self, action: str, payload: dict[str, Any], then: Continuation) -> None:
        if self._output_invalid(Version.V16, action, payload, response=False):
            then(Outcome(error=CallError("", ErrorCode.INTERNAL_ERROR, f"bridge produced an invalid {action}")))
            return
        self.to_charger.submit(self._pending(action, payload, then), self.now)

    def set_timer(self, name: str, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` at epoch time ``at`` (a Tick at or after it); a timer with the same name is replaced."""
        self._timers[name] = (at, action)

    def cancel_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def persist(self, *records: Record) -> None:
        self._out.append(Persist(tuple(r.snapshot() for r in records)))

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
        if call.unique_id in self._charger_calls:
            self._send_charger(CallError(call.unique_id, ErrorCode.PROTOCOL_ERROR,
                                         "a call with this messageId is being handled already"))
            return
        violation = validate.check(Version.V16, call.action, call.payload, response=False)
        if violation is not None:
            self.emit("frame.invalid", side="charger", action=call.action, code=violation.code.value,
                      detail=violation.message)
            self._send_charger(CallError(call.unique_id, violation.code, violation.message))
            return
        self._charger_calls[call.unique_id] = call
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
        if call.unique_id in self._csms_calls:
            self._send_csms(CallError(call.unique_id, ErrorCode.RPC_FRAMEWORK_ERROR,
                                      "a call with this messageId is being handled already"))
            return
        violation = validate.check(self.upstream, call.action, call.payload, response=False)
        if violation is not None:
            self.emit("frame.invalid", side="csms", action=call.action, code=violation.code.value,
                      detail=violation.message)
            self._send_csms(CallError(call.unique_id, violation.code, violation.message))
            return
        self._csms_calls[call.unique_id] = call
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
        return Pending(self.new_id(), action, payload, then, origin=self._origin)

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
        deadlines = [d for d in (self.to_csms.deadline(), self.to_charger.deadline()) if d is not None]
        deadlines.extend(at for at, _ in self._timers.values())
        wakeup = min(deadlines) if deadlines else None
        if wakeup is not None and wakeup != self._wakeup:
            self._out.append(ScheduleWakeup(wakeup))
        self._wakeup = wakeup

