"""One outstanding CALL per direction per connection (OCPP-J 1.6 §4.1.1, 2.0.1 Part 4 §4.1.1).

Why this exists: a translated exchange can need several calls to the other peer (a SetVariables becomes one
ChangeConfiguration per key; a StatusNotification can also yield a TransactionEvent), and the bridge's own calls
share the lane with the peer's. A lane sends one CALL, queues the rest in order, matches the answer by message
id, and expires the outstanding call at its deadline. Stray or late answers are never matched to another call.

The lane is a two-state table (IDLE, BUSY), printable with :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .immutable import immutable
from .rpc import CallError


@immutable
class Outcome:
    """The answer to a call: a CALLRESULT payload, or an error (a CALLERROR, a timeout, an invalid answer)."""

    payload: dict[str, Any] | None = None
    error: CallError | None = None
    timed_out: bool = False  # the peer did not answer within the call timeout

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def result(self) -> dict[str, Any]:
        if self.payload is None:
            raise ValueError("outcome is an error")
        return self.payload


Continuation = Callable[[Outcome], None]


class LaneState(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"


class LaneEvent(enum.Enum):
    SUBMIT = "submit"
    ANSWER = "answer"
    EXPIRE = "expire"


# (state, event) -> next state. SUBMIT while BUSY queues; ANSWER/EXPIRE while IDLE is a stray (dropped).
TRANSITIONS: dict[tuple[LaneState, LaneEvent], LaneState] = {
    (LaneState.IDLE, LaneEvent.SUBMIT): LaneState.BUSY,
    (LaneState.BUSY, LaneEvent.SUBMIT): LaneState.BUSY,
    (LaneState.BUSY, LaneEvent.ANSWER): LaneState.IDLE,  # BUSY again at once if the queue is not empty
    (LaneState.BUSY, LaneEvent.EXPIRE): LaneState.IDLE,
}


@dataclass(slots=True)
class Pending:
    unique_id: str
    action: str
    payload: dict[str, Any]
    then: Continuation
    deadline: float = 0.0
    origin: Any = None  # the exchange this call belongs to, so a failing handler can answer its caller


class Lane:
    """The calls from the bridge to one peer."""

    def __init__(self, name: str, timeout: float, send: Callable[[Pending], None]) -> None:
        self.name = name
        self.timeout = timeout
        self._send = send
        self.busy: Pending | None = None
        self.queue: deque[Pending] = deque()

    @property
    def state(self) -> LaneState:
        return LaneState.BUSY if self.busy is not None else LaneState.IDLE

    def submit(self, pending: Pending, now: float) -> None:
        self.queue.append(pending)
        self._pump(now)

    def _pump(self, now: float) -> None:
        if self.busy is None and self.queue:
            self.busy = self.queue.popleft()
            self.busy.deadline = now + self.timeout
            self._send(self.busy)

    def answer(self, unique_id: str, now: float) -> Pending | None:
        """Take the outstanding call answered by ``unique_id``; ``None`` for a stray answer."""
        if self.busy is None or self.busy.unique_id != unique_id:
            return None
        done, self.busy = self.busy, None
        return done

    def expire(self, now: float) -> Pending | None:
        if self.busy is None or self.busy.deadline > now:
            return None
        done, self.busy = self.busy, None
        return done

    def advance(self, now: float) -> None:
        """Send the next queued call; called after a continuation ran, so its follow-up calls queue in order."""
        self._pump(now)

    def deadline(self) -> float | None:
        return self.busy.deadline if self.busy is not None else None

    def drain(self) -> list[Pending]:
        """Empty the lane (its peer is gone); the caller runs each continuation with an error."""
        drained = ([self.busy] if self.busy else []) + list(self.queue)
        self.busy = None
        self.queue.clear()
        return drained


Step = Callable[[Continuation], None]


def sequence(steps: list[Step], then: Callable[[list[Outcome]], None]) -> None:
    """Run calls one after another (each starts when the previous one succeeded); ``then`` gets the outcomes.

    A failure ends the sequence: its outcome is the last in the list. An empty sequence completes at once.
    """
    _Sequence(steps, then).run(0)


class _Sequence:
    """The state of one :func:`sequence`. An object rather than nested functions that call each other: those
    form a reference cycle, which only the cyclic garbage collector could free (the bridge runs it rarely)."""

    __slots__ = ("outcomes", "steps", "then")

    def __init__(self, steps: list[Step], then: Callable[[list[Outcome]], None]) -> None:
        self.steps = steps
        self.then = then
        self.outcomes: list[Outcome] = []

    def run(self, index: int) -> None:
        if index == len(self.steps):
            self.then(self.outcomes)
            return
        self.steps[index](functools.partial(self._step_done, index))

    def _step_done(self, index: int, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.ok:
            self.run(index + 1)
        else:
            self.then(self.outcomes)
