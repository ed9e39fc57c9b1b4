"""Which route each charger takes, and the operator's view and control of routes while chargers run (issue 8).

Why this exists: the route of a charger is decided at its handshake (the configured rules, or what an operator
set through the admin API, which wins until the process ends) and can change while it stays connected: through
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

    def __init__(self, settings: Settings, sessions: dict[str, SessionRunner]) -> None:
        self.table = RouteTable.from_settings(settings)
        self.settings = settings
        self.sessions = sessions
        self.overrides: dict[str, str] = {}  # identity -> mode an operator chose (admin API)
        self.current: dict[str, Route] = {}  # identity -> route of its live session
        self.reports: LRUCache[str, ShadowReport] = LRUCache(REPORTS_KEPT)
        self._switching: set[asyncio.Task[None]] = set()

    @property
    def any_legacy(self) -> bool:
        return any(target.legacy for target in self.table.upstreams.values())

    def route_for(self, identity: str) -> Route:
        route = self.table.resolve(identity)
        mode = self.overrides.get(identity)
        if mode is not None and mode != route.mode:
            try:
                return self.table.with_mode(route, mode)
            except ValueError:  # the rules changed since: the override no longer fits this charger's route
                self.overrides.pop(identity, None)
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
        route = self.current.get(identity) or self.route_for(identity)
        new = self.table.with_mode(route, mode)  # ValueError: unknown mode, or no old central system configured
        if isinstance(core, RoutedSession) and core.mode != mode:
            try:
                await runner.change_route(mode)
            except HandshakeRefused as exc:
                raise Unavailable(f"the {mode} route cannot be opened: {exc.reason}") from None
        self.overrides[identity] = mode
        self.current[identity] = new
        telemetry.event("route.set", identity=identity, mode=mode, by="admin API")
        return self.charger(identity)

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
        route = self.current.get(identity) or self.route_for(identity)
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
