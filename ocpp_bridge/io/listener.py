"""The charger-facing listeners: handshake policy, one session per identity, health, graceful shutdown.

Why this exists: the order of a connection's life is a protocol decision. Connection caps are enforced at TCP
accept and a connection that does not finish its TLS handshake and send its upgrade request within
``handshake_timeout`` is closed (slowloris). Then the identity is checked (400), then the charger is
authenticated by its listener's security profile (401/403, before the upgrade and before anything is opened
upstream), then the subprotocol and the duplicate policy are decided, then the upstream connection is opened
with the charger's credentials (or the bridge's own for it) while the charger waits (the CSMS's 401/403/404
becomes the charger's answer), and only then is the charger's upgrade completed, with the subprotocol the CSMS
agreed to. A charger offering no subprotocol the bridge speaks gets what OCPP-J §3.2 prescribes: the handshake
completes without a Sec-WebSocket-Protocol header and the connection is closed at once (1002).

Duplicate identity (security reference §1.5): only an authenticated newcomer can affect a live session. With
``duplicate_policy = "reject"`` it gets 409. With "replace", when the bridge authenticated it itself (local
credentials, client certificate), its upgrade completes first, then the old session is closed (its upstream
with it) and only then the new upstream opened: never two upstream connections for one identity. When the CSMS
is the authenticator (profile 0, ``auth = "forward"``), the newcomer's credentials must reach the CSMS, so its
upstream is opened before the old session is closed. Replacements are rate-limited per identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from .. import telemetry
from ..config import ListenerSettings, Settings
from ..core import validate
from ..core.passthrough import PassthroughSession
from ..core.routing import RoutedSession
from ..core.rpc import Version
from ..core.session import TranslatingSession
from ..core.settings import CoreSettings
from ..routes import Route
from ..store import StateStore, StoreError
from . import security
from .admin import AdminServer, tls_context
from .handshake import HandshakeRefused, choose_version, forget_headers, identity_from_path
from .limits import (
    AuthThrottle,
    ConnectionGuard,
    ConnectionPolicy,
    FramePolicy,
    KeyedBuckets,
    listening_socket,
    networks,
)
from .routing import Routing
from .runner import Core, RideThrough, RoutedLinks, SessionRunner, Tap
from .upstream import UpstreamOptions, charger_certificates, open_upstream

UNSUPPORTED_SUBPROTOCOL_CLOSE: Final = 1002  # protocol error: no OCPP version in common
LISTEN_BACKLOG: Final = 4096
LEASE_RENEWAL: Final = 1.0  # seconds between lease renewals (a taken-over session ends within about this)
REPLACED_CLOSE_GRACE: Final = 2.0  # seconds a replaced (likely half-open) session gets to close before an abort


@dataclass(slots=True)
class _Prepared:
    """What the handshake decided for a connection, handed from process_request to the handler."""

    identity: str
    charger_version: Version | None
    upstream_version: Version | None = None
    upstream: ClientConnection | None = None
    owner: str = ""  # this session's claim on the charger (unique per session)
    authorization: str | None = None  # what the bridge presents to the CSMS for this charger
    handover: bool = False  # authenticated newcomer replacing a live session: upstream opened after the upgrade
    authenticated: bool = False  # the bridge verified the charger itself (local credentials, client certificate)
    route: Route | None = None
    legacy: ClientConnection | None = None  # the old 1.6 central system, when it answers for the charger (issue 8)

    async def close_links(self, code: int, reason: str) -> None:
        for link in (self.upstream, self.legacy):
            if link is not None:
                await link.close(code, reason)

    @property
    def routed(self) -> bool:
        """A 1.6 charger with an old central system configured: its route can change while it is connected."""
        return self.charger_version is Version.V16 and self.route is not None and self.route.legacy is not None


@dataclass(slots=True)
class _Listener:
    policy: security.ListenerPolicy
    health_only: bool  # the `listen` port when [[listeners]] are configured: probes only
    server: Server | None = None


class _KeyedLocks:
    """One asyncio.Lock per identity while somebody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> Any:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(slots=True)
