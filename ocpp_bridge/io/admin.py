"""The admin HTTP API: list chargers, show one, switch its route, show the migration's progress (issue 8).

Why this exists: an operator moving a fleet from an old 1.6 central system to a new CSMS switches chargers between
translate, legacy and shadow while they stay connected, and watches the comparison. This is a small HTTP/1.1
server on its own listener (never the chargers' port), parsed by h11 (sans-I/O) over asyncio streams:

* every request needs ``Authorization: Bearer <admin_token>`` (constant-time compare); otherwise 401 and a
  ``security.admin_auth_failed`` event, which never carries the token;
* one request per connection (``Connection: close``), 10 s to send it, bodies up to 64 KiB, JSON in and out;
* a malformed request gets a 4xx answer and a closed connection, never an exception out of the handler.

    GET /admin/chargers                      -> {"chargers": [...]}
    GET /admin/chargers/{identity}           -> the charger (identity percent-decoded), 404 if unknown
    PUT /admin/chargers/{identity}/route     <- {"mode": "translate" | "legacy" | "shadow"}
    GET /admin/migration                     -> the migration summary
"""

from __future__ import annotations

import asyncio
import hmac
import ssl as _ssl
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import unquote

import h11
import orjson

from .. import telemetry
from ..config import split_host_port
from ..routes import ROUTE_MODES
from . import security

MAX_BODY: Final = 64 * 1024
REQUEST_TIMEOUT: Final = 10.0  # seconds for the request line, headers and body (a slow client gets 408)
WRITE_TIMEOUT: Final = 10.0  # seconds for a client to read the answer
MAX_CONNECTIONS: Final = 64  # an admin API has a handful of users; more at once are closed at accept
_MAX_HEADERS: Final = 16 * 1024


class Unavailable(Exception):
    """Raised by a backend when what a request needs is unreachable right now (503; nothing was changed)."""


class AdminBackend(Protocol):
    """What the admin API shows and changes; the runtime implements it."""

    def chargers(self) -> list[dict[str, Any]]: ...

    def charger(self, identity: str) -> dict[str, Any] | None: ...  # None -> 404

    async def set_route(self, identity: str, mode: str) -> dict[str, Any] | None:
        """None -> 404; ValueError(message) -> 400 {"error": message, "field": "mode"}; Unavailable -> 503."""
        ...

    def migration(self) -> dict[str, Any]: ...

    async def clear_route(self, identity: str) -> dict[str, Any]:
        """Forget the operator's route for ``identity`` (connected or not); Unavailable -> 503."""
        ...


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    body: bytes


