"""The charger's HTTP upgrade: identity, subprotocol, the CSMS's verdict, credentials, health, upstream version.

The bridge decides in this order: identity (400, before the CSMS is contacted), subprotocol (none in common:
complete the upgrade without one and close 1002, OCPP-J §3.2), then the CSMS's own upgrade with the charger's
credentials (its 401/403/404 is the charger's answer; unreachable 503; anything else 502).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from .conftest import http_get
from .peers import charger, within


async def refused_status(url: str, protocols: tuple[str, ...] = ("ocpp1.6",)) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        await within(connect(url, subprotocols=[Subprotocol(p) for p in protocols]))
    return refused.value.response.status_code, refused.value.response.body or b""


async def barrier(bridge, csms, new_identity) -> str:
    """Connect a good charger: once the CSMS has seen it, it would have seen anything the bridge sent before."""
    good = new_identity()
    async with charger(bridge.ws_url(good), good) as charge_point:
        await charge_point.call(c16.Heartbeat())
    return good


@pytest.mark.parametrize("tail", [
    pytest.param("a:b", id="colon"),
    pytest.param("A" * 49, id="49-characters"),
    pytest.param("caf%C3%A9", id="non-ascii"),
    pytest.param("bad%FFutf8", id="invalid-percent-encoding"),
    pytest.param("x%2Fy", id="encoded-slash"),
    pytest.param("semi%3Bcolon%3Cscript%3E", id="markup"),
    pytest.param("nul%00byte", id="control-character"),
    pytest.param("CP1/", id="trailing-slash"),
])
async def test_bad_identity_is_400_and_never_reaches_the_csms(bridge, csms, new_identity, tail):
    status, body = await refused_status(f"{bridge.url}/{tail}")
    assert status == 400
    assert "error" in json.loads(body)
    good = await barrier(bridge, csms, new_identity)
    assert csms.identities() == [good]


async def test_identity_of_48_characters_is_accepted(bridge, csms):
    identity = "L" * 48
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
    assert csms.identities() == [identity]
    assert csms.handshakes[0].path == f"/ocpp/{identity}"


@pytest.mark.parametrize("prefix", ["RDAM%20", "RDAM%7C", "a*b=c+d@e.f_"])
async def test_identity_is_re_encoded_identically_upstream(bridge, csms, new_identity, prefix):
    identity = f"{prefix}{new_identity()[-20:]}"
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
    assert csms.handshakes[0].path == f"/ocpp/{identity}"


async def test_query_and_leading_path_are_not_part_of_the_identity(bridge, csms, identity):
    async with charger(f"ws://127.0.0.1:{bridge.port}/some/other/prefix/{identity}?token=x", identity) as link:
        await link.call(c16.Heartbeat())
    assert csms.handshakes[0].path == f"/ocpp/{identity}"


@pytest.mark.parametrize("tail", ["..", "."])
async def test_dot_segment_identity_is_refused(bridge, csms, new_identity, tail):
    status, _ = await refused_status(f"{bridge.url}/{tail}")
    assert status == 400


async def test_unknown_station_at_the_csms_is_404_for_the_charger(bridge, csms_factory, new_identity):
    known, unknown = new_identity(), new_identity()
    csms = await csms_factory(known_ids={known})
    status, _ = await refused_status(bridge.ws_url(unknown))
    assert status == 404
    async with charger(bridge.ws_url(known), known) as charge_point:  # a known station still gets in
        await charge_point.call(c16.Heartbeat())
    assert csms.identities() == [unknown, known]
    assert list(csms.stations) == [known]


@pytest.mark.parametrize(("csms_status", "charger_status"), [(401, 401), (403, 403), (500, 502), (302, 502)])
async def test_csms_refusal_reaches_the_charger(bridge, csms_factory, identity, csms_status, charger_status):
    csms = await csms_factory(gate=lambda handshake: csms_status)
    status, _ = await refused_status(bridge.ws_url(identity))
    assert status == charger_status
    assert csms.identities() == [identity]


async def test_csms_down_is_503(bridge, identity):
    # No CSMS listens on the upstream port in this test.
    status, body = await refused_status(bridge.ws_url(identity))
    assert status == 503
    assert "error" in json.loads(body)


@pytest.mark.parametrize("offered", [("ocpp9.9",), ("ocpp1.5", "ocpp2.0"), ()],
                         ids=["unknown", "two-unknown", "none"])
async def test_no_common_subprotocol_completes_the_handshake_then_closes_1002(bridge, csms, new_identity,
                                                                             offered):
    identity = new_identity()
    async with connect(bridge.ws_url(identity), subprotocols=[Subprotocol(p) for p in offered] or None) as ws:
        assert ws.subprotocol is None  # no Sec-WebSocket-Protocol in the answer
        with pytest.raises(ConnectionClosed):
            await within(ws.recv())
        assert ws.close_code == 1002
    good = await barrier(bridge, csms, new_identity)
    assert csms.identities() == [good]  # the CSMS never heard of the first one


async def test_authorization_header_reaches_the_csms_unchanged(bridge, csms, identity):
    credentials = "Basic " + base64.b64encode(f"{identity}:s3cr3t-Pa55w0rd!".encode()).decode()
    async with charger(bridge.ws_url(identity), identity, headers={"Authorization": credentials}) as charge_point:
        await charge_point.call(c16.Heartbeat())
    (handshake,) = csms.handshakes
    assert handshake.headers["Authorization"] == credentials


async def test_no_authorization_header_none_upstream(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
    assert "Authorization" not in csms.handshakes[0].headers


async def test_a_refused_duplicate_does_not_disturb_the_connected_charger(bridge, csms_factory, identity):
    """SaiFlow: somebody connects with a connected charger's identity and wrong credentials."""
    good = "Basic " + base64.b64encode(f"{identity}:right-password".encode()).decode()
    csms = await csms_factory(gate=lambda handshake: None if handshake.headers.get("Authorization") == good else 401)
    async with charger(bridge.ws_url(identity), identity, headers={"Authorization": good}) as charge_point:
        await charge_point.call(c16.Heartbeat())
        bad = "Basic " + base64.b64encode(f"{identity}:guess".encode()).decode()
        with pytest.raises(InvalidStatus) as refused:
            await within(connect(bridge.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")],
                                 additional_headers={"Authorization": bad}))
        assert refused.value.response.status_code == 401
        # The real charger's session is untouched.
        await charge_point.call(c16.Heartbeat())
        assert charge_point.ws.close_code is None
    assert len(csms.received(identity, "Heartbeat")) == 2
    assert len(csms.history) == 1