class Bridge:
    settings: Settings
    store: StateStore
    core_settings: CoreSettings
    tap: Tap | None = None
    sessions: dict[str, SessionRunner] = field(default_factory=dict)
    listeners: list[_Listener] = field(default_factory=list)
    _prepared: dict[ServerConnection, _Prepared] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    replica_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    draining: bool = False
    flags: dict[str, object] = field(default_factory=dict)  # the command-line values, kept for SIGHUP reloads
    guard: ConnectionGuard = field(init=False)
    frame_policy: FramePolicy = field(init=False)
    csms_frame_policy: FramePolicy = field(init=False)
    throttle: AuthThrottle = field(init=False)
    replacements: KeyedBuckets = field(init=False)
    upstream_options: UpstreamOptions = field(init=False)
    upstream_credentials: dict[str, str] = field(init=False)
    _identity_locks: _KeyedLocks = field(default_factory=_KeyedLocks)
    _waiting: set[ServerConnection] = field(default_factory=set)  # connected, upgrade request not yet received
    routing: Routing = field(init=False)
    admin: AdminServer | None = None

    def __post_init__(self) -> None:
        self.routing = Routing(self.settings, self.sessions, self.store)
        self.guard = ConnectionGuard(on_refused=_connection_refused)
        self.frame_policy = FramePolicy()
        self.csms_frame_policy = FramePolicy()
        self.throttle = AuthThrottle()
        self.replacements = KeyedBuckets(1.0, 1.0)
        self._apply_limits(self.settings)

    def _apply_limits(self, settings: Settings) -> None:
        """Everything SIGHUP may change while sessions run (the frame policy object is shared by all of them)."""
        self.guard.reconfigure(ConnectionPolicy(
            settings.max_connections, settings.max_connections_per_ip, settings.max_handshakes_per_ip,
            settings.handshake_rate_per_ip, float(settings.handshake_burst_per_ip), networks(settings.per_ip_exempt)))
        self.frame_policy.rate = settings.frame_rate
        self.frame_policy.burst = float(settings.frame_burst)
        self.frame_policy.close_after = settings.frame_rate_close_after
        self.csms_frame_policy.rate = settings.csms_frame_rate
        self.csms_frame_policy.burst = float(settings.csms_frame_burst)
        self.csms_frame_policy.close_after = settings.csms_frame_rate_close_after
        self.throttle.base, self.throttle.ceiling = settings.auth_failure_delay, settings.auth_failure_delay_max
        self.replacements.reconfigure(settings.replacements_per_minute / 60, settings.replacements_per_minute)
        self.upstream_options = UpstreamOptions(security.upstream_context(settings), settings.max_message_size,
                                                settings.write_limit, settings.ping_interval, settings.ping_timeout,
                                                settings.close_timeout, charger_certificates(settings))
        self.upstream_credentials = security.load_upstream_credentials(settings.upstream_credentials_file)

    async def start(self) -> None:
        await self.store.open()
        telemetry.TELEMETRY.gauges.update(queue_depth=self._queue_depth, queue_age=self._queue_age,
                                          ledger=self._open_transactions)
        for version in (Version.V16, Version.V201, Version.V21):
            validate.warm(version)  # compile every schema now, not on a charger's first frame
        configured = self.settings.listeners
        default = ListenerSettings.model_validate({"address": self.settings.listen})
        self.listeners = [_Listener(security.ListenerPolicy.build(default), health_only=bool(configured))]
        self.listeners += [_Listener(security.ListenerPolicy.build(item), health_only=False) for item in configured]
        try:
            for listener in self.listeners:
                listener.server = await self._serve(listener)
        except BaseException:
            await self._close_servers()
            raise
        for listener in self.listeners:
            telemetry.event("bridge.listening", listen=listener.policy.name, profile=listener.policy.profile,
                            chargers=not listener.health_only, upstream=self.settings.upstream)
            if listener.policy.profile == 0 and not listener.health_only:
                security.event("profile_0_listener", listener=listener.policy.name,
                               detail="no charger authentication: for lab use only")
        for target in self.routing.table.upstreams.values():
            if target.url.startswith("ws://"):
                security.event("plaintext_upstream", upstream=target.url, name=target.name,
                               detail="the link to this central system is not encrypted (configured ws://)")
        settings = self.settings
        if settings.admin_listen is not None:
            assert settings.admin_token is not None  # the settings refuse one without the other
            context = tls_context(settings.admin_tls_cert, settings.admin_tls_key) \
                if settings.admin_tls_cert is not None and settings.admin_tls_key is not None else None
            self.admin = await AdminServer.start(settings.admin_listen, settings.admin_token.get_secret_value(),
                                                 self.routing, context)
            telemetry.event("bridge.admin_listening", listen=self.settings.admin_listen, port=self.admin.port,
                            tls=self.settings.admin_tls_cert is not None)

    async def _serve(self, listener: _Listener) -> Server:
        settings = self.settings
        host, port = listener.policy.settings.host_port
        sock = listening_socket(host, port, self.guard)
        tls: dict[str, Any] = {}
        if listener.policy.context is not None:
            tls = {"ssl": listener.policy.context, "ssl_handshake_timeout": settings.handshake_timeout}
        try:
            return await serve(
                functools.partial(self._handle, listener), sock=sock,
                process_request=functools.partial(self._process_request, listener),
                process_response=self._process_response,
                select_subprotocol=self._select_subprotocol,
                max_size=settings.max_message_size,
                write_limit=settings.write_limit,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
                close_timeout=settings.close_timeout,
                compression="deflate" if settings.compression == "deflate" else None,
                server_header=None,
                # the charger's handshake waits for authentication and the upstream one: give it that long
                open_timeout=settings.handshake_timeout + settings.open_timeout + settings.auth_failure_delay_max + 5,
                create_connection=_guarded_connection(settings.handshake_timeout, self._waiting),
                # asyncio listens again with its own default (100), which overflows in a connect storm of
                # thousands of chargers (benchmarks/README.md): ask for a deep accept queue
                backlog=LISTEN_BACKLOG,
                **tls,
            )
        except BaseException:
            sock.close()
            raise

    @property
    def port(self) -> int:
        """The `listen` port (health endpoints; the profile-0 charger port when no listeners are configured)."""
        return self.port_of(0)

    def port_of(self, index: int) -> int:
        server = self.listeners[index].server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])

    def _translating(self) -> list[TranslatingSession]:
        cores = [r.core.core if isinstance(r.core, RoutedSession) else r.core for r in list(self.sessions.values())]
        return [core for core in cores if isinstance(core, TranslatingSession)]

    def _queue_depth(self) -> list[tuple[float, dict[str, str]]]:
        return [(float(sum(len(s.outbox) for s in self._translating())), {})]

    def _queue_age(self) -> list[tuple[float, dict[str, str]]]:
        return [(max((s.outbox.oldest_age() for s in self._translating()), default=0.0), {})]

    def _open_transactions(self) -> list[tuple[float, dict[str, str]]]:
        return [(float(sum(len(s.ledger.open_transactions()) for s in self._translating())), {})]

    def reload(self, settings: Settings, core_settings: CoreSettings) -> None:
        """SIGHUP: new mappings, limits, rates, credentials and timeouts for new and running sessions; no session
        is closed. Addresses, certificates and socket-level options take effect at the next start."""
        self.settings = settings
        self.core_settings = core_settings
        for session in self._translating():
            session.reconfigure(core_settings)
        self._apply_limits(settings)
        self.routing.reload(settings)
        running = {listener.policy.name: listener for listener in self.listeners[1:]}
        wanted = {item.address: item for item in settings.listeners}
        for address in sorted(running.keys() | wanted.keys()):
            listener, fresh = running.get(address), wanted.get(address)
            if listener is None or fresh is None or not listener.policy.refresh(fresh):
                telemetry.event("bridge.reload_partial", listener=address,
                                detail="listener address, profile and TLS settings take effect at the next start")
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
        """Drain: stop accepting (readiness turns 503), let in-flight calls finish up to ``drain_timeout``, then
        close every charger with 1001 (so it reconnects elsewhere) and close the store. Every message already
        acknowledged is in the store, so nothing is lost whatever the timeout."""
        self.draining = True
        for listener in self.listeners:
            if listener.server is not None:
                # Stop listening at the socket level; websockets' own close (which closes the connections, and
                # acts only once) comes after the drain.
                listener.server.server.close()
        if self.admin is not None:
            await self.admin.close()
        await self._wait_idle(self.settings.drain_timeout)
        await self._close_servers()
        await self.store.close()
        telemetry.event("bridge.stopped")

    async def _wait_idle(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            busy = [r.identity for r in list(self.sessions.values())
                    if isinstance(r.core, TranslatingSession | RoutedSession) and not r.core.idle]
            if not busy:
                return
            await asyncio.sleep(0.05)
        telemetry.event("bridge.drain_timeout", busy=len(busy))

    async def _close_servers(self) -> None:
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close(close_connections=True)
        for connection in list(self._waiting):  # nothing to say to a connection that never asked anything
            connection.transport.abort()
        for listener in self.listeners:
            if listener.server is not None:
                await listener.server.wait_closed()

    # --- handshake -------------------------------------------------------------------------------

    async def _process_request(self, listener: _Listener, connection: ServerConnection,
                               request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":  # liveness: the process is up and serving its event loop
            return _json(HTTPStatus.OK, {"status": "ok", "sessions": len(self.sessions)})
        if path == "/readyz":  # readiness: listening, not draining, and the state store answers
            return await self._readiness()
        if not _is_upgrade(request):
            return None  # not a WebSocket upgrade: websockets answers 426; the CSMS is never contacted
        ip, identity = _peer_ip(connection), ""
        try:
            if listener.health_only:
                raise HandshakeRefused(404, "chargers connect to the configured listeners, not to this port")
            identity = identity_from_path(request.path)
            verdict = await listener.policy.admit(identity, request.headers.get("Authorization"),
                                                  connection.transport.get_extra_info("ssl_object"))
            if isinstance(verdict, security.Refusal):
                return await self._refuse(listener, verdict, identity, ip)
            choice = choose_version(request.headers.get_all("Sec-WebSocket-Protocol"))
            if choice.version is None:
                self._prepared[connection] = _Prepared(identity, None)
                return None  # complete the handshake without a subprotocol, then close (OCPP-J §3.2)
            authorization = self._upstream_authorization(identity, verdict)
            async with self._identity_locks.hold(identity):
                live = await self._live(identity)
                if live and self.settings.duplicate_policy == "reject":
                    security.event("duplicate_refused", identity=identity, ip=ip, listener=listener.policy.name)
                    raise HandshakeRefused(409, "this charger identity is connected already")
                if live and verdict.authenticated:  # the bridge vouches for the newcomer: hand over after upgrade
                    self._replacement_allowed(identity, ip)
                    prepared = _Prepared(identity, choice.version, authorization=authorization, handover=True)
                else:
                    prepared = await self._open_upstream(identity, choice.version, choice.offered_2x, authorization,
                                                         verdict.authenticated)
                    if live:
                        try:
                            self._replacement_allowed(identity, ip)
                        except HandshakeRefused:
                            await prepared.close_links(1000, "replacement refused")
                            raise
        except HandshakeRefused as refused:
            if refused.status in (401, 403) and identity:  # the CSMS refused the credentials (forward mode)
                return await self._refuse(listener, security.Refusal(refused.status, refused.reason), identity, ip)
            if refused.status < 500:
                security.event("handshake_refused", path=path[:100], status=refused.status, reason=refused.reason,
                               ip=ip, listener=listener.policy.name)
            else:
                telemetry.event("handshake.refused", path=path[:100], status=refused.status, reason=refused.reason)
            return _json(HTTPStatus(refused.status), {"error": refused.reason},
                         [("Retry-After", "30")] if refused.status == 429 else [])
        prepared.authenticated = verdict.authenticated
        if not prepared.handover and prepared.charger_version is not None:
            prepared.owner = f"{self.replica_id}:{uuid.uuid4().hex[:12]}"
            try:  # the central system accepted the credentials: now take the charger over from any other session
                await self.store.claim(identity, prepared.owner)
            except StoreError as exc:
                await prepared.close_links(1011, "state store unavailable")
                return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"state store unavailable: {exc}"})
        if connection.state is not State.CONNECTING or connection.transport.is_closing():
            # The charger gave up while the CSMS was answering: no handler will ever run for it.
            await prepared.close_links(1000, "charger went away during the handshake")
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "charger went away"})
        self._prepared[connection] = prepared
        return None

    async def _live(self, identity: str) -> bool:
        """Whether a session of ``identity`` is live here; one already closing is waited for (briefly)."""
        previous = self.sessions.get(identity)
        if previous is None:
            return False
        if previous.charger.state is State.OPEN:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(previous.finished.wait(), REPLACED_CLOSE_GRACE)
        return self.sessions.get(identity) not in (None, previous)

    async def _refuse(self, listener: _Listener, refusal: security.Refusal, identity: str, ip: str) -> Response:
        """A failed authentication: a security event, a growing delay (tarpit, never a lock-out), 401/403."""
        security.event(refusal.kind, identity=identity, ip=ip, listener=listener.policy.name,
                       profile=listener.policy.profile, reason=refusal.reason)
        delay = self.throttle.failed(ip, identity)
        if delay > 0:
            await asyncio.sleep(delay)
        extra = [("WWW-Authenticate", security.WWW_AUTHENTICATE)] if refusal.status == 401 else []
        return _json(HTTPStatus(refusal.status), {"error": refusal.reason}, extra)

    def _replacement_allowed(self, identity: str, ip: str) -> None:
        if not self.replacements.take(identity):
            security.event("replacement_limited", identity=identity, ip=ip)
            raise HandshakeRefused(429, "this charger identity was replaced too often; try again later")

    def _upstream_authorization(self, identity: str, verdict: security.Admitted) -> str | None:
        """The per-charger upstream password when the bridge itself authenticated the charger (never for one
        that only the CSMS can vouch for: that would let anybody in under the bridge's credentials), else what
        the listener forwards (if anything)."""
        password = self.upstream_credentials.get(identity) if verdict.authenticated else None
        if password is not None:
            return security.basic_authorization(identity, password)
        return verdict.forward_authorization

    async def _open_upstream(self, identity: str, version: Version, offered_2x: tuple[str, ...],
                             authorization: str | None, authenticated: bool = False) -> _Prepared:
        """Open what answers for the charger, during its handshake: the CSMS, or the old 1.6 central system when
        the charger's route puts that in charge (issue 8; the other side is opened by the session itself)."""
        route = await self.routing.route_for(identity)
        prepared = _Prepared(identity, version, authorization=authorization, route=route)
        if prepared.routed and route.mode != "translate":
            assert route.legacy is not None
            prepared.legacy = await self._open_link(identity, route.legacy.url, [route.legacy.protocols[0]],
                                                    authorization, authenticated)
            prepared.upstream_version = Version(route.upstream.protocols[0])  # opened by the session later
            return prepared
        protocols = list(route.upstream.protocols) if version is Version.V16 else list(offered_2x)
        upstream = await self._open_link(identity, route.upstream.url, protocols, authorization, authenticated)
        negotiated = Version.from_subprotocol(upstream.subprotocol)
        assert negotiated is not None
        prepared.upstream, prepared.upstream_version = upstream, negotiated
        if version is not Version.V16:
            prepared.charger_version = negotiated
        return prepared

    async def _open_link(self, identity: str, url: str, protocols: list[str], authorization: str | None,
                         authenticated: bool) -> ClientConnection:
        """Open ``url/<identity>`` offering ``protocols``; a central system that picks none of them is 502."""
        upstream = await open_upstream(url, identity, protocols, authorization, self.settings.open_timeout,
                                       self.upstream_options, authenticated)
        negotiated = Version.from_subprotocol(upstream.subprotocol)
        if negotiated is None or negotiated.value not in protocols:
            await upstream.close(1002, "no common subprotocol")
            raise HandshakeRefused(502, f"CSMS agreed to none of {', '.join(protocols)}")
        return upstream

    def _select_subprotocol(self, connection: ServerConnection,
                            subprotocols: object) -> Subprotocol | None:
        prepared = self._prepared.get(connection)
        if prepared is None or prepared.charger_version is None:
            return None
        return Subprotocol(prepared.charger_version.value)

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            prepared = self._prepared.pop(connection, None)
            if prepared is not None:
                asyncio.get_running_loop().create_task(prepared.close_links(1000, "charger handshake failed"))

    # --- sessions --------------------------------------------------------------------------------

    async def _handle(self, listener: _Listener, connection: ServerConnection) -> None:
        self.guard.established(_fd(connection))
        forget_headers(connection)  # process_request read them
        prepared = self._prepared.pop(connection, None)
        if prepared is None or prepared.charger_version is None:
            await connection.close(UNSUPPORTED_SUBPROTOCOL_CLOSE, "no supported OCPP subprotocol offered")
            return
        identity = prepared.identity
        if prepared.handover:
            runner = await self._take_over(prepared, connection)
            if runner is None:
                return
        else:
            previous = self.sessions.get(identity)
            if previous is not None:  # the newest connection wins; the old socket is most likely half-open
                await self._end_replaced(previous, _peer_ip(connection))
            runner = self._register(prepared, connection)
        assert prepared.upstream_version is not None and prepared.route is not None
        profile = str(listener.policy.profile)
        route = prepared.route
        self.routing.opened(identity, route)
        telemetry.event("session.open", identity=identity, protocol=prepared.charger_version.value,
                        upstream_protocol=prepared.upstream_version.value, profile=profile,
                        listener=listener.policy.name, route=route.mode if prepared.routed else None,
                        route_reason=route.reason if prepared.routed else None)
        telemetry.TELEMETRY.session(True, prepared.charger_version.value, profile)
        keeper = asyncio.create_task(self._keep_lease(runner, prepared.owner))
        try:
            await runner.run()
        finally:
            keeper.cancel()
            await self.store.release(identity, prepared.owner)
            self.routing.closed(identity, runner)
            if self.sessions.get(identity) is runner:
                del self.sessions[identity]
            telemetry.TELEMETRY.session(False, prepared.charger_version.value, profile)
            telemetry.event("session.closed", identity=identity)

    def _register(self, prepared: _Prepared, connection: ServerConnection) -> SessionRunner:
        routed = self._routed_links(prepared)
        runner = SessionRunner(prepared.identity, self._core(prepared), connection, prepared.upstream, self.store,
                               self.tap, None if routed else self._ride_through(prepared),
                               security.frame_gate(self.frame_policy, prepared.identity, "charger"),
                               security.frame_gate(self.csms_frame_policy, prepared.identity, "csms"), routed)
        self.sessions[prepared.identity] = runner
        return runner

    async def _take_over(self, prepared: _Prepared, connection: ServerConnection) -> SessionRunner | None:
        """The authenticated newcomer's upgrade succeeded: close the old session (and its upstream), then open
        this one's upstream, so the CSMS never sees two connections of one charger."""
        identity = prepared.identity
        assert prepared.charger_version is not None
        async with self._identity_locks.hold(identity):
            previous = self.sessions.get(identity)
            if previous is not None:
                await self._end_replaced(previous, _peer_ip(connection))
            try:
                offered = (prepared.charger_version.value,)
                opened = await self._open_upstream(identity, prepared.charger_version, offered,
                                                   prepared.authorization, prepared.authenticated)
                prepared.upstream, prepared.upstream_version = opened.upstream, opened.upstream_version
                prepared.legacy, prepared.route = opened.legacy, opened.route
                prepared.owner = f"{self.replica_id}:{uuid.uuid4().hex[:12]}"
                await self.store.claim(identity, prepared.owner)
            except (HandshakeRefused, StoreError) as exc:
                reason = exc.reason if isinstance(exc, HandshakeRefused) else "state store unavailable"
                code = 1008 if isinstance(exc, HandshakeRefused) and exc.status in (401, 403, 404) else 1011
                telemetry.event("handshake.refused", identity=identity, status=code, reason=reason)
                await prepared.close_links(1011, "state store unavailable")
                await connection.close(code, reason[:120])
                return None
            return self._register(prepared, connection)  # under the lock: a second newcomer finds this one

    async def _end_replaced(self, previous: SessionRunner, ip: str) -> None:
        security.event("session_replaced", identity=previous.identity, ip=ip)
        try:
            await asyncio.wait_for(previous.close(1001, "replaced by a new connection"), REPLACED_CLOSE_GRACE)
        except TimeoutError:  # a half-open socket never answers the close: drop it
            previous.charger.transport.abort()
        with contextlib.suppress(TimeoutError):  # let it finish writing (and close its upstream) first
            await asyncio.wait_for(previous.finished.wait(), 5)

    async def _keep_lease(self, runner: SessionRunner, owner: str) -> None:
        """Renew this session's claim; when another replica took the charger over, end this session."""
        if not self.store.leases:
            return
        while True:
            await asyncio.sleep(LEASE_RENEWAL)
            if not await self.store.renew(runner.identity, owner):
                telemetry.event("session.taken_over", identity=runner.identity)
                await runner.close(1001, "the charger connected to another bridge instance")
                return

    def _ride_through(self, prepared: _Prepared) -> RideThrough | None:
        """Translated sessions outlive their upstream link (issue 4); a 2.x charger keeps its own queue."""
        if prepared.charger_version is not Version.V16 or self.settings.outage_mode != "ride-through":
            return None
        assert prepared.upstream_version is not None and prepared.route is not None
        return RideThrough(self._reopener(prepared, prepared.route.upstream.url, prepared.upstream_version.value),
                           self.settings.reconnect_min, self.settings.reconnect_max)

    def _reopener(self, prepared: _Prepared, url: str, protocol: str) -> Callable[[], Awaitable[Connection]]:
        """How a session opens one of its links again (or for the first time, on a route change)."""
        identity = prepared.identity

        async def reconnect() -> Connection:
            # A SIGHUP may have changed the bridge's password for this charger meanwhile.
            password = self.upstream_credentials.get(identity) if prepared.authenticated else None
            authorization = security.basic_authorization(identity, password) if password is not None \
                else prepared.authorization
            upstream = await open_upstream(url, identity, [protocol], authorization, self.settings.open_timeout,
                                           self.upstream_options, prepared.authenticated)
            if upstream.subprotocol != protocol:  # the session's schemas are fixed: no other version
                await upstream.close(1002, "no common subprotocol")
                raise HandshakeRefused(502, f"CSMS agreed to {upstream.subprotocol!r}, not {protocol}")
            return upstream

        return reconnect

    def _routed_links(self, prepared: _Prepared) -> RoutedLinks | None:
        if not prepared.routed:
            return None
        route = prepared.route
        assert route is not None and route.legacy is not None and prepared.upstream_version is not None
        openers = {"csms": self._reopener(prepared, route.upstream.url, prepared.upstream_version.value),
                   "legacy": self._reopener(prepared, route.legacy.url, route.legacy.protocols[0])}
        opened = {name: link for name, link in (("csms", prepared.upstream), ("legacy", prepared.legacy))
                  if link is not None}
        return RoutedLinks(openers, opened, self.settings.reconnect_min, self.settings.reconnect_max,
                           security.frame_gate(self.csms_frame_policy, prepared.identity, "legacy"))

    def _core(self, prepared: _Prepared) -> Core:
        assert prepared.upstream_version is not None and prepared.charger_version is not None
        if prepared.routed:
            assert prepared.route is not None
            return RoutedSession(prepared.identity, prepared.route.mode, prepared.upstream_version,
                                 self.core_settings, _new_id, self.routing.report(prepared.identity),
                                 csms_open=prepared.upstream is not None, legacy_open=prepared.legacy is not None)
        if prepared.charger_version is Version.V16:
            return TranslatingSession(prepared.identity, prepared.upstream_version, self.core_settings, _new_id)
        return PassthroughSession(prepared.identity, prepared.charger_version)


