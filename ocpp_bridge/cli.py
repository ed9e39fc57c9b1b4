"""The ``ocpp-bridge`` command: ``serve`` runs the bridge, ``demo`` shows a whole session in one process.

Why this exists: operators start the bridge from a container entrypoint or a shell; everything it needs comes
from flags, ``OCPP_BRIDGE_*`` variables or a TOML file, and a wrong setting stops it with a readable message
(exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from . import __version__, config, telemetry
from .core.settings import CoreSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocpp-bridge",
                                     description="OCPP 1.6-J chargers on an OCPP 2.0.1 / 2.1 CSMS.")
    parser.add_argument("--version", action="version", version=f"ocpp-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the bridge in front of a CSMS")
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    serve.add_argument("--listen", metavar="HOST:PORT", help="where chargers connect (default 0.0.0.0:9000)")
    serve.add_argument("--upstream", metavar="URL", help="CSMS base URL, e.g. wss://csms.example.com/ocpp")
    serve.add_argument("--upstream-protocols", metavar="LIST",
                       help="subprotocols offered to the CSMS (default ocpp2.0.1; ocpp2.1,ocpp2.0.1 prefers 2.1)")
    serve.add_argument("--state", metavar="PATH", help="SQLite state file (default ./ocpp-bridge.db)")
    demo = commands.add_parser("demo", help="run a reference CSMS, the bridge and a 1.6 charger in one process")
    demo.add_argument("--upstream-protocol", default="ocpp2.0.1", choices=["ocpp2.0.1", "ocpp2.1"],
                      help="what the reference CSMS speaks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.upstream_protocol)
    try:
        settings = config.load(args.config, listen=args.listen, upstream=args.upstream,
                               upstream_protocols=args.upstream_protocols, state=args.state)
        core_settings = settings.core()
    except (config.ConfigError, ValueError) as exc:
        print(f"ocpp-bridge: {exc}", file=sys.stderr)
        return 2
    telemetry.configure(settings.log_level)
    return asyncio.run(_serve(settings, core_settings))


async def _serve(settings: config.Settings, core_settings: CoreSettings) -> int:
    from .io.listener import Bridge
    from .store import StoreError, open_store

    bridge = Bridge(settings, open_store(settings.state, settings.state_durability), core_settings)
    try:
        await bridge.start()
    except (StoreError, OSError) as exc:
        print(f"ocpp-bridge: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    telemetry.event("bridge.stopping")
    await bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
