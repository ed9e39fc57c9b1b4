"""Does one flooding charger hurt another? Heartbeat latency of a quiet charger, idle vs while a second charger
sends ~10,000 frames/s (issue 5: within 2x of its idle value).

Starts a tiny 2.0.1 CSMS (answers Heartbeat) and a real ``ocpp-bridge serve`` subprocess with default settings,
then measures the quiet charger's Heartbeat round trips for a few seconds idle and a few seconds under flood.

    python benchmarks/flood_latency.py [--seconds 5] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

NOW = "2024-05-01T10:00:00Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def csms(connection: object) -> None:
    async for text in connection:  # type: ignore[attr-defined]
        frame = json.loads(text)
        if frame[0] == 2:
            answer = {"currentTime": NOW, "interval": 300, "status": "Accepted"} if frame[2] == "BootNotification" \
                else {"currentTime": NOW} if frame[2] == "Heartbeat" else {}
            await connection.send(json.dumps([3, frame[1], answer]))  # type: ignore[attr-defined]


async def heartbeats(url: str, seconds: float) -> list[float]:
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
        await ws.recv()
        samples, deadline, n = [], time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            await ws.send(json.dumps([2, f"h{n}", "Heartbeat", {}]))
            await ws.recv()
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
        return samples


async def flood(url: str, seconds: float, rate: int) -> tuple[int, float, int | None]:
    """Send ``rate`` frames/s; returns (frames sent, seconds until the bridge closed us or the end, close code)."""
    sent, started = 0, time.monotonic()
    ws = await connect(url, subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    drain = asyncio.create_task(_drain(ws))
    frame = json.dumps([2, "x", "Heartbeat", {}])
    try:
        while time.monotonic() < started + seconds:
            for _ in range(rate // 100):
                await ws.send(frame.replace('"x"', f'"f{sent}"'))
                sent += 1
            await asyncio.sleep(0.01)
    except ConnectionClosed:
        pass  # the bridge's frame-rate defence closed the flooder (1008)
    lasted = time.monotonic() - started
    drain.cancel()
    await ws.close()
    return sent, lasted, ws.close_code


async def _drain(ws: object) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:  # type: ignore[attr-defined]
            pass


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"n={len(ordered)} p50={statistics.median(ordered):.2f} ms "
            f"p99={ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]:.2f} ms")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--keep-flooder", action="store_true",
                        help="never close the flooder (only refuse its excess frames): the sustained-flood case")
    args = parser.parse_args()
    csms_port, bridge_port = free_port(), free_port()
    async with serve(csms, "127.0.0.1", csms_port, subprotocols=["ocpp2.0.1"]):  # type: ignore[list-item]
        with tempfile.TemporaryDirectory() as tmp:
            bridge = subprocess.Popen(
                [sys.executable, "-m", "ocpp_bridge.cli", "serve", "--listen", f"127.0.0.1:{bridge_port}",
                 "--upstream", f"ws://127.0.0.1:{csms_port}/ocpp", "--state", str(Path(tmp) / "s.db")],
                stderr=subprocess.DEVNULL, env={**os.environ, "OCPP_BRIDGE_LOG_LEVEL": "error",
                     **({"OCPP_BRIDGE_FRAME_RATE_CLOSE_AFTER": "1000000000"} if args.keep_flooder else {})})
            try:
                for _ in range(200):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{bridge_port}/healthz", timeout=1)
                        break
                    except OSError:
                        await asyncio.sleep(0.05)
                base = f"ws://127.0.0.1:{bridge_port}/ocpp"
                idle = await heartbeats(f"{base}/QUIET-1", args.seconds)
                flooded, (sent, lasted, code) = await asyncio.gather(
                    heartbeats(f"{base}/QUIET-2", args.seconds), flood(f"{base}/FLOOD-1", args.seconds, args.rate))
            finally:
                bridge.terminate()
                bridge.wait(15)
    print(f"idle    : {summary(idle)}")
    print(f"flooded : {summary(flooded)}  (flooder sent {sent:,} frames at {sent / lasted:,.0f}/s; "
          f"closed by the bridge with {code} after {lasted:.1f} s)" if code == 1008 else
          f"flooded : {summary(flooded)}  (flooder sent {sent / lasted:,.0f} frames/s for {lasted:.1f} s)")
    ratio = statistics.median(flooded) / statistics.median(idle)
    print(f"p50 ratio flooded/idle: {ratio:.2f} (issue 5 target: within 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
