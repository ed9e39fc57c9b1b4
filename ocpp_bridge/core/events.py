"""Events fed to a session and the commands it answers with (DESIGN.md, after h11's ``_events.py``).

Why this exists: it is the whole contract between the pure core and the asyncio shell. The shell runs the
commands of one event in order, awaiting each, before it feeds the next event; a ``Persist`` therefore always
reaches the store before the ``SendToCharger`` that follows it (the ledger's durability rule).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from .immutable import immutable
from .state import ChargerState, Record

# --- events -------------------------------------------------------------------------------------------


@immutable
class SessionStarted:
    """The charger and its upstream link are both open; ``state`` is what the store holds for it."""

    now: float
    state: ChargerState


@immutable
class FrameFromCharger:
    text: str | bytes
    now: float


@immutable
class FrameFromCsms:
    text: str | bytes
    now: float


@immutable
class Tick:
    """A wake-up the session asked for with :class:`ScheduleWakeup` (or any later moment)."""

    now: float


@immutable
class UpstreamLost:
    """The CSMS connection closed or failed while the charger is still connected."""

    now: float


@immutable
class UpstreamConnected:
    """The CSMS connection is back (reconnected by the shell)."""

    now: float


@immutable
class PersistFailed:
    """The store refused these records; the core writes them again with its next Persist."""

    now: float
    records: tuple[Record, ...]


@immutable
class FrameFromLegacy:
    """A frame from the old OCPP 1.6 central system (a routed session's legacy link, issue 8)."""

    text: str | bytes
    now: float


@immutable
class LegacyLost:
    """The legacy link closed or failed while the charger is still connected."""

    now: float


@immutable
class LegacyConnected:
    """The legacy link is open (again)."""

    now: float


@immutable
class RouteChanged:
    """An operator moved the charger to another route mode (admin API or reload); the charger stays connected."""

    now: float
    mode: str


Event = (SessionStarted | FrameFromCharger | FrameFromCsms | Tick | UpstreamLost | UpstreamConnected | PersistFailed
         | FrameFromLegacy | LegacyLost | LegacyConnected | RouteChanged)

# --- commands -----------------------------------------------------------------------------------------


@immutable
class SendToCharger:
    text: str


@immutable
class SendToCsms:
    text: str


@immutable
class Persist:
    """Write these records atomically before running the next command.

    ``wait=False``: nothing that follows depends on these records being stored yet (they only record that queued
    messages were delivered): the shell writes them with the next write instead of waiting for them. If they are
    lost in a crash, those messages are delivered once more after the restart (at-least-once, ``core.outbox``).
    """

    records: tuple[Record, ...]
    wait: bool = True


@immutable
class ScheduleWakeup:
    """Feed a :class:`Tick` at (or soon after) epoch time ``at``; replaces any earlier request."""

    at: float


@immutable
class CloseCharger:
    code: int
    reason: str


@immutable
class CloseCsms:
    code: int
    reason: str


@immutable
class SendToLegacy:
    text: str


@immutable
class Links:
    """Which upstream links a routed session needs now: the shell opens the missing ones (retrying with back-off)
    and closes the ones no longer needed."""

    csms: bool
    legacy: bool


@immutable
class Emit:
    """Something an operator may want to see: becomes a log line and a metric in the shell."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@immutable
class ExchangeDone:
    """One answered CALL, for metrics and traces (counted, not logged): a typed record rather than an Emit's dict,
    because there is one per exchange."""

    identity: str
    origin: str  # "charger" or "csms": who sent the CALL
    action: str
    message_id: str
    peers: tuple[tuple[str, str], ...]  # (message id, action) of what the bridge sent on its behalf
    outcome: str  # translated, synthesized, refused, invalid, failed
    version: str
    peer_version: str
    started: float
    ended: float


Command = (SendToCharger | SendToCsms | Persist | ScheduleWakeup | CloseCharger | CloseCsms | Emit | ExchangeDone
           | SendToLegacy | Links)
