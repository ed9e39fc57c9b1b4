"""The charger-facing listener: handshake policy, one session per identity, health, graceful shutdown.

Why this exists: the order of a connection's life is a protocol decision. The identity is checked first (400),
then the upstream connection is opened with the charger's credentials while the charger waits (the CSMS's 401/
403/404 becomes the charger's answer), and only then is the charger's upgrade completed, with the subprotocol
the CSMS agreed to. A charger offering no subprotocol the bridge speaks gets what OCPP-J §3.2 prescribes: the
handshake completes without a Sec-WebSocket-Protocol header and the connection is closed at once (1002).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import orjson
from websockets.asyncio.client import ClientConnection
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
from ..store import StateStore
from .handshake import HandshakeRefused, choose_version, identity_from_path
from .runner import Core, SessionRunner, Tap
from .upstream import MAX_FRAME, open_upstream

UNSUPPORTED_SUBPROTOCOL_CLOSE: Final = 1002  # protocol error: no OCPP version in common


@dataclass(slots=True)
class _Prepared:
    """What the handshake decided for a connection, handed from process_request to the handler."""

    identity: str
    charger_version: Version | None
    upstream_version: Version | None = None
    upstream: ClientConnection | None = None


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

    async def start(self) -> None:
        await self.store.open()
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

    async def stop(self) -> None:
        """Stop accepting, close every charger with 1001 (so it reconnects elsewhere), close the store."""
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        await self.store.close()
        telemetry.event("bridge.stopped")

    # --- handshake -------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == "/healthz":
            return _json(HTTPStatus.OK, {"status": "ok", "sessions": len(self.sessions)})
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
        runner = SessionRunner(identity, self._core(prepared), connection, prepared.upstream, self.store, self.tap)
        self.sessions[identity] = runner
        telemetry.event("session.open", identity=identity, protocol=prepared.charger_version.value,
                        upstream_protocol=prepared.upstream_version.value if prepared.upstream_version else None)
        try:
            await runner.run()
        finally:
            if self.sessions.get(identity) is runner:
                del self.sessions[identity]
            telemetry.event("session.closed", identity=identity)

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
