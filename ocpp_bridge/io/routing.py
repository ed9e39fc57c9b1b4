"""Which route each charger takes, and the operator's view and control of routes while chargers run (issue 8).

Why this exists: the route of a charger is decided at its handshake (the configured rules, or what an operator
set through the admin API, which wins until the operator clears it: kept in the state store, so it survives
restarts and is shared by replicas) and can change while it stays connected: through
``PUT /admin/chargers/{identity}/route`` or a SIGHUP reload of the rules. This module keeps the route table,
the operator's overrides and each charger's shadow report (kept across reconnects), describes live sessions for
the admin API, and carries out route changes on their runners. The admin HTTP layer is ``io/admin.py``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Final

from cachetools import LRUCache

from .. import telemetry
from ..config import Settings
from ..core.passthrough import PassthroughSession
from ..core.routing import RoutedSession, ShadowReport
from ..core.session import TranslatingSession
from ..routes import Route, RouteTable
from ..store import StateStore, StoreError
from .admin import Unavailable
from .handshake import HandshakeRefused
from .runner import SessionRunner

REPORTS_KEPT: Final = 100_000  # identities whose shadow history is remembered (least recently used dropped)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _target(route: Route, legacy: bool) -> dict[str, str] | None:
    target = route.legacy if legacy else route.upstream
    return None if target is None else {"name": target.name, "url": target.url}


class Routing:
    """Routes, overrides and shadow reports of one bridge process; the backend of the admin API."""

    def __init__(self, settings: Settings, sessions: dict[str, SessionRunner], store: StateStore) -> None:
        self.table = RouteTable.from_settings(settings)
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.overrides: dict[str, str] = {}  # identity -> mode an operator chose, as last read from the store
        self.current: dict[str, Route] = {}  # identity -> route of its live session
        self.reports: LRUCache[str, ShadowReport] = LRUCache(REPORTS_KEPT)
        self._switching: set[asyncio.Task[None]] = set()

    async def route_for(self, identity: str) -> Route:
        """The route a connecting charger takes: the operator's choice if there is one, else its rules."""
        route = self.table.resolve(identity)
        try:
            mode = await self.store.get_route(identity)
        except StoreError as exc:  # the last choice this process knows of, rather than no charger at all
            telemetry.event("route.override_unreadable", identity=identity, error=str(exc))
            mode = self.overrides.get(identity)
        if mode is None:
            self.overrides.pop(identity, None)
            return route
        self.overrides[identity] = mode
        try:
            return self.table.with_mode(route, mode)
        except ValueError as exc:  # the rules changed since: this charger's route has no old central system now
            telemetry.event("route.override_ignored", identity=identity, mode=mode, reason=str(exc))
            return route

    def report(self, identity: str) -> ShadowReport:
        report = self.reports.get(identity)
        if report is None:
            report = self.reports[identity] = ShadowReport()
        return report

    def opened(self, identity: str, route: Route) -> None:
        self.current[identity] = route

    def closed(self, identity: str, runner: SessionRunner) -> None:
        if self.sessions.get(identity) in (None, runner):
            self.current.pop(identity, None)

    # --- the admin API ---------------------------------------------------------------------------------

    def chargers(self) -> list[dict[str, Any]]:
        return [self._describe(identity, runner) for identity, runner in sorted(self.sessions.items())]

    def charger(self, identity: str) -> dict[str, Any] | None:
        runner = self.sessions.get(identity)
        if runner is None:
            return None
        described = self._describe(identity, runner)
        report = self.reports.get(identity)
        described["recent_differences"] = [
            {**item, "at": _iso(item["at"])} for item in (report.recent if report is not None else ())]
        return described

    async def set_route(self, identity: str, mode: str) -> dict[str, Any] | None:
        """Switch a connected charger's route (its WebSocket stays open). None: not connected here."""
        runner = self.sessions.get(identity)
        if runner is None:
            return None
        core = runner.core
        if isinstance(core, PassthroughSession):
            raise ValueError("route modes apply to OCPP 1.6 chargers; this one speaks "
                             f"{core.version.value} and passes through to its upstream")
        route = self.current.get(identity) or self.table.resolve(identity)
        new = self.table.with_mode(route, mode)  # ValueError: unknown mode, or no old central system configured
        previous = self.overrides.get(identity)
        await self._remember(identity, mode)  # first: a choice that cannot be kept is not made
        if isinstance(core, RoutedSession) and core.mode != mode:
            try:
                await runner.change_route(mode)
            except HandshakeRefused as exc:
                await self._remember(identity, previous)
                raise Unavailable(f"the {mode} route cannot be opened: {exc.reason}") from None
        self.current[identity] = new
        telemetry.event("route.set", identity=identity, mode=mode, by="admin API")
        return self.charger(identity)

    async def clear_route(self, identity: str) -> dict[str, Any]:
        """Forget the operator's choice: the configured rules apply again (now, if the charger is connected)."""
        await self._remember(identity, None)
        route = self.table.resolve(identity)
        runner = self.sessions.get(identity)
        telemetry.event("route.cleared", identity=identity, mode=route.mode)
        if runner is None:
            return {"identity": identity, "connected": False, "mode": route.mode, "route_reason": route.reason}
        core = runner.core
        if isinstance(core, RoutedSession) and route.legacy is not None and core.mode != route.mode:
            try:
                await runner.change_route(route.mode)
            except HandshakeRefused as exc:
                raise Unavailable(f"the choice is forgotten, but the {route.mode} route cannot be opened now "
                                  f"({exc.reason}): the charger takes it when it reconnects") from None
        if not isinstance(core, PassthroughSession):
            self.current[identity] = route
        described = self.charger(identity)
        assert described is not None
        return described

    async def _remember(self, identity: str, mode: str | None) -> None:
        try:
            await self.store.set_route(identity, mode)
        except StoreError as exc:
            raise Unavailable(f"the route cannot be stored: {exc}") from None
        if mode is None:
            self.overrides.pop(identity, None)
        else:
            self.overrides[identity] = mode

    def migration(self) -> dict[str, Any]:
        """Per charger in shadow: how long, how many compared messages, and how clean since the last difference."""
        now = time.time()
        ready_seconds, ready_messages = self.settings.shadow_ready_seconds, self.settings.shadow_ready_messages
        chargers = []
        for identity, runner in sorted(self.sessions.items()):
            core = runner.core
            if not isinstance(core, RoutedSession) or core.mode != "shadow":
                continue
            shadow = core.report.as_dict(now)
            ready = (shadow["clean_seconds"] or 0) >= ready_seconds and shadow["clean_messages"] >= ready_messages
            chargers.append({"identity": identity, **shadow, "ready": ready,
                             "open_transactions": len(core.core.ledger.open_transactions())})
        return {"criteria": {"clean_seconds": ready_seconds, "clean_messages": ready_messages},
                "in_shadow": len(chargers), "ready": sum(1 for c in chargers if c["ready"]), "chargers": chargers}

    def _describe(self, identity: str, runner: SessionRunner) -> dict[str, Any]:
        core = runner.core
        route = self.current.get(identity) or self.table.resolve(identity)
        described: dict[str, Any] = {"identity": identity, "connected_since": _iso(runner.connected_at)}
        if isinstance(core, PassthroughSession):
            described.update(protocol=core.version.value, mode="passthrough", upstream=_target(route, False),
                             legacy=None, route_reason=route.reason, links={"csms": runner.csms is not None})
            return described
        translating = core.core if isinstance(core, RoutedSession) else core
        assert isinstance(translating, TranslatingSession)
        report = self.reports.get(identity)
        described.update(
            protocol="ocpp1.6", mode=core.mode if isinstance(core, RoutedSession) else "translate",
            route_reason=route.reason, upstream=_target(route, False), legacy=_target(route, True),
            upstream_protocol=translating.upstream.value,
            links={"csms": runner.csms is not None, "legacy": runner.legacy is not None},
            open_transactions=[{"transaction_id": tx.tx_id, "ocpp16_transaction_id": tx.local_id,
                                "connector_id": tx.connector_id, "next_seq_no": tx.seq_no}
                               for tx in translating.ledger.open_transactions()],
            queue_depth=len(translating.outbox),
            owed_to_legacy=len(translating.meta.legacy_backlog),
            shadow=report.as_dict(time.time()) if report is not None else None,
        )
        return described

    # --- SIGHUP ------------------------------------------------------------------------------------------------

    def reload(self, settings: Settings) -> None:
        """New rules: every connected charger without an operator override moves to its new route."""
        self.table = RouteTable.from_settings(settings)
        self.settings = settings
        for identity, runner in list(self.sessions.items()):
            core = runner.core
            if not isinstance(core, RoutedSession) or identity in self.overrides:
                continue
            route = self.table.resolve(identity)
            if route.mode != core.mode and route.legacy is not None:
                task = asyncio.create_task(self._switch(identity, runner, route))
                self._switching.add(task)
                task.add_done_callback(self._switching.discard)

    async def _switch(self, identity: str, runner: SessionRunner, route: Route) -> None:
        try:
            await runner.change_route(route.mode)
        except HandshakeRefused as exc:
            telemetry.event("route.change_failed", identity=identity, mode=route.mode, reason=exc.reason)
            return
        self.current[identity] = route
        telemetry.event("route.set", identity=identity, mode=route.mode, by="reload")