class _Refused(Exception):
    """Reading the request stopped with an answer (401, 404, 405, 413)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply
        self.head = False  # the request was a HEAD: the answer has no body


def _error(status: int, message: str, field: str | None = None, *headers: tuple[str, str]) -> _Reply:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return _Reply(status, body, headers)


def tls_context(cert: Path, key: Path) -> _ssl.SSLContext:
    """A server context for the admin API (``admin_tls_cert``/``admin_tls_key``): TLS 1.2+, no compression."""
    context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _ssl.TLSVersion.TLSv1_2
    context.options |= _ssl.OP_NO_COMPRESSION
    context.load_cert_chain(cert, key)
    return context


class AdminServer:
    """The admin API on its own listener; ``start`` binds it, ``close`` stops it and its connections."""

    def __init__(self, token: str, backend: AdminBackend) -> None:
        self._token = token.encode("utf-8")
        self._backend = backend
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, address: str, token: str, backend: AdminBackend,
                    ssl: _ssl.SSLContext | None = None) -> AdminServer:
        """Listen on ``address`` (HOST:PORT; port 0 picks a free one)."""
        if not token:
            raise ValueError("the admin API needs a token")
        self = cls(token, backend)
        host, port = split_host_port(address)
        self._server = await asyncio.start_server(self._handle, host, port, ssl=ssl,
                                                  ssl_handshake_timeout=REQUEST_TIMEOUT if ssl else None)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # --- one connection ------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._tasks.add(task)
        try:
            await self._exchange(reader, writer)
            writer.close()
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            writer.transport.abort()  # the client went away or does not read: nothing left to tell it
        except asyncio.CancelledError:  # close(): drop the connection; not re-raised, asyncio 3.11's stream
            writer.transport.abort()  # callback would log a cancelled handler as an error
        except Exception as exc:  # never out of the handler (asyncio would only log it)
            telemetry.event("admin.error", error=repr(exc))
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it."""
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)
        try:
            request = await self._read(connection, reader, writer, ip)
        except _Refused as refused:
            await self._send(connection, writer, refused.reply, refused.head)
            return
        if request is None:
            return
        try:
            reply = await self._dispatch(request)
            orjson.dumps(reply.body)  # a backend answer that is not JSON is a fault too, reported as one
        except Exception as exc:  # a backend fault: the client gets a 500, the log gets the detail
            telemetry.event("admin.error", method=request.method, path=request.path[:200], error=repr(exc))
            reply = _error(500, "internal error (see the bridge's log)")
        await self._send(connection, writer, reply, head=request.method == "HEAD")

    async def _read(self, connection: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    ip: str) -> _Request | None:
        """The request, or None when the client closed before sending one. Raises _Refused with the answer."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                event = await _next_event(connection, reader)
                if not isinstance(event, h11.Request):
                    return None
                method, path = event.method.decode("latin-1"), event.target.decode("latin-1").split("?", 1)[0]
                try:
                    if not self._authorized(event.headers):
                        security.event("admin_auth_failed", ip=ip, path=path[:200])
                        raise _Refused(_error(401, "missing or wrong bearer token", None,
                                              ("WWW-Authenticate", "Bearer")))
                    _check_route(method, path)
                except _Refused as refused:
                    refused.head = method == "HEAD"
                    raise
                body = await _read_body(connection, reader, writer, event) if method == "PUT" else b""
                return _Request(method, path, body)
        except TimeoutError:
            raise _Refused(_error(408, f"the request did not arrive within {REQUEST_TIMEOUT:g} s")) from None
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
            raise _Refused(_error(status, f"malformed HTTP request: {exc}")) from None

    def _authorized(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        values = [value for name, value in headers if name == b"authorization"]
        if len(values) != 1 or values[0][:7].lower() != b"bearer ":
            hmac.compare_digest(self._token, self._token)  # same work either way
            return False
        return hmac.compare_digest(values[0][7:].strip(), self._token)

    async def _send(self, connection: h11.Connection, writer: asyncio.StreamWriter, reply: _Reply,
                    head: bool) -> None:
        if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = b"" if reply.body is None else orjson.dumps(reply.body)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), ("Connection", "close"), *reply.headers]
        reason = HTTPStatus(reply.status).phrase.encode("ascii")
        data = connection.send(h11.Response(status_code=reply.status, headers=headers, reason=reason)) or b""
        if not head:
            data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()

    # --- the API -----------------------------------------------------------------------------------------

    async def _dispatch(self, request: _Request) -> _Reply:
        backend = self._backend
        try:
            parts = [unquote(part, errors="strict") for part in request.path.split("/")[3:]]
            if request.path == "/admin/migration":
                return _Reply(200, backend.migration())
            if request.path == "/admin/chargers":
                return _Reply(200, {"chargers": backend.chargers()})
            identity = parts[0]
            if len(parts) == 1:
                found = backend.charger(identity)
                return _Reply(200, found) if found is not None else _unknown(identity)
            if request.method == "DELETE":  # forget the operator's choice: the configured rules apply again
                return await self._unavailable_as_503(backend.clear_route(identity))
            return await self._set_route(identity, request.body)
        except UnicodeDecodeError:
            return _error(404, "the identity in the path is not valid percent-encoded UTF-8")

    async def _set_route(self, identity: str, body: bytes) -> _Reply:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, 'the body is not JSON (expected {"mode": "..."})', "body")
        if not isinstance(data, dict):
            return _error(400, 'the body must be a JSON object like {"mode": "shadow"}', "body")
        extra = [name for name in data if name != "mode"]
        if extra:
            return _error(400, f"unknown field {extra[0]!r} (the only field is mode)", extra[0])
        if "mode" not in data:
            return _error(400, "mode is missing", "mode")
        mode = data["mode"]
        if not isinstance(mode, str):
            return _error(400, "mode must be a string", "mode")
        if mode not in ROUTE_MODES:
            return _error(400, f"unknown mode {mode!r}: use one of {', '.join(ROUTE_MODES)}", "mode")
        try:
            result = await self._backend.set_route(identity, mode)
        except ValueError as exc:
            return _error(400, str(exc), "mode")
        except Unavailable as exc:  # the central system the new route needs cannot be reached: nothing changed
            return _error(503, str(exc), None, ("Retry-After", "10"))
        return _Reply(200, result) if result is not None else _unknown(identity)

    @staticmethod
    async def _unavailable_as_503(pending: Awaitable[dict[str, Any]]) -> _Reply:
        try:
            return _Reply(200, await pending)
        except Unavailable as exc:
            return _error(503, str(exc), None, ("Retry-After", "10"))


def _unknown(identity: str) -> _Reply:
    return _error(404, f"no charger {identity!r}")


def _check_route(method: str, path: str) -> None:
    """Raises _Refused with 404 (no such path) or 405 (wrong method, with Allow)."""
    parts = path.split("/")[1:]  # "/admin/chargers/CP-1/route" -> ["admin", "chargers", "CP-1", "route"]
    charger = len(parts) in (3, 4) and parts[:2] == ["admin", "chargers"] and bool(parts[2])
    if parts in (["admin", "chargers"], ["admin", "migration"]) or (charger and len(parts) == 3):
        allow = "GET"
    elif charger and parts[3] == "route":
        allow = "PUT, DELETE"
    else:
        raise _Refused(_error(404, f"no such path: {path[:200]}"))
    if method not in allow.split(", "):
        raise _Refused(_error(405, f"{method} is not allowed here (allowed: {allow})", None, ("Allow", allow)))


async def _next_event(connection: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await reader.read(65_536))  # b"" at EOF: h11 reports ConnectionClosed or an error


async def _read_body(connection: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     request: h11.Request) -> bytes:
    too_large = _Refused(_error(413, f"the body is larger than {MAX_BODY} bytes"))
    lengths = [value for name, value in request.headers if name == b"content-length"]
    if lengths and int(lengths[0]) > MAX_BODY:  # h11 checked it is a number; refuse before reading it
        raise too_large
    if connection.they_are_waiting_for_100_continue:
        writer.write(connection.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    body = bytearray()
    while True:
        event = await _next_event(connection, reader)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise too_large
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:  # ConnectionClosed before the end of the body
            raise h11.RemoteProtocolError("the body ended early", error_status_hint=400)
