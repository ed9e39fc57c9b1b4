"""The admin HTTP API over real loopback sockets: auth, routing, validation, limits, TLS."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from ocpp_bridge.io import admin, security
from ocpp_bridge.io.admin import AdminServer, Unavailable

TOKEN = "admin-token-0123456789abcdef"


class Backend:
    """A few chargers in memory; the real runtime keeps sessions."""

    def __init__(self) -> None:
        self.modes = {"CP-1": "translate", "CP 2": "legacy", "NOLEG": "translate"}

    def chargers(self) -> list[dict[str, Any]]:
        return [{"identity": identity, "mode": mode} for identity, mode in self.modes.items()]

    def charger(self, identity: str) -> dict[str, Any] | None:
        return {"identity": identity, "mode": self.modes[identity]} if identity in self.modes else None

    async def set_route(self, identity: str, mode: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        if identity == "BOOM":
            raise RuntimeError("backend bug")
        if identity == "ODD":
            return {"when": object()}  # not JSON
        if identity not in self.modes:
            return None
        if identity == "NOLEG" and mode != "translate":
            raise ValueError(f"route mode {mode!r} needs an old 1.6 central system")
        self.modes[identity] = mode
        return self.charger(identity)

    def migration(self) -> dict[str, Any]:
        return {"chargers": len(self.modes), "by_mode": dict(Counter(self.modes.values()))}

    async def clear_route(self, identity: str) -> dict[str, Any]:
        if identity == "STORE-DOWN":
            raise Unavailable("the route cannot be stored: disk full")
        self.modes.pop(identity, None)
        return {"identity": identity, "mode": "translate", "cleared": True}


@pytest.fixture
async def server() -> AsyncIterator[AdminServer]:
    running = await AdminServer.start("127.0.0.1:0", TOKEN, Backend())
    yield running
    await running.close()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(security, "event", lambda kind, **fields: seen.append((kind, fields)))
    return seen


class Reply:
    def __init__(self, raw: bytes) -> None:
        head, _, self.raw_body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    @property
    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.raw_body)


async def exchange(port: int, raw: bytes, context: ssl.SSLContext | None = None) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="localhost" if context else None)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    return Reply(data)


def request(method: str, path: str, body: bytes | None = None, token: str | None = TOKEN,
            extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: admin\r\n{extra}"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def call(server: AdminServer, method: str, path: str, body: bytes | None = None, **kw: Any) -> Reply:
    return await exchange(server.port, request(method, path, body, **kw))


# --- the API -----------------------------------------------------------------------------------------------


async def test_list_show_switch_and_migration(server: AdminServer) -> None:
    reply = await call(server, "GET", "/admin/chargers")
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert reply.headers["content-length"] == str(len(reply.raw_body))
    assert reply.json == {"chargers": [{"identity": "CP-1", "mode": "translate"},
                                       {"identity": "CP 2", "mode": "legacy"},
                                       {"identity": "NOLEG", "mode": "translate"}]}
    assert (await call(server, "GET", "/admin/chargers/CP%202")).json == {"identity": "CP 2", "mode": "legacy"}
    reply = await call(server, "PUT", "/admin/chargers/CP-1/route", b'{"mode": "shadow"}')
    assert reply.status == 200 and reply.json == {"identity": "CP-1", "mode": "shadow"}
    assert (await call(server, "GET", "/admin/chargers/CP-1?fresh=1")).json["mode"] == "shadow"
    reply = await call(server, "GET", "/admin/migration")
    assert reply.json == {"chargers": 3, "by_mode": {"shadow": 1, "legacy": 1, "translate": 1}}


async def test_http_client_library_and_expect_continue(server: AdminServer) -> None:
    def put() -> tuple[int, str, bytes]:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("PUT", "/admin/chargers/CP-1/route", body=b'{"mode": "legacy"}',
                       headers={"Authorization": f"Bearer {TOKEN}", "Expect": "100-continue"})
        response = client.getresponse()
        try:
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            client.close()

    status, content_type, body = await asyncio.to_thread(put)
    assert (status, content_type, json.loads(body)) == (200, "application/json", {"identity": "CP-1",
                                                                                 "mode": "legacy"})


# --- authentication ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [
    "", f"Authorization: Bearer {TOKEN}x\r\n", f"Authorization: Basic {TOKEN}\r\n", "Authorization: Bearer\r\n",
    f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer {TOKEN}\r\n",
])
async def test_requests_without_the_token_get_401_and_an_event(
        server: AdminServer, events: list[tuple[str, dict[str, Any]]], auth: str) -> None:
    for path in ("/admin/chargers", "/nothing/here"):  # an unknown path does not reveal itself before auth
        reply = await exchange(server.port, request("GET", path, token=None, extra=auth))
        assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer"
        assert reply.json == {"error": "missing or wrong bearer token"}
    assert [kind for kind, _ in events] == ["admin_auth_failed"] * 2
    assert events[0][1] == {"ip": "127.0.0.1", "path": "/admin/chargers"}
    assert TOKEN not in repr(events)


async def test_bearer_scheme_is_case_insensitive(server: AdminServer) -> None:
    reply = await exchange(server.port, request("GET", "/admin/migration", token=None,
                                                extra=f"authorization: bearer {TOKEN}\r\n"))
    assert reply.status == 200


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field", "message"), [
    (b"{mode: shadow}", "body", "not JSON"),
    (b"", "body", "not JSON"),
    (b'["shadow"]', "body", "JSON object"),
    (b"{}", "mode", "mode is missing"),
    (b'{"mode": 3}', "mode", "mode must be a string"),
    (b'{"mode": "mirror"}', "mode", "unknown mode 'mirror': use one of translate, legacy, shadow"),
    (b'{"mode": "shadow", "force": true}', "force", "unknown field 'force'"),
])
async def test_bad_route_bodies_name_the_field(server: AdminServer, body: bytes, field: str, message: str) -> None:
    reply = await call(server, "PUT", "/admin/chargers/CP-1/route", body)
    assert reply.status == 400 and reply.json["field"] == field
    assert message in reply.json["error"]


async def test_the_backend_refusal_is_a_400_with_its_message(server: AdminServer) -> None:
    reply = await call(server, "PUT", "/admin/chargers/NOLEG/route", b'{"mode": "legacy"}')
    assert reply.status == 400
    assert reply.json == {"error": "route mode 'legacy' needs an old 1.6 central system", "field": "mode"}


async def test_a_backend_fault_is_a_500_and_the_server_goes_on(server: AdminServer) -> None:
    for identity in ("BOOM", "ODD"):
        reply = await call(server, "PUT", f"/admin/chargers/{identity}/route", b'{"mode": "legacy"}')
        assert reply.status == 500 and "internal error" in reply.json["error"]
    assert (await call(server, "GET", "/admin/migration")).status == 200


@pytest.mark.parametrize(("method", "path", "status", "allow"), [
    ("GET", "/admin/chargers/NOPE", 404, None),
    ("GET", "/admin/chargers/", 404, None),
    ("GET", "/admin", 404, None),
    ("GET", "/admin/chargers/CP-1/colour", 404, None),
    ("GET", "/admin/chargers/CP-1/route/x", 404, None),
    ("GET", "/admin/chargers/%FF", 404, None),
    ("POST", "/admin/chargers", 405, "GET"),
    ("DELETE", "/admin/chargers/CP-1", 405, "GET"),
    ("GET", "/admin/chargers/CP-1/route", 405, "PUT, DELETE"),
    ("PUT", "/admin/migration", 405, "GET"),
    ("HEAD", "/admin/migration", 405, "GET"),
])
async def test_unknown_paths_and_wrong_methods(server: AdminServer, method: str, path: str, status: int,
                                               allow: str | None) -> None:
    reply = await call(server, method, path)
    assert reply.status == status
    assert reply.headers.get("allow") == allow
    if method != "HEAD":
        assert "error" in reply.json
    else:
        assert reply.raw_body == b""


async def test_put_for_an_unknown_charger_is_404(server: AdminServer) -> None:
    reply = await call(server, "PUT", "/admin/chargers/NOPE/route", b'{"mode": "legacy"}')
    assert reply.status == 404 and reply.json == {"error": "no charger 'NOPE'"}


# --- limits and malformed HTTP -----------------------------------------------------------------------------


async def test_bodies_over_64_kib_get_413(server: AdminServer) -> None:
    head = request("PUT", "/admin/chargers/CP-1/route").replace(b"\r\n\r\n", b"\r\nContent-Length: 70000\r\n\r\n")
    reply = await exchange(server.port, head)  # refused before the body is sent
    assert reply.status == 413 and "65536" in reply.json["error"]
    chunk = b"x" * 40_000
    chunked = request("PUT", "/admin/chargers/CP-1/route", extra="Transfer-Encoding: chunked\r\n")
    chunked += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n"
    reply = await exchange(server.port, chunked)
    assert reply.status == 413


async def test_a_slow_client_gets_408(server: AdminServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "REQUEST_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /admin/chargers HTTP/1.1\r\nHost: admin\r\n")  # the headers never end
    reply = Reply(await asyncio.wait_for(reader.read(), 5))
    writer.close()
    assert reply.status == 408 and reply.headers["connection"] == "close"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("PUT", "/admin/chargers/CP-1/route", b'{"mode": "legacy"}')[:-5])  # body incomplete
    assert Reply(await asyncio.wait_for(reader.read(), 5)).status == 408
    writer.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /admin/chargers HTTP/1.1\r\nno colon here\r\n\r\n",
    b"PUT /admin/chargers/CP-1/route HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
    b"GET /admin/chargers HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /admin/chargers HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 30_000,  # headers over 16 KiB: 431
])
async def test_malformed_http_gets_a_4xx_and_the_server_goes_on(server: AdminServer, raw: bytes) -> None:
    reply = await exchange(server.port, raw)
    assert 400 <= reply.status < 500 and "malformed HTTP request" in reply.json["error"]
    assert (await call(server, "GET", "/admin/migration")).status == 200


async def test_a_client_that_closes_at_once_gets_nothing_and_harms_nothing(server: AdminServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"PUT /admin/chargers/CP-1/route HTTP/1.1\r\nHost: a\r\n")
    writer.write_eof()  # EOF in the middle of the headers
    assert Reply(await asyncio.wait_for(reader.read(), 5)).status == 400
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("PUT", "/admin/chargers/CP-1/route", b'{"mode": "legacy"}')[:-3])
    writer.write_eof()  # EOF in the middle of the body
    assert Reply(await asyncio.wait_for(reader.read(), 5)).status == 400
    writer.close()
    assert (await call(server, "GET", "/admin/migration")).status == 200


async def test_close_ends_connections_in_progress() -> None:
    running = await AdminServer.start("127.0.0.1:0", TOKEN, Backend())
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /admin/chargers HTTP/1.1\r\n")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(running.close(), 2)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


# --- TLS ---------------------------------------------------------------------------------------------------


async def test_tls_with_the_packaged_context(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "admin.pem", tmp_path / "admin.key"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    running = await AdminServer.start("127.0.0.1:0", TOKEN, Backend(), ssl=admin.tls_context(cert, key))
    try:
        client = ssl.create_default_context()
        ca.configure_trust(client)
        reply = await exchange(running.port, request("GET", "/admin/migration"), client)
        assert reply.status == 200 and reply.json["chargers"] == 3

        def https() -> int:
            connection = http.client.HTTPSConnection("localhost", running.port, context=client, timeout=5)
            connection.request("GET", "/admin/chargers/CP-1", headers={"Authorization": "Bearer nope"})
            status = connection.getresponse().status
            connection.close()
            return status

        assert await asyncio.to_thread(https) == 401
        plain = await exchange(running.port, request("GET", "/admin/migration"))  # no TLS: no HTTP answer
        assert plain.status == 0
        assert (await exchange(running.port, request("GET", "/admin/migration"), client)).status == 200
    finally:
        await running.close()


async def test_connections_beyond_the_cap_are_closed_at_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "MAX_CONNECTIONS", 1)
    running = await AdminServer.start("127.0.0.1:0", TOKEN, Backend())
    try:
        _, slow = await asyncio.open_connection("127.0.0.1", running.port)
        slow.write(b"GET /admin/chargers HTTP/1.1\r\n")  # holds the one slot
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(request("GET", "/admin/migration"))
        try:
            answer = await asyncio.wait_for(reader.read(), 2)
        except ConnectionResetError:  # aborted: a reset rather than an orderly close
            answer = b""
        assert answer == b""  # closed without an answer
        writer.close()
        slow.close()
    finally:
        await running.close()


async def test_start_refuses_a_bad_address_or_an_empty_token() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        await AdminServer.start("nowhere", TOKEN, Backend())
    with pytest.raises(ValueError, match="token"):
        await AdminServer.start("127.0.0.1:0", "", Backend())


async def test_delete_route_forgets_the_operators_choice(server: AdminServer) -> None:
    reply = await call(server, "DELETE", "/admin/chargers/CP-1/route")
    assert reply.status == 200 and reply.json == {"identity": "CP-1", "mode": "translate", "cleared": True}
    reply = await call(server, "DELETE", "/admin/chargers/STORE-DOWN/route")
    assert reply.status == 503 and "disk full" in reply.json["error"] and reply.headers["retry-after"] == "10"
