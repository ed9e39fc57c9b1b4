"""Identity and subprotocol decisions made from a charger's upgrade request."""

from __future__ import annotations

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.io.handshake import HandshakeRefused, choose_version, identity_from_path


@pytest.mark.parametrize(("path", "identity"), [
    ("/ocpp/CP-001", "CP-001"),
    ("/a/b/c/RDAM%20123", "RDAM 123"),  # 2.0.1 Part 4 §3.1.1 example
    ("/RDAM%7C123", "RDAM|123"),  # 2.1 Part 4 Ed.2 example
    ("/ocpp/CP1?token=x", "CP1"),
    ("/" + "A" * 48, "A" * 48),
])
def test_identity_is_the_decoded_last_segment(path: str, identity: str) -> None:
    assert identity_from_path(path) == identity


@pytest.mark.parametrize("path", [
    "/", "/ocpp/", "/ocpp/CP1/", "/" + "A" * 49, "/ocpp/a:b", "/ocpp/a%3Ab", "/ocpp/%FF", "/ocpp/a%2Fb", "/ocpp/ä",
])
def test_bad_identity_is_400(path: str) -> None:
    with pytest.raises(HandshakeRefused) as info:
        identity_from_path(path)
    assert info.value.status == 400


def test_version_follows_the_chargers_preference() -> None:
    assert choose_version(["ocpp1.6"]).version is Version.V16
    assert choose_version(["ocpp2.1, ocpp2.0.1"]).version is Version.V21
    assert choose_version(["ocpp2.0.1", "ocpp1.6"]).version is Version.V201
    choice = choose_version(["foo, ocpp2.0.1, ocpp2.1"])
    assert choice.version is Version.V201 and choice.offered_2x == ("ocpp2.0.1", "ocpp2.1")


def test_nothing_in_common() -> None:
    assert choose_version([]).version is None
    assert choose_version(["ocpp1.5, wamp"]).version is None


async def test_the_upgrade_headers_are_forgotten_once_read_and_the_connection_still_works() -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from ocpp_bridge.io.handshake import forget_headers

    seen: list[str] = []

    async def echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen.append(connection.request.headers["Sec-WebSocket-Protocol"])
        forget_headers(connection)
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/CP1", subprotocols=["ocpp1.6"]) as client:  # type: ignore[list-item]
            forget_headers(client)
            assert client.request is not None and client.response is not None
            assert not client.request.headers and not client.response.headers
            assert client.subprotocol == "ocpp1.6"
            await client.send('[2,"1","Heartbeat",{}]')
            assert await client.recv() == '[2,"1","Heartbeat",{}]'
    assert seen == ["ocpp1.6"]
