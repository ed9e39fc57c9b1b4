"""Resource limits: token buckets, connection caps enforced at TCP accept, frame-rate limits per charger.

Why this exists: every per-connection resource needs a cap and a timeout (the Envoy "hardened to untrusted
downstream" bar). A bridge is the CSMS's front door for a fleet: one flooding charger, one source opening
thousands of sockets, or one attacker guessing passwords must not take the others down with it.

* Connection caps (global, per source IP, unfinished handshakes per IP) and the handshake rate per IP are
  enforced in the listening socket's ``accept()``, before TLS and before any HTTP is parsed: a refused socket
  costs one ``accept`` and one ``close``. Accounting ends when asyncio closes the accepted socket, whatever
  happened in between (TLS failure, timeout, normal close), so it cannot leak.
* Frames from a charger, and frames from the CSMS (the upstream is untrusted too: a hostile or broken CSMS must
  not flood a charger or the bridge), pass a token bucket per session and side; the excess is refused (CALLERROR
  for a readable CALL, never forwarded) and a peer that keeps flooding is closed with 1008. The bucket's
  parameters live in one shared :class:`FramePolicy` per side, so SIGHUP changes the rate of running sessions
  without closing them.
* Failed authentications are answered after a delay that grows with recent failures of the same source and of
  the same identity (a tarpit, not a lock-out: correct credentials are never delayed, so an attacker cannot lock
  the real charger out by failing on its behalf).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import orjson

if TYPE_CHECKING:
    from websockets.asyncio.connection import Connection

Clock = Callable[[], float]
MAX_TRACKED_KEYS: Final = 100_000  # per-IP / per-identity state is bounded: the oldest entries are forgotten
_CALL_PREFIX: Final = re.compile(r'\s*\[\s*(\d)\s*,\s*"([^"\\]{1,36})"')


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored. ``rate``/``burst`` may change at any time."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False

    def full(self, now: float) -> bool:
        return self._tokens + max(0.0, now - self._stamp) * self.rate >= self.burst


class KeyedBuckets:
    """One bucket per key (source IP, identity), bounded in number: least recently used keys are dropped."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic,
                 capacity: int = MAX_TRACKED_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.capacity = capacity
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.rate, bucket.burst = self.rate, self.burst
        return bucket.take(now)

    def reconfigure(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst


# --- frames from a peer (the charger, or the CSMS) --------------------------------------------------------


class FrameVerdict(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"  # answered with CALLERROR (a readable CALL) or dropped, never forwarded
    CLOSE = "close"  # persistent flooding: close 1008


@dataclass(slots=True)
class FramePolicy:
    """Shared by every session; SIGHUP mutates it and running sessions follow at their next frame."""

    rate: float = 100.0  # frames per second per session (from one side)
    burst: float = 200.0
    close_after: int = 1000  # refused frames within ``window`` seconds before 1008; 0 = never close
    window: float = 10.0


class FrameLimiter:
    """The bucket of one side of one session."""

    __slots__ = ("_bucket", "_excess", "_window_start", "policy")

    def __init__(self, policy: FramePolicy, now: float) -> None:
        self.policy = policy
        self._bucket = TokenBucket(policy.rate, policy.burst, now)
        self._excess = 0
        self._window_start = now

    def admit(self, now: float) -> FrameVerdict:
        policy = self.policy
        self._bucket.rate, self._bucket.burst = policy.rate, policy.burst
        if self._bucket.take(now):
            return FrameVerdict.PASS
        if now - self._window_start > policy.window:
            self._window_start, self._excess = now, 0
        self._excess += 1
        if policy.close_after and self._excess > policy.close_after:
            return FrameVerdict.CLOSE
        return FrameVerdict.REFUSE


def refusal_for(frame: str | bytes, description: str = "rate limit exceeded") -> str | None:
    """The CALLERROR answering a refused frame, or None to drop it silently.

    A CALL gets its own message id back; a CALLRESULT/CALLERROR/CALLRESULTERROR is never answered (RPC: results
    are not acknowledged), nor is a 2.1 SEND (type 6, which expects no answer); anything whose id cannot be read
    gets "-1" (OCPP-J §4.2.3). The frame is never echoed. GenericError is spelled the same in 1.6, 2.0.1 and 2.1,
    so the same refusal serves either side (a charger, or a CSMS of any version).
    """
    head = frame[:256].decode("utf-8", "replace") if isinstance(frame, bytes) else frame[:256]
    match = _CALL_PREFIX.match(head)
    kind, unique_id = (int(match.group(1)), match.group(2)) if match else (None, None)
    if match is None and isinstance(frame, str) and len(frame) <= 4096:
        kind, unique_id = _parse_small(frame)
    if kind in (3, 4, 5, 6):
        return None
    if kind != 2 or unique_id is None:
        unique_id = "-1"
    return orjson.dumps([4, unique_id, "GenericError", description, {}]).decode()


def _parse_small(frame: str) -> tuple[int | None, str | None]:
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, list) or len(value) < 2 or not isinstance(value[0], int):
        return None, None
    unique_id = value[1] if isinstance(value[1], str) and 0 < len(value[1]) <= 36 else None
    return value[0], unique_id


# After each refused frame the peer's reader waits this long: read-side back-pressure. websockets' bounded
# message queue then fills, it stops reading the socket, and TCP flow control slows the flooder to about 1000
# refused frames/s. Measured (benchmarks/flood_latency.py, 2 cores): the bridge's CPU for a sustained 8.4k
# frames/s flood stays about the same (~17% of a core), but the refusals no longer come in bursts of hundreds
# that other sessions wait behind: the quiet charger's heartbeat p50 went from 1.5-2.7x its idle value to below
# it. Enough refusals still arrive to reach the default close_after (1000 in 10 s) in about a second.
REFUSAL_PAUSE: Final = 0.001
FLOOD_CLOSE_CODE: Final = 1008  # policy violation (RFC 6455 §7.4.1)


class FrameGate:
    """One side of one session: its frame limiter and what becomes of the excess.

    ``admit`` says whether a frame may go on (into the session). A frame over the limit is refused: a readable
    CALL gets CALLERROR GenericError back on the connection it came from, best effort (a flooder that does not
    read its answers must not stall this reader, and so the count towards 1008: a refusal that would not fit
    below the write buffer's high-water mark, where ``send`` would wait for the peer, is dropped); results are
    dropped. A peer that keeps flooding is closed with 1008 in the
    background while the reader keeps draining (and dropping) what it had sent before our close frame, or the
    closing handshake would time out. A refused frame is followed by a short pause of this reader
    (``REFUSAL_PAUSE``): the flooder is read no faster than it can be refused. ``connection`` may change (an
    upstream reconnect): a new connection starts with a full bucket and a clean count.
    """

    __slots__ = ("_closing", "_connection", "clock", "limiter", "on_refused", "policy")

    def __init__(self, policy: FramePolicy, on_refused: Callable[[FrameVerdict], None],
                 clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self.on_refused = on_refused  # the security event (counted always, logged within a budget)
        self.clock = clock
        self.limiter = FrameLimiter(policy, clock())
        self._connection: Connection | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        """The current connection is being closed (1008) for flooding."""
        return self._closing is not None

    async def admit(self, connection: Connection, message: str | bytes) -> bool:
        now = self.clock()
        if connection is not self._connection:
            if self._connection is not None:
                self.limiter = FrameLimiter(self.policy, now)
                self._closing = None
            self._connection = connection
        if self._closing is not None:
            return False  # closing with 1008: nothing more is answered or passed on
        verdict = self.limiter.admit(now)
        if verdict is FrameVerdict.PASS:
            return True
        self.on_refused(verdict)
        if verdict is FrameVerdict.CLOSE:
            self._closing = asyncio.create_task(connection.close(FLOOD_CLOSE_CODE, "frame rate limit exceeded"))
            return False
        answer = refusal_for(message)
        if answer is not None and _room_for(connection, len(answer)):
            await connection.send(answer)
        await asyncio.sleep(REFUSAL_PAUSE)
        return False


def _room_for(connection: Connection, size: int) -> bool:
    """Whether ``size`` more bytes fit below the write buffer's high-water mark (``write_limit``): only then does
    ``send`` return without waiting for the peer to read, which a flooder may never do."""
    transport = connection.transport
    return bool(transport.get_write_buffer_size() + size + 16 < transport.get_write_buffer_limits()[1])


# --- connections -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ConnectionPolicy:
    max_connections: int = 10_000
    max_connections_per_ip: int = 1000
    max_handshakes_per_ip: int = 100  # connections of one source that have not finished their upgrade
    handshake_rate_per_ip: float = 20.0  # new connections per second per source
    handshake_burst_per_ip: float = 100.0
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # no per-IP limits (global still)


@dataclass(slots=True)
class _Slot:
    ip: str
    exempt: bool
    established: bool = False


@dataclass
class ConnectionGuard:
    """Counts every accepted socket of every listener, from ``accept`` to ``close``."""

    policy: ConnectionPolicy = field(default_factory=ConnectionPolicy)
    clock: Clock = time.monotonic
    on_refused: Callable[[str, str], None] | None = None  # (ip, reason): a security event
    _slots: dict[int, _Slot] = field(default_factory=dict)  # by file descriptor
    _per_ip: dict[str, int] = field(default_factory=dict)
    _pending_per_ip: dict[str, int] = field(default_factory=dict)
    _rates: KeyedBuckets | None = None

    def __post_init__(self) -> None:
        self._rates = KeyedBuckets(self.policy.handshake_rate_per_ip, self.policy.handshake_burst_per_ip, self.clock)

    def reconfigure(self, policy: ConnectionPolicy) -> None:
        self.policy = policy
        assert self._rates is not None
        self._rates.reconfigure(policy.handshake_rate_per_ip, policy.handshake_burst_per_ip)

    @property
    def open(self) -> int:
        return len(self._slots)

    def pending(self, ip: str) -> int:
        return self._pending_per_ip.get(ip, 0)

    def admit(self, ip: str) -> str | None:
        """None when a new connection from ``ip`` may proceed, else why not."""
        policy = self.policy
        if len(self._slots) >= policy.max_connections:
            return "max_connections"
        if self._exempt(ip):
            return None
        if self._per_ip.get(ip, 0) >= policy.max_connections_per_ip:
            return "max_connections_per_ip"
        if self._pending_per_ip.get(ip, 0) >= policy.max_handshakes_per_ip:
            return "max_handshakes_per_ip"
        assert self._rates is not None
        if not self._rates.take(ip):
            return "handshake_rate_per_ip"
        return None

    def opened(self, fd: int, ip: str) -> None:
        slot = _Slot(ip, self._exempt(ip))
        self._slots[fd] = slot
        if not slot.exempt:
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            self._pending_per_ip[ip] = self._pending_per_ip.get(ip, 0) + 1

    def established(self, fd: int) -> None:
        """The connection finished its upgrade: it no longer counts as an unfinished handshake."""
        slot = self._slots.get(fd)
        if slot is None or slot.established:
            return
        slot.established = True
        if not slot.exempt:
            _decrement(self._pending_per_ip, slot.ip)

    def closed(self, fd: int) -> None:
        slot = self._slots.pop(fd, None)
        if slot is None or slot.exempt:
            return
        _decrement(self._per_ip, slot.ip)
        if not slot.established:
            _decrement(self._pending_per_ip, slot.ip)

    def _exempt(self, ip: str) -> bool:
        if not self.policy.exempt:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.policy.exempt)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class _CountedSocket(socket.socket):
    """An accepted connection that tells the guard when asyncio closes it (whatever the reason)."""

    guard: ConnectionGuard | None = None
    _guard_fd: int = -1

    def close(self) -> None:
        guard, self.guard = self.guard, None
        if guard is not None:
            guard.closed(self._guard_fd)
        super().close()


class GuardedListenSocket(socket.socket):
    """A listening socket whose ``accept`` (called by asyncio's accept loop) enforces the guard first."""

    guard: ConnectionGuard

    def accept(self) -> tuple[socket.socket, object]:
        while True:  # refused connections are closed here; BlockingIOError (nothing pending) ends the loop
            fd, address = self._accept()  # type: ignore[attr-defined]
            connection = _CountedSocket(self.family, self.type, self.proto, fileno=fd)
            ip = str(address[0]) if isinstance(address, tuple) and address else ""
            refused = self.guard.admit(ip)
            if refused is None:
                connection.guard = self.guard
                connection._guard_fd = fd
                self.guard.opened(fd, ip)
                return connection, address
            _reset(connection)
            if self.guard.on_refused is not None:
                self.guard.on_refused(ip, refused)


def _reset(connection: socket.socket) -> None:
    """Close at once with RST (SO_LINGER 0): no TIME_WAIT state kept for a connection we refused."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close()


def listening_socket(host: str, port: int, guard: ConnectionGuard, backlog: int = 1024) -> GuardedListenSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = GuardedListenSocket(family, socket.SOCK_STREAM)
    sock.guard = guard
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


# --- authentication failures and replacements --------------------------------------------------------------


@dataclass
class AuthThrottle:
    """Delay before answering a failed authentication: ``base`` doubled per recent failure of the same source
    or identity (the worse of the two), capped at ``ceiling``. Failures are forgotten after ``memory`` s."""

    base: float = 0.5
    ceiling: float = 5.0
    memory: float = 60.0
    clock: Clock = time.monotonic
    _failures: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def failed(self, ip: str, identity: str) -> float:
        """Record a failure; the delay to wait before answering it."""
        worst = max(self._bump(f"ip:{ip}"), self._bump(f"id:{identity}"))
        if self.base <= 0:
            return 0.0
        return float(min(self.ceiling, self.base * 2 ** min(worst - 1, 16)))

    def _bump(self, key: str) -> int:
        now = self.clock()
        count, stamp = self._failures.pop(key, (0, now))
        count = 1 if now - stamp > self.memory else count + 1
        self._failures[key] = (count, now)
        if len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)
        return count
