"""Issue 3 acceptance, end to end: through a real ``ocpp-bridge serve`` process, every 1.6 charger-initiated
action reaches the CSMS as schema-valid 2.0.1 (or 2.1), and every CSMS-initiated 2.0.1/2.1 action sent to a
translated 1.6 charger gets exactly one schema-valid answer.

The peers are raw WebSocket endpoints, and every frame they receive from the bridge is checked with jsonschema
against the OCA schema files of the ``ocpp`` package: a check independent of the bridge's own validator.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from ocpp_bridge import coverage
from tests.integration.conftest import free_port
from tests.unit.test_every_csms_action import CHARGER, CSMS_ACTIONS, EXAMPLES

NOW = "2024-05-01T10:00:00Z"
# Each 1.6 charger-initiated action with a valid request (the security whitepaper ones included).
CHARGER_CALLS: dict[str, dict[str, Any]] = {
    "BootNotification": {"chargePointVendor": "Acme", "chargePointModel": "X1"},
    "Heartbeat": {},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": NOW},
    "Authorize": {"idTag": "04A1B2C3"},
    "StartTransaction": {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0, "timestamp": NOW},
    "MeterValues": {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "12"}]}]},
    "StopTransaction": {"transactionId": 1, "meterStop": 50, "timestamp": NOW},
    "DataTransfer": {"vendorId": "com.acme", "messageId": "hello", "data": "x"},
    "DiagnosticsStatusNotification": {"status": "Idle"},
    "FirmwareStatusNotification": {"status": "Idle"},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": NOW},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
    "SignedFirmwareStatusNotification": {"status": "Idle"},
    "LogStatusNotification": {"status": "Idle"},
}
# What the CSMS answers to each 2.x call a station sends.
CSMS_ANSWERS: dict[str, dict[str, Any]] = {
    "BootNotification": {"currentTime": NOW, "interval": 300, "status": "Accepted"},
    "Heartbeat": {"currentTime": NOW},
    "Authorize": {"idTokenInfo": {"status": "Accepted"}},
    "TransactionEvent": {"idTokenInfo": {"status": "Accepted"}},
    "DataTransfer": {"status": "Accepted"},
    "SignCertificate": {"status": "Accepted"},
}


@cache
def schema(version: str, name: str) -> dict[str, Any]:
    folder = {"ocpp1.6": "v16", "ocpp2.0.1": "v201", "ocpp2.1": "v21"}[version]
    return json.loads((files("ocpp") / folder / "schemas" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def request_schema(version: str, action: str) -> dict[str, Any]:
    if version == "ocpp1.6":
        return schema(version, action)
    try:
        return schema(version, f"{action}Request")
    except FileNotFoundError:
        return schema(version, action)  # 2.1 SEND-only messages


def check(version: str, name: str, payload: dict[str, Any]) -> None:
    jsonschema.validate(payload, schema(version, name) if name.endswith("Response") else request_schema(version, name))


class RawCsms:
    """Answers every station CALL (validating it first); records every answer to its own CALLs."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.received: list[str] = []
        self.answers: dict[str, list[Any]] = {}
        self.connection: ServerConnection | None = None
        self.connected = asyncio.Event()
        self.pending: dict[str, tuple[str, asyncio.Future[list[Any]]]] = {}

    async def handler(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.connected.set()
        async for text in connection:
            frame = json.loads(text)
            if frame[0] == 2:
                check(self.version, frame[2], frame[3])
                self.received.append(frame[2])
                await connection.send(json.dumps([3, frame[1], CSMS_ANSWERS.get(frame[2], {})]))
            elif frame[1] in self.pending:
                action, future = self.pending.pop(frame[1])
                if frame[0] == 3:
                    check(self.version, f"{action}Response", frame[2])
                future.set_result(frame)

    async def call(self, unique_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
        assert self.connection is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = (action, future)
        await self.connection.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(future, 30)


async def charger_loop(connection: Any, inbox: asyncio.Queue[list[Any]]) -> None:
    """The 1.6 charger: answers the bridge's CALLs (validated); queues answers to its own CALLs."""
    async for text in connection:
        frame = json.loads(text)
        if frame[0] == 2:
            check("ocpp1.6", frame[2], frame[3])
            answer = CHARGER.get(frame[2], {"status": "Accepted"} if frame[2] not in ("GetConfiguration",) else {})
            await connection.send(json.dumps([3, frame[1], answer]))
        else:
            await inbox.put(frame)


@pytest.mark.parametrize("upstream", ["ocpp2.0.1", "ocpp2.1"])
async def test_every_action_both_ways_is_schema_valid(bridge_factory: Any, upstream: str) -> None:
    csms = RawCsms(upstream)
    port = free_port()
    async with serve(csms.handler, "127.0.0.1", port, subprotocols=[upstream]):  # type: ignore[list-item]
        bridge = bridge_factory(upstream=f"ws://127.0.0.1:{port}/ocpp",
                                args=["--upstream-protocols", upstream])
        async with connect(bridge.ws_url("EVERY-1"), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            inbox: asyncio.Queue[list[Any]] = asyncio.Queue()
            reader = asyncio.create_task(charger_loop(ws, inbox))
            await asyncio.wait_for(csms.connected.wait(), 10)
            ids = itertools.count(1)
            # charger -> CSMS: every 1.6 charger-initiated action
            assert set(CHARGER_CALLS) == coverage.V16_FROM_CHARGER
            for action, payload in CHARGER_CALLS.items():
                unique_id = f"cp-{next(ids)}"
                await ws.send(json.dumps([2, unique_id, action, payload]))
                answer = await asyncio.wait_for(inbox.get(), 30)
                assert answer[0] == 3 and answer[1] == unique_id, (action, answer)
                check("ocpp1.6", f"{action}Response", answer[2])
            # CSMS -> charger: every CSMS-initiated action of the negotiated version
            known = {name for name in CSMS_ACTIONS if _exists(upstream, name)}
            for action in sorted(known):
                answer = await csms.call(f"csms-{next(ids)}", action, EXAMPLES[action])
                assert answer[0] in (3, 4), (action, answer)
                if answer[0] == 4:  # only what 1.6 truly cannot do may be a CALLERROR, and then NotSupported
                    assert answer[2] in ("NotSupported", "NotImplemented"), (action, answer)
            expected = {"BootNotification", "TransactionEvent", "StatusNotification", "NotifyReport",
                        "SecurityEventNotification", "LogStatusNotification", "FirmwareStatusNotification"}

            async def delivered() -> None:  # queued deliveries (and the report) reach the CSMS
                while not expected <= set(csms.received):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(delivered(), 30)
            reader.cancel()


def _exists(version: str, action: str) -> bool:
    try:
        request_schema(version, action)
    except FileNotFoundError:
        return False
    return True
