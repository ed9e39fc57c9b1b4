"""Issue 8 acceptance: per-charger routes, shadow mode and cut-over, with real processes.

An old 1.6 central system (the ``ocpp`` package's v16 ChargePoint, validating), a 2.0.1 CSMS (its v201
ChargePoint, validating), a real ``ocpp-bridge serve`` with ``--legacy-upstream`` and the admin API, and a 1.6
charger (v16 ChargePoint). Every assertion is about what one of the three peers saw, or what the admin API says.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from websockets.protocol import State

from .conftest import BridgeProcess, free_port
from .peers import Csms, charger, check_one_transaction, now, within

TOKEN = "migration-admin-token-0123456789"
pytestmark = pytest.mark.asyncio


@dataclass
class Fleet:
    bridge: BridgeProcess
    legacy: Csms  # the old 1.6 central system
    csms: Csms  # the new 2.0.1 CSMS
    admin_port: int

    async def admin(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        def request() -> tuple[int, Any]:
            connection = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            data = json.dumps(body).encode() if body is not None else None
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            finally:
                connection.close()

        return await asyncio.to_thread(request)

    async def set_route(self, identity: str, mode: str) -> dict[str, Any]:
        status, body = await self.admin("PUT", f"/admin/chargers/{quote(identity)}/route", {"mode": mode})
        assert status == 200, (status, body)
        assert body["mode"] == mode
        return body  # type: ignore[no-any-return]


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, bridge_factory: Callable[..., BridgeProcess],
                csms_factory: Callable[..., Any]) -> Fleet:
    mode = getattr(request, "param", "translate")
    legacy = await csms_factory(subprotocols=["ocpp1.6"], port=free_port())
    csms = await csms_factory()
    admin_port = free_port()
    bridge = bridge_factory(args=["--legacy-upstream", f"ws://127.0.0.1:{legacy.port}/steve/ws",
                                  "--default-route", mode, "--admin-listen", f"127.0.0.1:{admin_port}",
                                  "--admin-token", TOKEN])
    return Fleet(bridge, legacy, csms, admin_port)


async def _boot(link: Any) -> Any:
    return await link.call(c16.BootNotification(charge_point_model="M1", charge_point_vendor="V1"))


def _calls(frames: list[str]) -> list[str]:
    return [frame for frame in frames if frame.startswith("[2")]


@pytest.mark.parametrize("fleet", ["legacy"], indirect=True)
async def test_legacy_route_old_system_sees_the_chargers_frames_unchanged(fleet: Fleet, identity: str) -> None:
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 77  # the old system's answer
        await link.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        start = await link.call(c16.StartTransaction(connector_id=1, id_tag="TAG-L", meter_start=10,
                                                     timestamp=now()))
        assert start.transaction_id > 90_000  # numbered by the old system
        await link.call(c16.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=[
            {"timestamp": now(), "sampledValue": [{"value": "20", "measurand": "Energy.Active.Import.Register"}]}]))
        await link.call(c16.StopTransaction(meter_stop=30, timestamp=now(), transaction_id=start.transaction_id))
        station = await fleet.legacy.station(identity)
        assert _calls(station.raw_received) == _calls(link.cp.raw_sent)  # byte for byte
        answers = [f for f in station.raw_sent if f.startswith("[3")]
        assert [f for f in link.cp.raw_received if f.startswith("[3")] == answers
        # a call from the old system reaches the charger and its answer comes back
        result = await within(station.call(c16.ChangeConfiguration(key="HeartbeatInterval", value="120")))
        assert result.status == "Accepted"
    assert identity not in fleet.csms.identities()  # the new CSMS never heard of it


async def test_translate_route_new_csms_sees_valid_201(fleet: Fleet, identity: str) -> None:
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 300  # the new CSMS's answer
        start = await link.call(c16.StartTransaction(connector_id=1, id_tag="TAG-T", meter_start=0,
                                                     timestamp=now()))
        await link.call(c16.StopTransaction(meter_stop=5, timestamp=now(), transaction_id=start.transaction_id))
        check_one_transaction(await fleet.csms.until_ended(identity))
    assert identity not in fleet.legacy.identities()


@pytest.mark.parametrize("fleet", ["shadow"], indirect=True)
async def test_shadow_route_old_system_answers_new_csms_gets_the_translated_session(fleet: Fleet,
                                                                                    identity: str) -> None:
    fleet.csms.answer("Authorize", {"idTokenInfo": {"status": "Blocked"}})  # deliberately different
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 77
        await fleet.csms.expect(identity, "BootNotification")
        await link.call(c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        await fleet.csms.expect(identity, "StatusNotification")
        assert (await link.call(c16.Authorize(id_tag="TAG-S"))).id_tag_info["status"] == "Accepted"
        await fleet.csms.expect(identity, "Authorize")
        start = await link.call(c16.StartTransaction(connector_id=1, id_tag="TAG-S", meter_start=100,
                                                     timestamp=now()))
        assert start.transaction_id > 90_000
        await link.call(c16.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=[
            {"timestamp": now(), "sampledValue": [{"value": "150", "measurand": "Energy.Active.Import.Register"}]}]))
        await link.call(c16.StopTransaction(meter_stop=200, timestamp=now(), transaction_id=start.transaction_id))
        events = await fleet.csms.until_ended(identity)
        check_one_transaction(events)
        assert [e["eventType"] for e in events] == ["Started", "Updated", "Ended"]
        assert link.cp.errors_sent == []

        status, detail = await fleet.admin("GET", f"/admin/chargers/{quote(identity)}")
        assert status == 200 and detail["mode"] == "shadow"
        differences = [d for d in detail["recent_differences"] if d["kind"] == "authorization"]
        assert differences and differences[0]["legacy"] == "Accepted" and differences[0]["csms"] == "Blocked"
        assert detail["shadow"]["counts"]["authorization"] >= 1
        status, report = await fleet.admin("GET", "/admin/migration")
        mine = next(c for c in report["chargers"] if c["identity"] == identity)
        assert mine["differences"] >= 1 and mine["ready"] is False and mine["compared"] >= 5


@pytest.mark.parametrize("fleet", ["shadow"], indirect=True)
async def test_cut_over_mid_transaction_and_roll_back_keep_the_socket_open(fleet: Fleet, identity: str) -> None:
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        await _boot(link)
        start = await link.call(c16.StartTransaction(connector_id=1, id_tag="TAG-C", meter_start=0,
                                                     timestamp=now()))
        local_id = start.transaction_id
        started = await fleet.csms.expect(identity, "TransactionEvent", lambda e: e["eventType"] == "Started")
        tx_id = started["transactionInfo"]["transactionId"]

        state = await fleet.set_route(identity, "translate")  # cut over
        assert state["open_transactions"][0]["transaction_id"] == tx_id
        await link.call(c16.MeterValues(connector_id=1, transaction_id=local_id, meter_value=[
            {"timestamp": now(), "sampledValue": [{"value": "500", "measurand": "Energy.Active.Import.Register"}]}]))
        await link.call(c16.StopTransaction(meter_stop=900, timestamp=now(), transaction_id=local_id))
        events = await fleet.csms.until_ended(identity, tx_id)
        assert check_one_transaction(events) == tx_id  # same transactionId, seqNo contiguous from 0
        # the old system still gets the StopTransaction of the transaction it opened
        stop = await fleet.legacy.expect(identity, "StopTransaction")
        assert stop["transactionId"] == local_id and stop["meterStop"] == 900

        csms_station = await fleet.csms.station(identity)
        answer = await within(csms_station.call(c201.RequestStartTransaction(
            id_token={"idToken": "TAG-R", "type": "ISO14443"}, remote_start_id=42)))
        assert answer.status == "Accepted"
        assert (await link.cp.expect("RemoteStartTransaction"))["idTag"] == "TAG-R"

        # a transaction the new CSMS starts ...
        second = await link.call(c16.StartTransaction(connector_id=1, id_tag="TAG-R", meter_start=1000,
                                                      timestamp=now()))
        assert second.transaction_id > local_id  # numbered by the bridge, above the old system's id
        started = await fleet.csms.expect(identity, "TransactionEvent",
                                          lambda e: e["eventType"] == "Started" and e["transactionInfo"][
                                              "transactionId"] != tx_id)
        second_tx = started["transactionInfo"]["transactionId"]

        await fleet.set_route(identity, "legacy")  # ... and a roll-back in the middle of it
        await link.call(c16.MeterValues(connector_id=1, transaction_id=second.transaction_id, meter_value=[
            {"timestamp": now(), "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}]))
        await link.call(c16.StopTransaction(meter_stop=2000, timestamp=now(), transaction_id=second.transaction_id))
        # the new CSMS still ends the transaction it knows, with the same id and contiguous seqNo
        assert check_one_transaction(await fleet.csms.until_ended(identity, second_tx)) == second_tx
        assert (await fleet.legacy.expect(identity, "StopTransaction",
                                          lambda p: p["transactionId"] == second.transaction_id))["meterStop"] == 2000
        heartbeats = len(fleet.legacy.received(identity, "Heartbeat"))
        await link.call(c16.Heartbeat())
        assert len(await fleet.legacy.wait_received(identity, "Heartbeat", heartbeats + 1)) == heartbeats + 1
        legacy_station = await fleet.legacy.station(identity)
        result = await within(legacy_station.call(c16.RemoteStartTransaction(id_tag="TAG-B")))
        assert result.status == "Accepted"
        assert link.ws.state is State.OPEN  # the charger never noticed


async def test_admin_api_refuses_without_token_unknown_identity_and_bad_mode(fleet: Fleet, identity: str) -> None:
    status, _ = await fleet.admin("GET", "/admin/chargers", token=None)
    assert status == 401
    status, _ = await fleet.admin("GET", "/admin/chargers", token="wrong-token-wrong-token")
    assert status == 401
    status, body = await fleet.admin("PUT", "/admin/chargers/NOBODY-HERE/route", {"mode": "translate"})
    assert status == 404
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        await _boot(link)
        status, body = await fleet.admin("PUT", f"/admin/chargers/{identity}/route", {"mode": "sideways"})
        assert status == 400 and body["field"] == "mode"
        status, listing = await fleet.admin("GET", "/admin/chargers")
        assert status == 200
        mine = next(c for c in listing["chargers"] if c["identity"] == identity)
        assert mine["mode"] == "translate" and mine["protocol"] == "ocpp1.6" and mine["legacy"]["name"] == "legacy"


async def test_route_whose_central_system_is_unreachable_answers_503_and_changes_nothing(
        bridge_factory: Callable[..., BridgeProcess], csms: Csms, identity: str) -> None:
    admin_port = free_port()
    bridge = bridge_factory(args=["--legacy-upstream", f"ws://127.0.0.1:{free_port()}/nobody-listens",
                                  "--admin-listen", f"127.0.0.1:{admin_port}", "--admin-token", TOKEN])
    fleet = Fleet(bridge, csms, csms, admin_port)
    async with charger(bridge.ws_url(identity), identity) as link:
        await _boot(link)
        status, body = await fleet.admin("PUT", f"/admin/chargers/{identity}/route", {"mode": "legacy"})
        assert status == 503 and "cannot be opened" in body["error"]
        status, detail = await fleet.admin("GET", f"/admin/chargers/{identity}")
        assert detail["mode"] == "translate"
        await link.call(c16.Heartbeat())  # still served by the new CSMS
        await csms.expect(identity, "Heartbeat")
        assert link.ws.state is State.OPEN


async def test_sighup_with_new_rules_moves_a_connected_charger(bridge_factory: Callable[..., BridgeProcess],
                                                               csms_factory: Callable[..., Any], tmp_path: Any,
                                                               identity: str) -> None:
    legacy = await csms_factory(subprotocols=["ocpp1.6"], port=free_port())
    csms = await csms_factory()
    config = tmp_path / "bridge.toml"
    base = f'legacy_upstream = "ws://127.0.0.1:{legacy.port}/steve"\ndefault_route = "legacy"\n'
    config.write_text(base)
    bridge = bridge_factory(args=["--config", str(config)])
    async with charger(bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 77
        config.write_text(base + f'[[routes]]\nmode = "shadow"\nidentities = ["{identity}"]\n')
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGHUP)
        await csms.station(identity, timeout=10)  # the shadow route opens the new CSMS's side
        await link.call(c16.Heartbeat())
        await legacy.expect(identity, "Heartbeat")  # the old system still answers ...
        await csms.expect(identity, "Heartbeat")  # ... and the new CSMS gets the translated copy
        assert link.ws.state is State.OPEN


async def test_chargers_go_to_the_upstream_their_rule_names(bridge_factory: Callable[..., BridgeProcess],
                                                            csms_factory: Callable[..., Any], tmp_path: Any,
                                                            identity: str) -> None:
    default = await csms_factory()
    regional = await csms_factory(port=free_port())
    config = tmp_path / "bridge.toml"
    config.write_text(f'[upstreams.eu]\nurl = "ws://127.0.0.1:{regional.port}/ocpp"\nprotocols = ["ocpp2.0.1"]\n'
                      f'[[routes]]\nmode = "translate"\nidentities = ["EU-*"]\nupstream = "eu"\n')
    bridge = bridge_factory(args=["--config", str(config)])
    native, translated = f"EU-{identity}-2x", f"EU-{identity}-16"
    async with charger(bridge.ws_url(native), native, protocol="ocpp2.0.1") as link:
        await link.call(c201.BootNotification(charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp"))
    async with charger(bridge.ws_url(translated), translated) as link:
        await _boot(link)
    await regional.expect(native, "BootNotification")
    await regional.expect(translated, "BootNotification")
    assert native not in default.identities() and translated not in default.identities()


async def test_admin_api_over_tls(bridge_factory: Callable[..., BridgeProcess], csms: Csms, tmp_path: Any) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "admin.pem", tmp_path / "admin.key"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    admin_port = free_port()
    bridge_factory(env={"OCPP_BRIDGE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}", "OCPP_BRIDGE_ADMIN_TOKEN": TOKEN,
                        "OCPP_BRIDGE_ADMIN_TLS_CERT": str(cert), "OCPP_BRIDGE_ADMIN_TLS_KEY": str(key)})
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def get(token: str | None) -> int:
        connection = http.client.HTTPSConnection("127.0.0.1", admin_port, timeout=10, context=context)
        try:
            connection.request("GET", "/admin/migration",
                               headers={"Authorization": f"Bearer {token}"} if token else {})
            return connection.getresponse().status
        finally:
            connection.close()

    assert await asyncio.to_thread(get, TOKEN) == 200
    assert await asyncio.to_thread(get, None) == 401
    assert await asyncio.to_thread(plain_status, admin_port) is None  # no plain HTTP on a TLS admin listener


def plain_status(port: int) -> int | None:
    """The status a plain-HTTP request gets, or None when there is no HTTP answer at all."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/admin/migration", headers={"Authorization": f"Bearer {TOKEN}"})
        return connection.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        return None
    finally:
        connection.close()


