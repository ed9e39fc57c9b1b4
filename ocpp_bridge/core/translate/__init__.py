"""The registry of translation handlers, one module per message family.

Why this exists: the session dispatches on action name; each family module registers its handlers here with
how the bridge treats the action (translated, synthesized, answered by the bridge itself, refused), so the
coverage matrix in docs/ is generated from the same registry the code runs on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

Handler = Callable[["TranslatingSession", "Call"], None]


class Handling(enum.Enum):
    TRANSLATED = "translated"
    SYNTHESIZED = "synthesized"
    ANSWERED = "answered by the bridge"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Route:
    action: str
    handler: Handler
    handling: Handling
    becomes: tuple[str, ...]  # actions sent to the other side
    note: str


StartHook = Callable[["TranslatingSession"], None]
START_HOOKS: list[StartHook] = []  # run when a session starts from stored state (e.g. to re-arm timers)


def on_session_start(hook: StartHook) -> StartHook:
    START_HOOKS.append(hook)
    return hook


CHARGER_ROUTES: dict[str, Route] = {}  # 1.6 actions a charger sends
CSMS_ROUTES: dict[str, Route] = {}  # 2.0.1/2.1 actions a CSMS sends


def _register(table: dict[str, Route], action: str, handling: Handling, becomes: tuple[str, ...],
              note: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        if action in table:
            raise RuntimeError(f"{action} registered twice")
        table[action] = Route(action, handler, handling, becomes, note)
        return handler

    return decorate


def from_charger(action: str, handling: Handling = Handling.TRANSLATED, becomes: tuple[str, ...] = (),
                 note: str = "") -> Callable[[Handler], Handler]:
    return _register(CHARGER_ROUTES, action, handling, becomes or (action,), note)


def from_csms(action: str, handling: Handling = Handling.TRANSLATED, becomes: tuple[str, ...] = (),
              note: str = "") -> Callable[[Handler], Handler]:
    return _register(CSMS_ROUTES, action, handling, becomes or (action,), note)


# Importing the family modules registers their handlers.
from . import (  # noqa: E402
    authorize,
    boot,
    certificates,
    config,
    datatransfer,
    firmware,
    localauth,
    logs,
    remote,
    reports,
    reservation,
    security,
    smartcharging,
    status,
    transactions,
    txstatus,
    unsupported,
)

__all__ = [
    "CHARGER_ROUTES",
    "CSMS_ROUTES",
    "START_HOOKS",
    "Handling",
    "Route",
    "authorize",
    "boot",
    "certificates",
    "config",
    "datatransfer",
    "firmware",
    "from_charger",
    "from_csms",
    "localauth",
    "logs",
    "on_session_start",
    "remote",
    "reports",
    "reservation",
    "security",
    "smartcharging",
    "status",
    "transactions",
    "txstatus",
    "unsupported",
]
