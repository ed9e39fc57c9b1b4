"""A bare WebSocket relay on picows: the same yardstick as ``relay.py``, on a different WebSocket library.

Why this exists: ``relay.py`` measures what a proxy costs with python-websockets, the bridge's library. Issue 7
asks whether that library is the wall; this relay answers by doing the same job on picows (a Cython WebSocket
implementation with a callback API) so both can be measured in one load run. It behaves as ``relay.py`` does:
it accepts a charger on ws://HOST:PORT/<path>/<identity>, answering with the first OCPP subprotocol the
charger offers, then opens UPSTREAM/<identity> with that subprotocol and copies every data frame both ways
without parsing it (opcode and FIN bit kept, so a fragmented message stays one message). Frames the charger
sends before the upstream connection is open are held and sent once it is. When one side closes or drops, the
other is closed. The frame-size limit is the bridge's (1 MiB); no compression. Back-pressure: when one side's
socket buffer is full, the other side's socket stops being read (websockets' relay gets the same from
``await send``). uvloop when installed (``--loop``).

    python benchmarks/relay_picows.py --upstream ws://127.0.0.1:9100/ocpp [--port 0] [--loop auto|uvloop|asyncio]
    # prints "PORT <n>" once listening; SIGTERM or EOF on stdin stops it
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Final

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_connect,
    ws_create_server,
)
from relay import MAX_FRAME, OCPP, OPEN_TIMEOUT, _wait_for_eof, serve_main

DATA: Final = frozenset((WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION))
_tasks: set[asyncio.Task[None]] = set()  # upstream connections being opened (the loop keeps weak references)


class Side(WSListener):
    """One WebSocket connection of a relayed pair; ``peer`` is the other one once both are open."""

    __slots__ = ("closed", "held", "peer", "transport")

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.peer: Side | None = None
        self.held: list[tuple[WSMsgType, bytes, bool]] | None = None
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind in DATA:
            peer = self.peer
            if peer is not None and peer.transport is not None:
                peer.transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)
            elif self.held is not None:
                self.held.append((kind, frame.get_payload_as_bytes(), frame.fin))
        elif kind is WSMsgType.CLOSE:
            self.closed = True
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            self.close_peer()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.close_peer()

    def close_peer(self, code: WSCloseCode = WSCloseCode.OK, reason: bytes | None = None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.closed = True
            peer.transport.send_close(code, reason)
            peer.transport.disconnect()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.underlying_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.underlying_transport.resume_reading()


class Charger(Side):
    """The charger's side: accepted first; it opens the upstream connection once its own handshake is done."""

    __slots__ = ("protocol", "url")

    def __init__(self, url: str, protocol: str | None) -> None:
        super().__init__()
        self.url, self.protocol = url, protocol
        self.held = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        task = asyncio.get_running_loop().create_task(self.open_upstream())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    async def open_upstream(self) -> None:
        assert self.transport is not None
        upstream = Side()
        upstream.peer = self
        headers = {"Sec-WebSocket-Protocol": self.protocol} if self.protocol else None
        try:
            await ws_connect(lambda: upstream, self.url, extra_headers=headers, max_frame_size=MAX_FRAME,
                             websocket_handshake_timeout=OPEN_TIMEOUT)
        except (OSError, TimeoutError, WSError):
            if not self.closed:
                self.closed = True
                self.transport.send_close(WSCloseCode.INTERNAL_ERROR, b"upstream unavailable")
                self.transport.disconnect()
            return
        assert upstream.transport is not None
        if self.closed:  # the charger left while the upstream connection was being opened
            upstream.closed = True
            upstream.transport.send_close(WSCloseCode.OK)
            upstream.transport.disconnect()
            return
        for kind, payload, fin in self.held or ():
            upstream.transport.send(kind, payload, fin)
        self.held = None
        self.peer = upstream


def _first_offered(request: WSUpgradeRequest) -> str | None:
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return next((p for p in (o.strip() for o in offered.split(",")) if p in OCPP), None)


def listener_factory(upstream: str):  # type: ignore[no-untyped-def]
    def accept(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        identity = request.path.decode("utf-8", "replace").split("?", 1)[0].rsplit("/", 1)[-1]
        protocol = _first_offered(request)
        response = WSUpgradeResponse.create_101_response(
            {"Sec-WebSocket-Protocol": protocol} if protocol else None)
        return WSUpgradeResponseWithListener(response, Charger(f"{upstream}/{identity}", protocol))

    return accept


async def run(upstream: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await ws_create_server(listener_factory(upstream.rstrip("/")), "127.0.0.1", port,
                                    max_frame_size=MAX_FRAME, websocket_handshake_timeout=OPEN_TIMEOUT,
                                    backlog=backlog)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    eof = asyncio.create_task(_wait_for_eof(stop))
    await stop.wait()
    eof.cancel()
    server.close()


def main(argv: list[str] | None = None) -> int:
    return serve_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
