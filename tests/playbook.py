"""A protocol playbook for the sans-I/O core: tests read like the exchange they check.

    pb = Playbook.translated()
    pb.charger_sends("BootNotification", {...})            # >> charger sends a CALL
    call = pb.csms_receives("BootNotification")             # << csms receives the translated CALL
    pb.csms_answers(call, {"status": "Accepted", ...})       # >> csms answers it
    pb.charger_receives_result({"status": "Accepted", ...})  # << charger receives the CALLRESULT

Every frame the core emits toward either side is also validated against the official schemas here, so a
test that passes proves the output is schema-valid, independently of the core's own output check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ocpp_bridge.core import validate
from ocpp_bridge.core.events import (
    Command,
    Emit,
    FrameFromCharger,
    FrameFromCsms,
    FrameFromLegacy,
    Links,
    Persist,
    SendToCharger,
    SendToCsms,
    SendToLegacy,
    SessionStarted,
    Tick,
)
from ocpp_bridge.core.routing import RoutedSession, ShadowReport
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.session import TranslatingSession
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerState

T0 = 1_700_000_000.0


@dataclass
class Frame:
    raw: list[Any]

    @property
    def type_id(self) -> int:
        return int(self.raw[0])

    @property
    def unique_id(self) -> str:
        return str(self.raw[1])

    @property
    def action(self) -> str:
        return str(self.raw[2])

    @property
    def payload(self) -> dict[str, Any]:
        return self.raw[3] if self.type_id in (2, 6) else self.raw[2]


@dataclass
class Playbook:
    session: TranslatingSession | RoutedSession
    now: float = T0
    to_charger: list[Frame] = field(default_factory=list)
    to_csms: list[Frame] = field(default_factory=list)
    to_legacy: list[str] = field(default_factory=list)  # exactly the text the old central system received
    links: list[Links] = field(default_factory=list)
    persisted: list[Any] = field(default_factory=list)
    emitted: list[Emit] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    _charger_ids: Any = field(default_factory=lambda: itertools.count(1))
    # the action of each CALL sent to the charger / CSMS, to validate their answers' direction
    _down_actions: dict[str, str] = field(default_factory=dict)
    _up_actions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def translated(cls, upstream: Version = Version.V201, settings: CoreSettings | None = None,
                   state: ChargerState | None = None, identity: str = "CP-1") -> Playbook:
        ids = itertools.count(1)
        session = TranslatingSession(identity, upstream, settings or CoreSettings(),
                                     lambda: f"bridge-{next(ids)}")
        book = cls(session)
        book.feed(SessionStarted(book.now, state or ChargerState.empty(identity)))
        return book

    @classmethod
    def routed(cls, mode: str, upstream: Version = Version.V201, settings: CoreSettings | None = None,
               state: ChargerState | None = None, identity: str = "CP-1", *, csms_open: bool = True,
               legacy_open: bool = True) -> Playbook:
        """A 1.6 charger on a route (issue 8): ``to_legacy`` holds what the old central system receives."""
        ids = itertools.count(1)
        session = RoutedSession(identity, mode, upstream, settings or CoreSettings(), lambda: f"bridge-{next(ids)}",
                                ShadowReport(), csms_open=csms_open, legacy_open=legacy_open)
        book = cls(session)
        book.feed(SessionStarted(book.now, state or ChargerState.empty(identity)))
        return book

    @property
    def core(self) -> TranslatingSession:
        return self.session.core if isinstance(self.session, RoutedSession) else self.session

    # --- driving ------------------------------------------------------------------------------------

    def feed(self, event: Any) -> list[Command]:
        commands = self.session.feed(event)
        self.commands.extend(commands)
        for command in commands:
            if isinstance(command, SendToCharger):
                self._collect(command.text, Version.V16, self.to_charger, self._down_actions, self._up_actions)
            elif isinstance(command, SendToCsms):
                self._collect(command.text, self.core.upstream, self.to_csms, self._up_actions,
                              self._down_actions)
            elif isinstance(command, SendToLegacy):
                self.to_legacy.append(command.text)
            elif isinstance(command, Links):
                self.links.append(command)
            elif isinstance(command, Persist):
                self.persisted.extend(command.records)
            elif isinstance(command, Emit):
                self.emitted.append(command)
        return commands

    def _collect(self, text: str, version: Version, sink: list[Frame], sent_calls: dict[str, str],
                 received_calls: dict[str, str]) -> None:
        raw = orjson.loads(text)
        frame = Frame(raw)
        if frame.type_id == 2:
            violation = validate.check(version, frame.action, frame.payload, response=False)
            assert violation is None, f"bridge sent an invalid {frame.action}: {violation}"
            sent_calls[frame.unique_id] = frame.action
        elif frame.type_id == 3 and frame.unique_id in received_calls:
            action = received_calls.pop(frame.unique_id)
            violation = validate.check(version, action, frame.payload, response=True)
            assert violation is None, f"bridge sent an invalid {action} result: {violation}"
        sink.append(frame)

    def advance(self, seconds: float) -> list[Command]:
        self.now += seconds
        return self.feed(Tick(self.now))

    def charger_sends_raw(self, text: str | bytes) -> list[Command]:
        return self.feed(FrameFromCharger(text, self.now))

    def csms_sends_raw(self, text: str | bytes) -> list[Command]:
        return self.feed(FrameFromCsms(text, self.now))

    def legacy_sends_raw(self, text: str | bytes) -> list[Command]:
        return self.feed(FrameFromLegacy(text, self.now))

    def legacy_receives(self) -> list[Any]:
        """Pop the oldest frame the old central system received (parsed)."""
        assert self.to_legacy, "expected the central system to receive a frame, it received nothing"
        return list(orjson.loads(self.to_legacy.pop(0)))

    def legacy_answers(self, unique_id: str, payload: dict[str, Any]) -> None:
        self.legacy_sends_raw(orjson.dumps([3, unique_id, payload]))

    def charger_sends(self, action: str, payload: dict[str, Any], unique_id: str | None = None) -> str:
        unique_id = unique_id or f"cp-{next(self._charger_ids)}"
        self._up_actions[unique_id] = action
        self.charger_sends_raw(orjson.dumps([2, unique_id, action, payload]))
        return unique_id

    def csms_sends(self, action: str, payload: dict[str, Any], unique_id: str | None = None) -> str:
        unique_id = unique_id or f"csms-{next(self._charger_ids)}"
        self._down_actions[unique_id] = action
        self.csms_sends_raw(orjson.dumps([2, unique_id, action, payload]))
        return unique_id

    def csms_answers(self, call: Frame, payload: dict[str, Any]) -> None:
        self.csms_sends_raw(orjson.dumps([3, call.unique_id, payload]))

    def csms_fails(self, call: Frame, code: str, description: str = "") -> None:
        self.csms_sends_raw(orjson.dumps([4, call.unique_id, code, description, {}]))

    def charger_answers(self, call: Frame, payload: dict[str, Any]) -> None:
        self.charger_sends_raw(orjson.dumps([3, call.unique_id, payload]))

    def charger_fails(self, call: Frame, code: str, description: str = "") -> None:
        self.charger_sends_raw(orjson.dumps([4, call.unique_id, code, description, {}]))

    # --- expectations -------------------------------------------------------------------------------

    def csms_receives(self, action: str) -> Frame:
        """Pop the oldest frame sent to the CSMS; it must be a CALL of ``action``."""
        assert self.to_csms, f"expected the CSMS to receive {action}, it received nothing"
        frame = self.to_csms.pop(0)
        assert frame.type_id == 2 and frame.action == action, f"expected CALL {action}, got {frame.raw}"
        return frame

    def charger_receives(self, action: str) -> Frame:
        assert self.to_charger, f"expected the charger to receive {action}, it received nothing"
        frame = self.to_charger.pop(0)
        assert frame.type_id == 2 and frame.action == action, f"expected CALL {action}, got {frame.raw}"
        return frame

    def charger_receives_result(self, unique_id: str | None = None) -> dict[str, Any]:
        assert self.to_charger, "expected a CALLRESULT for the charger, it received nothing"
        frame = self.to_charger.pop(0)
        assert frame.type_id == 3, f"expected CALLRESULT, got {frame.raw}"
        if unique_id is not None:
            assert frame.unique_id == unique_id
        return frame.payload

    def csms_receives_result(self, unique_id: str | None = None) -> dict[str, Any]:
        assert self.to_csms, "expected a CALLRESULT for the CSMS, it received nothing"
        frame = self.to_csms.pop(0)
        assert frame.type_id == 3, f"expected CALLRESULT, got {frame.raw}"
        if unique_id is not None:
            assert frame.unique_id == unique_id
        return frame.payload

    def charger_receives_error(self, code: str, unique_id: str | None = None) -> Frame:
        assert self.to_charger, f"expected CALLERROR {code} for the charger, it received nothing"
        frame = self.to_charger.pop(0)
        assert frame.type_id == 4 and frame.raw[2] == code, f"expected CALLERROR {code}, got {frame.raw}"
        if unique_id is not None:
            assert frame.unique_id == unique_id
        return frame

    def csms_receives_error(self, code: str, unique_id: str | None = None) -> Frame:
        assert self.to_csms, f"expected CALLERROR {code} for the CSMS, it received nothing"
        frame = self.to_csms.pop(0)
        assert frame.type_id == 4 and frame.raw[2] == code, f"expected CALLERROR {code}, got {frame.raw}"
        if unique_id is not None:
            assert frame.unique_id == unique_id
        return frame

    def nothing_pending(self) -> None:
        assert not self.to_charger, f"charger has unexpected frames: {[f.raw for f in self.to_charger]}"
        assert not self.to_csms, f"CSMS has unexpected frames: {[f.raw for f in self.to_csms]}"

    def emitted_kinds(self) -> list[str]:
        return [e.kind for e in self.emitted]

    # --- common openings ---------------------------------------------------------------------------

    def boot(self, status: str = "Accepted") -> None:
        uid = self.charger_sends("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
        call = self.csms_receives("BootNotification")
        self.csms_answers(call, {"status": status, "currentTime": "2024-05-01T10:00:00Z", "interval": 300})
        self.charger_receives_result(uid)

    def start(self, connector: int = 1, id_tag: str = "04A1B2C3", meter: int = 1000,
              stamp: str = "2024-05-01T10:00:00Z", status: str = "Accepted") -> tuple[int, str]:
        """Start a transaction through the CSMS; returns (1.6 transactionId, 2.0.1 transactionId)."""
        uid = self.charger_sends("StartTransaction", {"connectorId": connector, "idTag": id_tag,
                                                      "meterStart": meter, "timestamp": stamp})
        event = self.csms_receives("TransactionEvent")
        self.csms_answers(event, {"idTokenInfo": {"status": status}})
        result = self.charger_receives_result(uid)
        return int(result["transactionId"]), str(event.payload["transactionInfo"]["transactionId"])


Check = Callable[[Playbook], None]
