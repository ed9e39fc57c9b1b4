"""What an operator sees: Prometheus metrics from a real bridge process, one span per exchange, readiness, SIGHUP.

Metric values are asserted after a known sequence of frames, so a count that drifts is a failing test.
"""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocpp.v16 import call as call16
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ocpp_bridge import config, telemetry
from ocpp_bridge.io.listener import Bridge
from ocpp_bridge.store.sqlite import SqliteStore
from tests.integration.conftest import free_port, http_get
from tests.integration.peers import charger, within


def now() -> str:
    return datetime.now(UTC).isoformat()


def scrape(port: int) -> dict[str, float]:
    """The Prometheus exposition as {"name{labels}": value} (labels in the order the exporter writes them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, sample in samples.items():
        metric, _, rest = key.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            total += sample
    return total


async def run_session(url: str, identity: str, meter_values: int) -> Any:
    async with charger(url, identity) as link:
        boot = await link.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        assert boot.status == "Accepted"
        started = await link.call(call16.StartTransaction(connector_id=1, id_tag="04A1B2C3", meter_start=0,
                                                          timestamp=now()))
        for n in range(meter_values):
            await link.call(call16.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
                {"timestamp": now(), "sampledValue": [{"value": str(100 * (n + 1)), "unit": "Wh"}]}]))
        await link.call(call16.StopTransaction(transaction_id=started.transaction_id, meter_stop=500,
                                               timestamp=now()))
        await link.call(call16.DataTransfer(vendor_id="x"))
        return started


async def test_prometheus_metrics_after_a_known_session(bridge_factory: Any, csms: Any, identity: str) -> None:
    metrics_port = free_port()
    bridge = bridge_factory(args=["--metrics-listen", f"127.0.0.1:{metrics_port}"])
    await run_session(bridge.ws_url(identity), identity, meter_values=3)
    await csms.transaction_events(identity, 5)  # Started, 3 x Updated, Ended all delivered
    samples: dict[str, float] = {}

    async def delivered() -> bool:
        nonlocal samples
        samples = scrape(metrics_port)
        return value(samples, "ocpp_bridge_events_total", kind="queue.delivered") >= 5

    async def settled() -> None:  # the CSMS may record an event a moment before the bridge counts it
        while not await delivered() or value(samples, "ocpp_bridge_chargers_connected", protocol="ocpp1.6") != 0:
            await asyncio.sleep(0.05)

    await within(settled())
    exchanges = "ocpp_bridge_exchanges_total"
    assert value(samples, exchanges, origin="charger", action="MeterValues", outcome="translated") == 3
    assert value(samples, exchanges, origin="charger", action="StartTransaction", outcome="translated") == 1
    assert value(samples, exchanges, origin="charger", action="StopTransaction", outcome="translated") == 1
    assert value(samples, exchanges, origin="charger", action="BootNotification", outcome="translated") == 1
    assert value(samples, exchanges, origin="charger", action="DataTransfer", outcome="translated") == 1
    assert value(samples, exchanges, origin="charger", outcome="failed") == 0
    assert value(samples, "ocpp_bridge_events_total", kind="transaction.started") == 1
    assert value(samples, "ocpp_bridge_events_total", kind="queue.delivered") == 5
    assert value(samples, "ocpp_bridge_exchange_duration_seconds_count", action="MeterValues") == 3
    assert value(samples, "ocpp_bridge_queue_depth") == 0
    assert value(samples, "ocpp_bridge_chargers_connected", protocol="ocpp1.6") == 0  # the charger has left


async def test_one_span_per_exchange_with_both_message_ids(tmp_path: Path, csms: Any, csms_port: int,
                                                           identity: str) -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup(traces=True, span_exporter=exporter)
    settings = config.load(upstream=f"ws://127.0.0.1:{csms_port}/ocpp", listen="127.0.0.1:0",
                           state=str(tmp_path / "s.db"))
    bridge = Bridge(settings, SqliteStore(tmp_path / "s.db"), settings.core())
    await bridge.start()
    try:
        async with charger(f"ws://127.0.0.1:{bridge.port}/ocpp/{identity}", identity) as link:
            await link.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            await link.call(call16.Heartbeat())
        boot_seen = (await csms.expect(identity, "BootNotification"))
        assert boot_seen is not None
    finally:
        await bridge.stop()
        assert telemetry.TELEMETRY.tracer is not None
        telemetry.TELEMETRY.flush()
        telemetry.setup()  # back to no tracing for the other tests in this process
    spans = [s for s in exporter.get_finished_spans() if s.attributes.get("ocpp.identity") == identity]
    by_action = {s.attributes["ocpp.action"]: s for s in spans}
    assert set(by_action) == {"BootNotification", "Heartbeat"}  # one span per exchange
    boot = by_action["BootNotification"]
    assert boot.attributes["ocpp.origin"] == "charger" and boot.attributes["ocpp.outcome"] == "translated"
    assert boot.attributes["ocpp.version"] == "ocpp1.6" and boot.attributes["ocpp.peer.version"] == "ocpp2.0.1"
    peer_ids = list(boot.attributes["ocpp.peer.message_ids"])
    assert len(peer_ids) == 1 and peer_ids[0] != boot.attributes["ocpp.message_id"]  # the 2.0.1 id is linked
    assert boot.end_time >= boot.start_time


async def test_readiness_and_health(bridge_factory: Any, csms: Any) -> None:
    bridge = bridge_factory()
    status, _, body = http_get(bridge.port, "/readyz")
    assert status == 200 and b'"ready"' in body
    status, _, _ = http_get(bridge.port, "/healthz")
    assert status == 200


async def test_sighup_reload_keeps_sessions_and_applies_new_settings(bridge_factory: Any, csms: Any,
                                                                      identity: str, tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.toml"
    config_file.write_text("call_timeout = 20\n")
    bridge = bridge_factory(args=["--config", str(config_file)])
    async with charger(bridge.ws_url(identity), identity) as link:
        await link.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        config_file.write_text(f'call_timeout = 20\ndebug_identities = ["{identity}"]\n')
        bridge.proc.send_signal(signal.SIGHUP)
        await within(_log_has(bridge, "bridge.reloaded"))
        await link.call(call16.Heartbeat())  # the session survived the reload
        await within(_log_has(bridge, "frame"))  # and full frames of this identity are now logged
        frames = [line for line in bridge.log_lines() if line.get("event") == "frame"]
        assert any(line.get("identity") == identity and "Heartbeat" in line.get("frame", "") for line in frames)
        config_file.write_text("call_timeout = -1\n")  # invalid: nothing changes, the bridge keeps running
        bridge.proc.send_signal(signal.SIGHUP)
        await within(_log_has(bridge, "bridge.reload_failed"))
        await link.call(call16.Heartbeat())


async def _log_has(bridge: Any, event: str) -> None:
    while not any(line.get("event") == event for line in bridge.log_lines()):
        await asyncio.sleep(0.05)


async def test_sigterm_drains_calls_in_flight_then_closes_with_1001(bridge_factory: Any, csms: Any,
                                                                     identity: str) -> None:
    release = asyncio.Event()

    async def slow_heartbeat(_payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"currentTime": now()}

    bridge = bridge_factory()
    async with charger(bridge.ws_url(identity), identity) as link:
        await link.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        csms.answer("Heartbeat", slow_heartbeat)
        pending = asyncio.create_task(link.call(call16.Heartbeat()))
        await csms.expect(identity, "Heartbeat")  # in flight at the CSMS
        bridge.proc.send_signal(signal.SIGTERM)
        await within(_log_has(bridge, "bridge.stopping"))
        try:  # draining: the listening socket is closed (refused) or, racing it, readiness says 503
            status = http_get(bridge.port, "/readyz")[0]
        except OSError:
            status = 503
        assert status == 503
        release.set()  # the CSMS answers while the bridge drains
        answer = await within(pending)
        assert answer.current_time  # the charger got its answer before the session was closed
        assert await link.closed() == 1001
    assert await asyncio.to_thread(bridge.proc.wait, 10) == 0