def _guarded_connection(request_timeout: float, waiting: set[ServerConnection]) -> type[ServerConnection]:
    """ServerConnection whose upgrade request must arrive within ``request_timeout`` (websockets' open_timeout
    also covers the bridge's own wait for the CSMS, so it cannot be the slowloris bound). While it waits it is
    in ``waiting``, so a shutdown can drop it at once instead of waiting for the timeout."""

    class GuardedConnection(ServerConnection):
        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            waiting.add(self)
            try:
                done, _ = await asyncio.wait([self.request_rcvd, self.connection_lost_waiter],
                                             timeout=request_timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.discard(self)
            if not done:
                security.event("handshake_timeout", ip=_peer_ip(self), after=request_timeout)
                raise TimeoutError("no upgrade request in time")  # websockets aborts the connection
            await super().handshake(*args, **kwargs)

    return GuardedConnection


def _connection_refused(ip: str, reason: str) -> None:
    security.event("connection_refused", ip=ip, reason=reason)


def _peer_ip(connection: ServerConnection) -> str:
    address = connection.transport.get_extra_info("peername") if connection.transport is not None else None
    return str(address[0]) if isinstance(address, tuple) and address else ""


def _fd(connection: ServerConnection) -> int:
    sock = connection.transport.get_extra_info("socket")
    return int(sock.fileno()) if sock is not None else -1


def _is_upgrade(request: Request) -> bool:
    """RFC 6455 §4.2.1: only a GET with Upgrade: websocket and Connection: upgrade opens anything upstream."""
    upgrade = ",".join(request.headers.get_all("Upgrade")).lower()
    connection = ",".join(request.headers.get_all("Connection")).lower()
    return "websocket" in upgrade and "upgrade" in connection


def _new_id() -> str:
    return str(uuid.uuid4())


def _json(status: HTTPStatus, body: dict[str, object], extra: list[tuple[str, str]] | None = None) -> Response:
    payload = orjson.dumps(body)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                       ("Connection", "close"), *(extra or [])])
    return Response(status.value, status.phrase, headers, payload)

