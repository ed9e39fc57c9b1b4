"""The ``ocpp-bridge`` command: ``serve`` runs the bridge, ``demo`` shows a whole session in one process.

Why this exists: operators start the bridge from a container entrypoint or a shell; everything it needs comes
from flags, ``OCPP_BRIDGE_*`` variables or a TOML file, and a wrong setting stops it with a readable message
(exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, config, telemetry
from .core.settings import CoreSettings
from .io.listener import Bridge
from .io.memory import Collector

if TYPE_CHECKING:
    from .routes import Route, UpstreamTarget

# Settings ``serve`` takes as flags (flags > env > file); SIGHUP re-applies the same flags.
SERVE_FLAGS = ("listen", "upstream", "upstream_protocols", "state", "metrics_listen", "log_format",
               "legacy_upstream", "default_route", "admin_listen", "admin_token")


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
    serve.add_argument("--state", metavar="PATH", help="SQLite state file (default ./ocpp-bridge.db) or "
                       "redis://host:port/db shared by several replicas")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics there (default off)")
    serve.add_argument("--log-format", choices=["json", "text"], help="log lines as JSON (default) or text")
    serve.add_argument("--legacy-upstream", metavar="URL", help="the old OCPP 1.6 central system's base URL "
                       "(legacy and shadow routes)")
    serve.add_argument("--default-route", choices=["translate", "legacy", "shadow"],
                       help="route of chargers no [[routes]] rule names (default translate)")
    serve.add_argument("--admin-listen", metavar="HOST:PORT", help="serve the admin HTTP API there (default off)")
    serve.add_argument("--admin-token", metavar="TOKEN", help="bearer token of the admin API (prefer "
                       "OCPP_BRIDGE_ADMIN_TOKEN: a flag is visible in the process list)")
    check = commands.add_parser("check-config", help="validate the settings and mapping files, print the "
                                "effective settings (secrets masked)")
    check.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    routes = commands.add_parser("routes", help="inspect per-charger routes").add_subparsers(dest="routes_command",
                                                                                            required=True)
    routes_check = routes.add_parser("check", help="print the route each charger identity takes, and why")
    routes_check.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    routes_check.add_argument("identities", nargs="*", metavar="IDENTITY", help="charger identities (default: "
                              "every identity the rules name, and the default route)")
    routes_check.add_argument("--identities-file", type=Path, metavar="FILE", help="more identities, one a line "
                              "(# comments)")
    routes_check.add_argument("--json", action="store_true", help="print a JSON list")
    hashing = commands.add_parser("hash-password", help="read a charger's password on stdin, print the hash for a "
                                  "listener's credentials (scrypt, salted)")
    hashing.add_argument("--scheme", choices=["scrypt", "pbkdf2"], default="scrypt")
    hashing.add_argument("--hex", action="store_true", help="the password is hex digits standing for raw bytes "
                         "(a 1.6 AuthorizationKey sent as binary)")
    demo = commands.add_parser("demo", help="run a reference CSMS, the bridge and a 1.6 charger in one process")
    demo.add_argument("--upstream-protocol", default="ocpp2.0.1", choices=["ocpp2.0.1", "ocpp2.1"],
                      help="what the reference CSMS speaks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.upstream_protocol)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "routes":
        return _routes_check(args.config, args.identities, args.identities_file, args.json)
    if args.command == "hash-password":
        return _hash_password(args.scheme, args.hex)
    try:
        flags = {name: getattr(args, name) for name in SERVE_FLAGS}
        settings = config.load(args.config, **flags)
        core_settings = settings.core()
    except (config.ConfigError, ValueError) as exc:
        print(f"ocpp-bridge: {exc}", file=sys.stderr)
        return 2
    telemetry.configure(settings.log_level, settings.log_format)
    telemetry.setup(config.split_host_port(settings.metrics_listen) if settings.metrics_listen else None,
                    settings.traces, debug_identities=settings.debug_identities)
    return asyncio.run(_serve(settings, core_settings, args.config, flags))


def _check_config(path: Path | None) -> int:
    from .reference import masked

    try:
        settings = config.load(path)
        core_settings = settings.core()  # also loads and validates the mapping tables
    except (config.ConfigError, ValueError) as exc:
        print(f"ocpp-bridge: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(masked(settings), indent=2, sort_keys=True))
    print(f"mappings: {len(core_settings.keys.by_key)} configuration keys", file=sys.stderr)
    print("configuration is valid", file=sys.stderr)
    return 0


def _routes_check(path: Path | None, identities: list[str], identities_file: Path | None, as_json: bool) -> int:
    from .routes import RouteTable, read_identities

    try:
        table = RouteTable.from_settings(config.load(path))
        names: list[str | None] = [*identities]
        if identities_file is not None:
            names.extend(identity for _, identity in read_identities(identities_file))
    except (config.ConfigError, ValueError) as exc:
        print(f"ocpp-bridge: {exc}", file=sys.stderr)
        return 2
    if not names:
        names = [*table.explicit_identities(), None]  # None: the default route
    rows = [_route_row(name, table.default if name is None else table.resolve(name)) for name in names]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    lines = [["IDENTITY", "MODE", "UPSTREAM", "LEGACY", "REASON"]]
    lines += [[row["identity"] or "(default)", row["mode"], _target_text(row["upstream"]),
               _target_text(row["legacy"]), row["reason"]] for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(4)]
    for line in lines:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[4]]))
    return 0


def _route_row(identity: str | None, route: Route) -> dict[str, Any]:
    """One line of ``routes check --json``; identity None is the default route."""
    def target(upstream: UpstreamTarget | None) -> dict[str, Any] | None:
        if upstream is None:
            return None
        return {"name": upstream.name, "url": upstream.url, "protocols": list(upstream.protocols)}

    return {"identity": identity, "mode": route.mode, "upstream": target(route.upstream),
            "legacy": target(route.legacy), "reason": route.reason}


def _target_text(target: dict[str, Any] | None) -> str:
    return "-" if target is None else f"{target['name']} {target['url']}"


def _hash_password(scheme: str, raw_hex: bool) -> int:
    """The password is read from stdin (never from the command line, where ``ps`` and shell history see it)."""
    from .io.security import hash_password

    text = sys.stdin.readline().rstrip("\r\n")
    if not text:
        print("ocpp-bridge: no password on stdin", file=sys.stderr)
        return 2
    try:
        password = bytes.fromhex(text) if raw_hex else text.encode("utf-8")
    except ValueError:
        print("ocpp-bridge: --hex needs an even number of hex digits", file=sys.stderr)
        return 2
    print(hash_password(password, scheme))
    return 0


def _reload(bridge: Bridge, config_file: Path | None) -> None:
    """SIGHUP: re-read the file and environment; what can change live is applied, a bad file changes nothing."""
    try:
        settings = config.load(config_file, **bridge.flags)
        core_settings = settings.core()
    except (config.ConfigError, ValueError) as exc:
        telemetry.event("bridge.reload_failed", error=str(exc))
        return
    if settings.listen != bridge.settings.listen or settings.state != bridge.settings.state:
        telemetry.event("bridge.reload_partial", detail="listen and state take effect at the next start")
    bridge.reload(settings, core_settings)


async def _serve(settings: config.Settings, core_settings: CoreSettings, config_file: Path | None,
                 flags: dict[str, Any]) -> int:
    from .store import StoreError, open_store

    bridge = Bridge(settings, open_store(settings.state, settings.state_durability), core_settings)
    bridge.flags = flags
    try:
        await bridge.start()
    except (StoreError, OSError) as exc:
        print(f"ocpp-bridge: cannot start: {exc}", file=sys.stderr)
        return 1
    # the cyclic collector's policy for a long-running server (io/memory.py)
    collector = Collector(lambda: (telemetry.TELEMETRY.sessions_open, telemetry.TELEMETRY.sessions_closed))
    collector.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, bridge, config_file)
    await stop.wait()
    telemetry.event("bridge.stopping")
    await bridge.stop()
    collector.stop()
    telemetry.TELEMETRY.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
