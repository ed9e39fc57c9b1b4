"""The session of a charger that already speaks 2.0.1 / 2.1: validated, never translated.

Why this exists: one endpoint serves a mixed fleet during a migration. A 2.x charger's frames go to the same
CSMS under the same subprotocol, byte for byte, but they still get the bridge's guard: every frame in either
direction is parsed and validated, and an invalid one is answered with a CALLERROR and not forwarded.
Answers are validated against the schema of the call they answer, so each side's outstanding calls are tracked.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from . import rpc, validate
from .events import (
    Command,
    Emit,
    Event,
    FrameFromCharger,
    FrameFromCsms,
    SendToCharger,
    SendToCsms,
    SessionStarted,
)
from .rpc import Call, CallError, CallResult, ErrorCode, Version

MAX_TRACKED_CALLS: Final = 64  # a peer that never answers cannot grow the bookkeeping without bound


class _Side:
    """One direction: who sends, how to reach the other peer, and the calls it has open toward it."""

    def __init__(self, name: str, deliver: type[SendToCharger] | type[SendToCsms],
                 answer: type[SendToCharger] | type[SendToCsms]) -> None:
        self.name = name
        self.deliver = deliver  # command that carries this side's frames to the other peer
        self.answer = answer  # command that carries the bridge's own answer back to this side
        self.open_calls: OrderedDict[str, str] = OrderedDict()  # messageId -> action, sent by this side

    def track(self, unique_id: str, action: str) -> None:
        self.open_calls[unique_id] = action
        while len(self.open_calls) > MAX_TRACKED_CALLS:
            self.open_calls.popitem(last=False)


class PassthroughSession:
    def __init__(self, identity: str, version: Version) -> None:
        self.identity = identity
        self.version = version
        self.charger = _Side("charger", SendToCsms, SendToCharger)
        self.csms = _Side("csms", SendToCharger, SendToCsms)
        self._out: list[Command] = []

    def feed(self, event: Event) -> list[Command]:
        if isinstance(event, FrameFromCharger):
            self._frame(event.text, self.charger, self.csms)
        elif isinstance(event, FrameFromCsms):
            self._frame(event.text, self.csms, self.charger)
        elif not isinstance(event, SessionStarted):
            pass  # ticks: nothing times out here, each peer keeps its own timers
        out, self._out = self._out, []
        return out

    def _frame(self, text: str | bytes, sender: _Side, peer: _Side) -> None:
        try:
            frame = rpc.parse(text, self.version)
        except rpc.FrameError as exc:
            self._refuse(sender, exc.unique_id, exc.code, exc.description)
            return
        except rpc.UnknownMessageType as exc:
            self._emit("frame.ignored", side=sender.name, detail=str(exc))
            if self.version is Version.V201:  # 2.0.1 Part 4 §4.4; 2.1 says ignore
                self._refuse(sender, exc.unique_id, ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED, str(exc))
            return
        if isinstance(frame, Call | rpc.Send):
            self._request(text, frame, sender)
        elif isinstance(frame, CallResult | CallError | rpc.CallResultError):
            self._response(text, frame, sender, peer)

    def _request(self, text: str | bytes, frame: Call | rpc.Send, sender: _Side) -> None:
        violation = validate.check(self.version, frame.action, frame.payload, response=False)
        if violation is not None:
            if isinstance(frame, Call):
                self._refuse(sender, frame.unique_id, violation.code, violation.message)
            else:
                self._emit("frame.invalid", side=sender.name, action=frame.action, detail=violation.message)
            return
        if isinstance(frame, Call):
            sender.track(frame.unique_id, frame.action)
        self._out.append(sender.deliver(_text(text)))

    def _response(self, text: str | bytes, frame: CallResult | CallError | rpc.CallResultError,
                  sender: _Side, peer: _Side) -> None:
        if isinstance(frame, rpc.CallResultError):  # about a CALLRESULT the peer sent earlier; pass it on
            self._out.append(sender.deliver(_text(text)))
            return
        action = peer.open_calls.pop(frame.unique_id, None)
        if action is None:
            self._emit("frame.stray", side=sender.name, message_id=frame.unique_id)
            return
        if isinstance(frame, CallResult):
            violation = validate.check(self.version, action, frame.payload, response=True)
            if violation is not None:
                self._emit("frame.invalid", side=sender.name, action=action, detail=violation.message)
                # The caller still gets an answer it can act on, never the invalid payload.
                error = CallError(frame.unique_id, ErrorCode.INTERNAL_ERROR,
                                  f"the {sender.name} answered {action} with an invalid payload")
                self._out.append(sender.deliver(rpc.serialize(error, self.version)))
                return
        self._out.append(sender.deliver(_text(text)))

    def _refuse(self, sender: _Side, unique_id: str, code: ErrorCode, description: str) -> None:
        self._emit("frame.invalid", side=sender.name, code=code.value, detail=description)
        self._out.append(sender.answer(rpc.serialize(CallError(unique_id, code, description), self.version)))

    def _emit(self, kind: str, **fields: object) -> None:
        self._out.append(Emit(kind, {"identity": self.identity, **fields}))


def _text(text: str | bytes) -> str:
    return text if isinstance(text, str) else text.decode("utf-8", "replace")
