"""The charger-facing listener: handshake policy, one session per identity, health, graceful shutdown.

Why this exists: the order of a connection's life is a protocol decision. The identity is checked first (400),
then the upstream connection is opened with the charger's credentials while the charger waits (the CSMS's 401/
403/404 becomes the charger's answer), and only then is the charger's upgrade completed, with the subprotocol
the CSMS agreed to. A charger offering no subprotocol the bridge speaks gets what OCPP-J §3.2 prescribes: the
handshake completes without a Sec-WebSocket-Protocol header and the connection is closed at once (1002).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from .. import telemetry
from ..config import Settings
from ..core import validate
from ..core.passthrough import PassthroughSession
from ..core.rpc import Version
from ..core.session import TranslatingSession
from ..core.settings import CoreSettings
from ..store import StateStore, StoreError
from .handshake import HandshakeRefused, choose_version, identity_from_path
from .runner import Core, RideThrough, SessionRunner, Tap
from .upstream import MAX_FRAME, open_upstream

UNSUPPORTED_SUBPROTOCOL_CLOSE: Final = 1002  # protocol error: no OCPP version in common
LEASE_RENEWAL: Final = 1.0  # seconds between lease renewals (a taken-over session ends within about this)


@dataclass(slots=True)
class _Prepared:
    """What the handshake decided for a connection, handed from process_request to the handler."""

    identity: str
    charger_version: Version | None
    upstream_version: Version | None = None
    upstream: ClientConnection | None = None
    owner: str = ""  # this session's claim on the charger (unique per session)


@dataclass(slots=True)
class Bridge:
    settings: Settings
    store: StateStore
    core_settings: CoreSettings
    tap: Tap | None = None
    sessions: dict[str, SessionRunner] = field(default_factory=dict)
    server: Server | None = None
    _prepared: dict[ServerConnection, _Prepared] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    replica_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    draining: bool = False
    flags: dict[str, object] = field(default_factory=dict)  # the command-line values, kept for SIGHUP reloads

    async def start(self) -> None:
        await self.store.open()
        telemetry.TELEMETRY.gauges.update(queue_depth=self._queue_depth, queue_age=self._queue_age,
                                          ledger=self._open_transactions)
        for version in (Version.V16, Version.V201, Version.V21):
            validate.warm(version)  # compile every schema now, not on a charger's first frame
        host, port = self.settings.listen_address
        self.server = await serve(
            self._handle, host, port,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
            max_size=MAX_FRAME,
            compression=None,
            server_header=None,
            # the charger's handshake waits for the upstream one: give it that long and a margin
            open_timeout=self.settings.open_timeout + 5,
        )
        telemetry.event("bridge.listening", listen=f"{host}:{self.port}", upstream=self.settings.upstream)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def _translating(self) -> list[TranslatingSession]:
        return [r.core for r in list(self.sessions.values()) if isinstance(r.core, TranslatingSession)]

    def _queue_depth(self) -> list[tuple[float, dict[str, str]]]:
        return [(float(sum(len(s.outbox) for s in self._translating())), {})]

    def _queue_age(self) -> list[tuple[float, dict[str, str]]]:
        return [(max((s.outbox.oldest_age() for s in self._translating()), default=0.0), {})]

    def _open_transactions(self) -> list[tuple[float, dict[str, str]]]:
        return [(float(sum(len(s.ledger.open_transactions()) for s in self._translating())), {})]

    def reload(self, settings: Settings, core_settings: CoreSettings) -> None:
        """SIGHUP: new mappings, limits and timeouts for new and running sessions; no session is closed."""
        self.settings = settings
        self.core_settings = core_settings
        for session in self._translating():
            session.reconfigure(core_settings)
        telemetry.TELEMETRY.debug_identities = frozenset(settings.debug_identities)
        telemetry.event("bridge.reloaded", sessions=len(self.sessions))

    async def _readiness(self) -> Response:
        problems = []
        if self.draining:
            problems.append("draining")
        if not await self.store.ping():
            problems.append("state store unreachable")
        status = HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK
        return _json(status, {"status": "not ready" if problems else "ready", "problems": problems,
                              "sessions": len(self.sessions)})

    async def stop(self) -> None:
        """Stop accepting, close every charger with 1001 (so it reconnects elsewhere), close the store."""
        self.draining = True
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        await self.store.close()
        telemetry.event("bridge.stopped")

    # --- handshake -------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":  # liveness: the process is up and serving its event loop
            return _json(HTTPStatus.OK, {"status": "ok", "sessions": len(self.sessions)})
        if path == "/readyz":  # readiness: listening, not draining, and the state store answers
            return await self._readiness()
        if not _is_upgrade(request):
            return None  # not a WebSocket upgrade: websockets answers 426; the CSMS is never contacted
        try:
            identity = identity_from_path(request.path)
            choice = choose_version(request.headers.get_all("Sec-WebSocket-Protocol"))
            if choice.version is None:
                self._prepared[connection] = _Prepared(identity, None)
                return None  # complete the handshake without a subprotocol, then close (OCPP-J §3.2)
            prepared = await self._open_upstream(identity, choice.version, choice.offered_2x,
                                                 request.headers.get("Authorization"))
        except HandshakeRefused as refused:
            telemetry.event("handshake.refused", path=request.path[:100], status=refused.status,
                            reason=refused.reason)
            return _json(HTTPStatus(refused.status), {"error": refused.reason})
        if prepared.upstream is not None:
            prepared.owner = f"{self.replica_id}:{uuid.uuid4().hex[:12]}"
            try:  # the CSMS accepted the credentials: now take the charger over from any other session
                await self.store.claim(identity, prepared.owner)
            except StoreError as exc:
                await prepared.upstream.close(1011, "state store unavailable")
                return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"state store unavailable: {exc}"})
        if connection.state is not State.CONNECTING or connection.transport.is_closing():
            # The charger gave up while the CSMS was answering: no handler will ever run for it.
            assert prepared.upstream is not None
            await prepared.upstream.close(1000, "charger went away during the handshake")
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "charger went away"})
        self._prepared[connection] = prepared
        return None

    async def _open_upstream(self, identity: str, version: Version, offered_2x: tuple[str, ...],
                             authorization: str | None) -> _Prepared:
        protocols = self.settings.upstream_protocols if version is Version.V16 else list(offered_2x)
        upstream = await open_upstream(self.settings.upstream, identity, protocols, authorization,
                                       self.settings.open_timeout)
        negotiated = Version.from_subprotocol(upstream.subprotocol)
        if negotiated is None or negotiated.value not in protocols:
            await upstream.close(1002, "no common subprotocol")
            raise HandshakeRefused(502, f"CSMS agreed to none of {', '.join(protocols)}")
        return _Prepared(identity, version if version is Version.V16 else negotiated, negotiated, upstream)

    def _select_subprotocol(self, connection: ServerConnection,
                            subprotocols: object) -> Subprotocol | None:
        prepared = self._prepared.get(connection)
        if prepared is None or prepared.charger_version is None:
            return None
        return Subprotocol(prepared.charger_version.value)

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            prepared = self._prepared.pop(connection, None)
            if prepared is not None and prepared.upstream is not None:
                asyncio.get_running_loop().create_task(prepared.upstream.close(1000, "charger handshake failed"))

    # --- sessions --------------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        prepared = self._prepared.pop(connection, None)
        if prepared is None or prepared.charger_version is None or prepared.upstream is None:
            await connection.close(UNSUPPORTED_SUBPROTOCOL_CLOSE, "no supported OCPP subprotocol offered")
            return
        identity = prepared.identity
        previous = self.sessions.get(identity)
        if previous is not None:  # the newest connection wins; the old socket is most likely half-open
            telemetry.event("session.replaced", identity=identity)
            await previous.close(1001, "replaced by a new connection")
            with contextlib.suppress(TimeoutError):  # let it finish writing before this one loads the state
                await asyncio.wait_for(previous.finished.wait(), 5)
        runner = SessionRunner(identity, self._core(prepared), connection, prepared.upstream, self.store, self.tap,
                               self._ride_through(prepared, connection))
        self.sessions[identity] = runner
        telemetry.event("session.open", identity=identity, protocol=prepared.charger_version.value,
                        upstream_protocol=prepared.upstream_version.value if prepared.upstream_version else None)
        telemetry.TELEMETRY.session(True, prepared.charger_version.value)
        keeper = asyncio.create_task(self._keep_lease(runner, prepared.owner))
        try:
            await runner.run()
        finally:
            keeper.cancel()
            await self.store.release(identity, prepared.owner)
            if self.sessions.get(identity) is runner:
                del self.sessions[identity]
            telemetry.TELEMETRY.session(False, prepared.charger_version.value)
            telemetry.event("session.closed", identity=identity)

    async def _keep_lease(self, runner: SessionRunner, owner: str) -> None:
        """Renew this session's claim; when another replica took the charger over, end this session."""
        while True:
            await asyncio.sleep(LEASE_RENEWAL)
            if not await self.store.renew(runner.identity, owner):
                telemetry.event("session.taken_over", identity=runner.identity)
                await runner.close(1001, "the charger connected to another bridge instance")
                return

    def _ride_through(self, prepared: _Prepared, connection: ServerConnection) -> RideThrough | None:
        """Translated sessions outlive their upstream link (issue 4); a 2.x charger keeps its own queue."""
        if prepared.charger_version is not Version.V16 or self.settings.outage_mode != "ride-through":
            return None
        assert prepared.upstream_version is not None
        protocols = [prepared.upstream_version.value]  # the session's schemas are fixed: same version again
        authorization = connection.request.headers.get("Authorization") if connection.request else None

        async def reconnect() -> Connection:
            return await open_upstream(self.settings.upstream, prepared.identity, protocols, authorization,
                                       self.settings.open_timeout)

        return RideThrough(reconnect, self.settings.reconnect_min, self.settings.reconnect_max)

    def _core(self, prepared: _Prepared) -> Core:
        assert prepared.upstream_version is not None and prepared.charger_version is not None
        if prepared.charger_version is Version.V16:
            return TranslatingSession(prepared.identity, prepared.upstream_version, self.core_settings, _new_id)
        return PassthroughSession(prepared.identity, prepared.charger_version)


def _is_upgrade(request: Request) -> bool:
    """RFC 6455 §4.2.1: only a GET with Upgrade: websocket and Connection: upgrade opens anything upstream."""
    upgrade = ",".join(request.headers.get_all("Upgrade")).lower()
    connection = ",".join(request.headers.get_all("Connection")).lower()
    return "websocket" in upgrade and "upgrade" in connection


def _new_id() -> str:
    return str(uuid.uuid4())


def _json(status: HTTPStatus, body: dict[str, object]) -> Response:
    payload = orjson.dumps(body)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, payload)
