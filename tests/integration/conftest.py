"""Fixtures for the integration suite: the bridge as a real subprocess, a real CSMS, real chargers, loopback only.

Why this exists: what ships is ``ocpp-bridge serve``; these tests start exactly that (``python -m
ocpp_bridge.cli serve``), wait for ``/healthz``, and stop it with SIGTERM expecting exit status 0. Nothing of the
bridge is mocked. The peers (``peers.py``) are the ``ocpp`` package's ChargePoints with validation on.

One bridge process serves the whole session (start-up compiles every schema, ~2 s); it points at a reserved
CSMS port on which each test starts its own CSMS. A second shared bridge (``close_mode_bridge``) runs with
``outage_mode = "close"`` (the plain OCPP-J Local Controller rule) for the tests of that mode. Tests that need
their own bridge (restart, other settings) get one from ``bridge_factory``. Every test uses fresh charger
identities, so the shared state files never mix tests. After each test a shared bridge must be alive and back
to zero sessions.

The state store is a fixture parameter (``store``): every durability test runs against each backend listed in
``STORE_BACKENDS`` (SQLite, and Redis on the real redis-server ``tests/conftest.py`` starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16

from .peers import Csms, Handshake, charger, within

STARTUP_DEADLINE = 30.0  # seconds for a bridge to answer /healthz (schema compilation happens at start)
STOP_DEADLINE = 5.0  # seconds for a bridge to exit after SIGTERM


# --- ports -------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port free right now, chosen below the ephemeral range so no outgoing connection takes it meanwhile."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


# --- the bridge process ------------------------------------------------------------------------------------


def http_get(port: int, path: str = "/healthz", timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@dataclass
class BridgeProcess:
    """``ocpp-bridge serve`` in a subprocess; its stderr (JSON log lines) goes to ``log_path``."""

    port: int
    upstream: str
    state: Path | str  # a SQLite file, or whatever else ``--state`` accepts
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # OCPP_BRIDGE_* settings on top of the inherited env
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def ws_url(self, identity: str) -> str:
        return f"{self.url}/{identity}"

    def start(self) -> BridgeProcess:
        command = [sys.executable, "-m", "ocpp_bridge.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
                   "--upstream", self.upstream, "--state", str(self.state), *self.extra_args]
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _, _ = http_get(self.port, timeout=0.5)
                if status == 200:
                    return self
            time.sleep(0.05)  # polling a process we cannot await; not a synchronisation between peers
        self.kill()
        raise AssertionError(f"bridge not ready within {STARTUP_DEADLINE} s:\n{self.log_tail()}")

    def health(self) -> dict[str, Any]:
        status, _, body = http_get(self.port)
        assert status == 200, (status, body)
        return json.loads(body)  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> int:
        """SIGTERM; the exit status (the process is killed, and the test fails, if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"bridge did not exit within {STOP_DEADLINE} s of SIGTERM:\n"
                                 f"{self.log_tail()}") from None

    async def aterminate(self) -> int:
        return await asyncio.to_thread(self.terminate)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for text in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
        return lines

    def log_tail(self, count: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Until /healthz reports no sessions (each test must leave none behind)."""
        deadline = time.monotonic() + timeout
        while True:
            health = await asyncio.to_thread(self.health)
            if health.get("sessions") == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sessions left open after the test: {health}\n{self.log_tail()}")
            await asyncio.sleep(0.05)  # polling an HTTP endpoint; there is no event to await


_BRIDGES: list[BridgeProcess] = []  # every bridge started, for the failure report


@pytest.fixture(scope="session")
def csms_port() -> int:
    """The port the shared bridge's upstream points at; each test's CSMS binds it (nothing listens between)."""
    return free_port()


@pytest.fixture(scope="session")
def shared_bridge(csms_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    directory = tmp_path_factory.mktemp("bridge")
    bridge = BridgeProcess(free_port(), f"ws://127.0.0.1:{csms_port}/ocpp", directory / "state.db",
                           directory / "bridge.log")
    _BRIDGES.append(bridge)
    bridge.start()
    yield bridge
    if bridge.alive():
        code = bridge.terminate()
        assert code == 0, f"shared bridge exited with {code}:\n{bridge.log_tail()}"


@pytest.fixture
async def bridge(shared_bridge: BridgeProcess) -> AsyncIterator[BridgeProcess]:
    """The shared bridge; it must be alive before and after the test and hold no session afterwards."""
    assert shared_bridge.alive(), f"the shared bridge died earlier:\n{shared_bridge.log_tail()}"
    yield shared_bridge
    assert shared_bridge.alive(), f"the bridge died during the test:\n{shared_bridge.log_tail()}"
    await shared_bridge.wait_idle()


@pytest.fixture(scope="session")
def shared_close_mode_bridge(csms_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    directory = tmp_path_factory.mktemp("bridge-close-mode")
    bridge = BridgeProcess(free_port(), f"ws://127.0.0.1:{csms_port}/ocpp", directory / "state.db",
                           directory / "bridge.log", env={"OCPP_BRIDGE_OUTAGE_MODE": "close"})
    _BRIDGES.append(bridge)
    bridge.start()
    yield bridge
    if bridge.alive():
        code = bridge.terminate()
        assert code == 0, f"close-mode bridge exited with {code}:\n{bridge.log_tail()}"


@pytest.fixture
async def close_mode_bridge(shared_close_mode_bridge: BridgeProcess) -> AsyncIterator[BridgeProcess]:
    """A shared bridge with ``outage_mode = "close"``: losing the CSMS closes the charger (Local Controller)."""
    process = shared_close_mode_bridge
    assert process.alive(), f"the close-mode bridge died earlier:\n{process.log_tail()}"
    yield process
    assert process.alive(), f"the close-mode bridge died during the test:\n{process.log_tail()}"
    await process.wait_idle()


@pytest.fixture
def bridge_factory(tmp_path: Path, csms_port: int) -> Iterator[Callable[..., BridgeProcess]]:
    """Start dedicated bridges (own port, own state file unless given); stopped (SIGTERM, exit 0) at teardown."""
    started: list[BridgeProcess] = []
    counter = itertools.count()

    def make(upstream: str | None = None, state: Path | str | None = None, port: int | None = None,
             args: list[str] | None = None, env: dict[str, str] | None = None) -> BridgeProcess:
        number = next(counter)
        process = BridgeProcess(port or free_port(), upstream or f"ws://127.0.0.1:{csms_port}/ocpp",
                                state or tmp_path / "state.db", tmp_path / f"bridge-{number}.log", args or [],
                                env or {})
        _BRIDGES.append(process)
        started.append(process)
        return process.start()

    yield make
    failures = []
    for process in started:
        if process.alive():
            code = process.terminate()
            if code != 0:
                failures.append(f"bridge on {process.port} exited with {code}:\n{process.log_tail()}")
    assert not failures, "\n".join(failures)


# --- the state store --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreBackend:
    """Where the bridges of one test keep their state: ``state`` is their ``--state`` value (all of them share
    it, as a restarted bridge or a second replica does)."""

    name: str
    state: Path | str


STORE_BACKENDS = ["sqlite", "redis"]


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    """SQLite: a fresh file per test. Redis: the session's real redis-server (``tests/conftest.py``); tests
    never share a charger identity, so they never share keys."""
    if request.param == "sqlite":
        return StoreBackend("sqlite", tmp_path / "durable.db")
    if request.param == "redis":
        return StoreBackend("redis", request.getfixturevalue("redis_url"))
    raise AssertionError(f"unknown store backend {request.param}")


# --- the CSMS ----------------------------------------------------------------------------------------------


@pytest.fixture
async def csms_factory(csms_port: int) -> AsyncIterator[Callable[..., Any]]:
    """Start a CSMS (``peers.Csms``) on the shared CSMS port (or another); stopped at teardown.

    At teardown the CSMS must not have had to answer any bridge frame with a CALLERROR (its ``ocpp`` validator
    rejects schema-invalid frames that way), unless the test cleared ``errors_allowed``.
    """
    running: list[Csms] = []

    async def make(subprotocols: list[str] | None = None, known_ids: set[str] | None = None,
                   port: int | None = None, gate: Callable[[Handshake], int | None] | None = None) -> Csms:
        server = Csms(port or csms_port, subprotocols or ["ocpp2.0.1"], known_ids, gate)
        await within(server.start())
        running.append(server)
        return server

    yield make
    for server in running:
        await server.stop()
    for server in running:
        if not server.errors_allowed:
            assert not server.errors_sent(), f"the CSMS answered the bridge with CALLERRORs: {server.errors_sent()}"


@pytest.fixture
async def csms(csms_factory: Callable[..., Any]) -> Csms:
    """A 2.0.1 CSMS accepting every identity."""
    return await csms_factory()  # type: ignore[no-any-return]


@dataclass
class Session16:
    """A booted 1.6 charger on the shared bridge and the CSMS's view of it."""

    identity: str
    link: Any  # peers.ChargerLink
    station: Any  # the CSMS-side ChargePoint (peers.CsmsStation201)


@pytest.fixture
async def session16(bridge: BridgeProcess, csms: Csms, identity: str) -> AsyncIterator[Session16]:
    async with charger(bridge.ws_url(identity), identity) as link:
        answer = await link.call(call16.BootNotification(charge_point_model="IT-Model",
                                                         charge_point_vendor="IT-Vendor"))
        assert answer.status == "Accepted"
        yield Session16(identity, link, await csms.station(identity))


# --- identities --------------------------------------------------------------------------------------------

_IDENTITY_COUNTER = itertools.count(1)


@pytest.fixture
def new_identity(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Fresh, readable charger identities per test (the shared bridge's state must never mix tests)."""
    stem = re.sub(r"[^A-Za-z0-9\-]", "-", request.node.name.removeprefix("test_"))[:30].strip("-")
    run = f"{os.getpid() % 10000:04d}"

    def make() -> str:
        return f"{stem}-{run}-{next(_IDENTITY_COUNTER)}"

    return make


@pytest.fixture
def identity(new_identity: Callable[[], str]) -> str:
    return new_identity()


# --- reporting ---------------------------------------------------------------------------------------------


_TEST_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_TEST_STARTED] = time.time()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the log of every bridge that wrote something while it ran."""
    outcome = yield
    report = outcome.get_result()
    started = item.stash.get(_TEST_STARTED, 0.0)
    if report.failed:
        for bridge in _BRIDGES:
            if bridge.log_path.exists() and bridge.log_path.stat().st_mtime >= started:
                report.sections.append((f"bridge log {bridge.log_path.name} (port {bridge.port})",
                                        bridge.log_tail(40)))
