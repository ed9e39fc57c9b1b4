"""A bare WebSocket relay: the yardstick the bridge is measured against in the load benchmark.

Why this exists: "how fast is the bridge" means little on its own; "how close to relaying bytes" means the same
on any machine. This relay does the least a proxy in the bridge's place can do with the same library: it
accepts a charger on ws://HOST:PORT/<path>/<identity> with whatever subprotocol the charger offers first,
opens UPSTREAM/<identity> with that subprotocol, and copies every message both ways without parsing it. It uses
python-websockets' asyncio API, as the bridge does, with the same frame-size limit and no compression; uvloop
when installed (``--loop``), as the calibration figures in issue 7 were measured.

    python benchmarks/relay.py --upstream ws://127.0.0.1:9100/ocpp [--port 0] [--loop auto|uvloop|asyncio]
    # prints "PORT <n>" once listening; SIGTERM or EOF on stdin stops it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from sink import pick_loop, raise_fd_limit
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

MAX_FRAME: Final = 1 << 20  # the bridge's limit (ocpp_bridge.io.upstream.MAX_FRAME)
OPEN_TIMEOUT: Final = 15.0  # the bridge gives a charger's handshake open_timeout + 5 s
OCPP: Final = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


def _first_offered(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return next((p for p in offered if p in OCPP), None)


async def _pump(source: Connection, target: Connection) -> None:
    try:
        async for message in source:
            await target.send(message)
    except ConnectionClosed:
        pass


def handler(upstream: str) -> Callable[[ServerConnection], Awaitable[None]]:
    async def relay(charger: ServerConnection) -> None:
        identity = charger.request.path.rsplit("/", 1)[-1] if charger.request else ""
        protocols = [Subprotocol(charger.subprotocol)] if charger.subprotocol else None
        try:
            csms = await connect(f"{upstream}/{identity}", subprotocols=protocols, max_size=MAX_FRAME,
                                 compression=None, user_agent_header=None, open_timeout=OPEN_TIMEOUT)
        except (OSError, TimeoutError, InvalidHandshake):
            await charger.close(1011, "upstream unavailable")
            return
        try:
            pumps = [asyncio.create_task(_pump(charger, csms)), asyncio.create_task(_pump(csms, charger))]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await csms.close()
            await charger.close()

    return relay


async def _wait_for_eof(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            pass
    stop.set()


async def run(upstream: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(handler(upstream.rstrip("/")), "127.0.0.1", port, select_subprotocol=_first_offered,
                     max_size=MAX_FRAME, compression=None, server_header=None, open_timeout=OPEN_TIMEOUT,
                     backlog=backlog) as server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        eof = asyncio.create_task(_wait_for_eof(stop))
        await stop.wait()
        eof.cancel()
        server.close()


def serve_main(run_relay: Callable[[str, int, int], Awaitable[None]], description: str,
               argv: list[str] | None) -> int:
    """The command line every relay here shares (relay_picows.py too): parse, raise the fd limit, pick the loop,
    run ``run_relay(upstream, port, backlog)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--upstream", required=True, help="base URL; the relay opens UPSTREAM/<identity>")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"])
    parser.add_argument("--backlog", type=int, default=100, help="listen backlog (default 100: asyncio's default, "
                        "which the bridge's server gets too)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    pick_loop(args.loop)
    asyncio.run(run_relay(args.upstream, args.port, args.backlog))
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