async def test_an_operators_route_survives_a_restart_until_it_is_cleared(
        bridge_factory: Callable[..., BridgeProcess], csms_factory: Callable[..., Any], tmp_path: Any,
        identity: str) -> None:
    legacy = await csms_factory(subprotocols=["ocpp1.6"], port=free_port())
    csms = await csms_factory()
    admin_port = free_port()
    args = ["--legacy-upstream", f"ws://127.0.0.1:{legacy.port}/steve", "--default-route", "legacy",
            "--admin-listen", f"127.0.0.1:{admin_port}", "--admin-token", TOKEN]
    state = tmp_path / "routes.db"
    fleet = Fleet(bridge_factory(state=state, args=args), legacy, csms, admin_port)
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 77
        await fleet.set_route(identity, "translate")
    assert await fleet.bridge.aterminate() == 0
    fleet.bridge = bridge_factory(state=state, args=args)  # a new process (e.g. a rolling update)
    async with charger(fleet.bridge.ws_url(identity), identity) as link:
        assert (await _boot(link)).interval == 300  # still on the new CSMS
        status, detail = await fleet.admin("GET", f"/admin/chargers/{identity}")
        assert (status, detail["mode"], detail["route_reason"]) == (200, "translate", "admin API")
        status, cleared = await fleet.admin("DELETE", f"/admin/chargers/{identity}/route")
        assert status == 200 and cleared["mode"] == "legacy"  # the rules apply again, at once
        await link.call(c16.Heartbeat())
        await legacy.expect(identity, "Heartbeat")
        assert link.ws.state is State.OPEN