@pytest.mark.parametrize(("offer", "agreed"), [
    (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
    (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
    (["ocpp9", "ocpp1.6"], "ocpp1.6"),
])
async def test_the_chargers_preferred_subprotocol_wins(bridge, csms, identity, offer, agreed):
    async with charger(bridge.ws_url(identity), identity, protocol=agreed, offer=offer) as charge_point:
        await charge_point.call((c16 if agreed == "ocpp1.6" else c201).Heartbeat())
    assert csms.connections[identity].subprotocol == "ocpp2.0.1"


async def test_a_new_connection_replaces_the_old_one(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity) as old:
        await old.call(c16.Heartbeat())
        async with charger(bridge.ws_url(identity), identity) as new:
            assert await old.closed() == 1001
            answer = await new.call(c16.Heartbeat())
            assert answer.current_time
    assert [h.identity for h in csms.handshakes] == [identity, identity]
    assert len(csms.received(identity, "Heartbeat")) == 2


async def test_healthz(bridge, csms, identity):
    status, headers, body = http_get(bridge.port, "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "sessions": 0}
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
        status, _, body = http_get(bridge.port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "sessions": 1}


async def test_upstream_protocols_prefer_2_1(bridge_factory, csms_factory, identity):
    csms = await csms_factory(subprotocols=["ocpp2.1", "ocpp2.0.1"])
    process = bridge_factory(args=["--upstream-protocols", "ocpp2.1,ocpp2.0.1"])
    async with charger(process.ws_url(identity), identity) as charge_point:
        assert charge_point.ws.subprotocol == "ocpp1.6"
        boot = await charge_point.call(c16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert boot.status == "Accepted"
        started = await charge_point.call(c16.StartTransaction(connector_id=1, id_tag="TAG21", meter_start=0,
                                                               timestamp="2025-01-01T00:00:00Z"))
        await charge_point.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=5,
                                                    timestamp="2025-01-01T01:00:00Z"))
        await csms.until_ended(identity)  # delivered after the charger's answer: wait before hanging up
    (handshake,) = csms.handshakes
    assert handshake.subprotocols == ["ocpp2.1", "ocpp2.0.1"]
    assert csms.connections[identity].subprotocol == "ocpp2.1"
    station = csms.stations[identity]
    assert type(station).__name__ == "CsmsStation21"  # validated against the 2.1 schemas
    assert station.received("BootNotification")[0]["reason"] == "PowerUp"
    assert [e["eventType"] for e in station.received("TransactionEvent")] == ["Started", "Ended"]


async def test_upstream_protocols_fall_back_to_2_0_1(bridge_factory, csms, identity):
    process = bridge_factory(args=["--upstream-protocols", "ocpp2.1,ocpp2.0.1"])
    async with charger(process.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
    assert csms.connections[identity].subprotocol == "ocpp2.0.1"


async def test_default_upstream_protocol_is_2_0_1(bridge, csms_factory, identity):
    csms = await csms_factory(subprotocols=["ocpp2.1", "ocpp2.0.1"])
    async with charger(bridge.ws_url(identity), identity) as charge_point:
        await charge_point.call(c16.Heartbeat())
    assert csms.handshakes[0].subprotocols == ["ocpp2.0.1"]
    assert csms.connections[identity].subprotocol == "ocpp2.0.1"


async def test_charger_giving_up_during_a_slow_csms_handshake_leaves_no_upstream(bridge, csms, identity):
    csms.hold = asyncio.Event()  # the CSMS is slow to accept the bridge's upgrade

    async def dial() -> Any:
        return await connect(bridge.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")])

    attempt = asyncio.create_task(dial())
    await csms.handshake_of(identity)
    attempt.cancel()  # the charger gives up (its own open timeout) and closes its TCP connection
    with pytest.raises(asyncio.CancelledError):
        await attempt
    csms.hold.set()
    await csms.station(identity)  # the CSMS accepted the bridge's upgrade...
    # ...and the bridge, having nobody to bridge to, must close it again (at once; 3 s is a generous deadline).
    await within(csms.connections[identity].wait_closed(), timeout=3)


async def test_a_request_that_is_not_an_upgrade_never_reaches_the_csms(bridge, csms, new_identity):
    identity = new_identity()
    reader, writer = await within(asyncio.open_connection("127.0.0.1", bridge.port))
    writer.write(f"GET /ocpp/{identity} HTTP/1.1\r\nHost: bridge\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode())
    answer = await within(reader.read())
    writer.close()
    assert answer.startswith(b"HTTP/1.1 426 ")
    good = await barrier(bridge, csms, new_identity)
    assert csms.identities() == [good]
