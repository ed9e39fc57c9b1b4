"""ocpp_bridge.io.limits: token buckets, the per-charger frame limiter, refusals, connection accounting, tarpits."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpp_bridge.io.limits import (
    AuthThrottle,
    ConnectionGuard,
    ConnectionPolicy,
    FrameGate,
    FrameLimiter,
    FramePolicy,
    FrameVerdict,
    KeyedBuckets,
    TokenBucket,
    listening_socket,
    networks,
    refusal_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # one token back after 0.5 s at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_keyed_buckets_are_independent_and_bounded() -> None:
    clock = Clock()
    buckets = KeyedBuckets(rate=1.0, burst=1.0, clock=clock, capacity=2)
    assert buckets.take("a") and not buckets.take("a")
    assert buckets.take("b")
    assert buckets.take("c")  # "a" is forgotten (capacity 2): state cannot grow without bound
    assert buckets.take("a")


def test_frame_limiter_refuses_then_closes_and_follows_its_policy_live() -> None:
    policy = FramePolicy(rate=1.0, burst=2.0, close_after=3, window=10.0)
    limiter = FrameLimiter(policy, now=0.0)
    verdicts = [limiter.admit(0.0) for _ in range(6)]
    assert verdicts == [FrameVerdict.PASS, FrameVerdict.PASS, FrameVerdict.REFUSE, FrameVerdict.REFUSE,
                        FrameVerdict.REFUSE, FrameVerdict.CLOSE]
    # SIGHUP: the shared policy changes; the running limiter follows at its next frame.
    fresh = FrameLimiter(policy, now=0.0)
    fresh.admit(0.0), fresh.admit(0.0)
    assert fresh.admit(0.0) is FrameVerdict.REFUSE
    policy.rate, policy.burst = 1000.0, 1000.0
    assert fresh.admit(0.1) is FrameVerdict.PASS


def test_frame_limiter_window_forgets_old_excess() -> None:
    limiter = FrameLimiter(FramePolicy(rate=0.001, burst=1.0, close_after=2, window=10.0), now=0.0)
    assert limiter.admit(0.0) is FrameVerdict.PASS
    assert limiter.admit(1.0) is FrameVerdict.REFUSE
    assert limiter.admit(2.0) is FrameVerdict.REFUSE
    assert limiter.admit(20.0) is FrameVerdict.REFUSE  # a new window: not closed
    assert FrameLimiter(FramePolicy(rate=0.001, burst=0.0, close_after=0), 0.0).admit(0.0) is FrameVerdict.REFUSE


class _Peer:
    """A connection as the gate sees it: what was sent back, how it was closed, how much waits to be written."""

    def __init__(self, backlog: int = 0) -> None:
        self.sent: list[str] = []
        self.closed: list[int] = []
        self.backlog = backlog
        self.transport = self

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 8192, 32768

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed.append(code)


async def test_frame_gate_refuses_answers_closes_and_starts_afresh_on_a_new_connection() -> None:
    clock = Clock()
    verdicts: list[FrameVerdict] = []
    gate = FrameGate(FramePolicy(rate=0.001, burst=2.0, close_after=2, window=10.0), verdicts.append, clock)
    peer: Any = _Peer()
    frames = [f'[2,"c{n}","ClearCache",{{}}]' for n in range(4)] + ['[3,"r",{}]', '[6,"s","NotifyX",{}]']
    admitted = [await gate.admit(peer, frame) for frame in frames]
    assert admitted == [True, True, False, False, False, False]
    assert [json.loads(text)[1] for text in peer.sent] == ["c2", "c3"]  # each refused CALL, by its own id
    await asyncio.sleep(0)  # the 1008 close runs in the background
    assert peer.closed == [1008] and gate.closing
    assert verdicts == [FrameVerdict.REFUSE, FrameVerdict.REFUSE, FrameVerdict.CLOSE]
    assert not await gate.admit(peer, frames[0])  # closing: nothing more passes, nothing more is counted
    assert len(verdicts) == 3
    again: Any = _Peer()  # the upstream link was opened again: a full bucket and a clean count
    assert await gate.admit(again, frames[0]) and await gate.admit(again, frames[1])
    assert not gate.closing
    assert not await gate.admit(again, frames[2]) and again.closed == []


async def test_frame_gate_drops_refusals_a_flooder_does_not_read() -> None:
    gate = FrameGate(FramePolicy(rate=0.001, burst=0.0, close_after=0), lambda verdict: None, Clock())
    peer: Any = _Peer(backlog=32768 - 40)  # a refusal would not fit below write_limit
    assert not await gate.admit(peer, '[2,"a","Heartbeat",{}]')
    assert peer.sent == [] and peer.closed == []


@pytest.mark.parametrize(("frame", "expected"), [
    ('[2,"abc","Heartbeat",{}]', "abc"),
    ('  [ 2 , "x-1" , "Heartbeat", {}]', "x-1"),
    ('[2,"' + "i" * 36 + '","Heartbeat",{}]', "i" * 36),
    ('[2,"' + "i" * 37 + '","Heartbeat",{}]', "-1"),  # over-long: unreadable as an OCPP message id
    ('[2,"a\\"b","Heartbeat",{}]', 'a"b'),  # escaped: read by the JSON parser
    ("[2, not json", "-1"),
    ('{"not": "an array"}', "-1"),
    ("", "-1"),
    ('[2, 17, "Heartbeat", {}]', "-1"),
])
def test_refusal_echoes_only_a_readable_id(frame: str, expected: str) -> None:
    answer = refusal_for(frame)
    assert answer is not None
    assert json.loads(answer) == [4, expected, "GenericError", "rate limit exceeded", {}]


@pytest.mark.parametrize("frame", ['[3,"a",{}]', '[4,"a","GenericError","",{}]', '[5,"a","x","",{}]',
                                   '[6,"a","NotifyPeriodicEventStream",{}]'])
def test_results_over_the_limit_are_dropped_not_answered(frame: str) -> None:
    assert refusal_for(frame) is None


def test_binary_frames_get_minus_one() -> None:
    assert json.loads(refusal_for(b"\xff\x00garbage") or "")[1] == "-1"


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_refusal_never_raises_and_never_echoes_the_frame(frame: str | bytes) -> None:
    answer = refusal_for(frame)
    if answer is None:
        return
    decoded = json.loads(answer)
    assert decoded[0] == 4 and decoded[2:] == ["GenericError", "rate limit exceeded", {}]
    assert isinstance(decoded[1], str) and len(decoded[1]) <= 36


def test_connection_guard_caps_per_ip_and_global_and_releases() -> None:
    guard = ConnectionGuard(ConnectionPolicy(max_connections=3, max_connections_per_ip=2, max_handshakes_per_ip=2,
                                             handshake_rate_per_ip=1000.0, handshake_burst_per_ip=1000.0))
    assert guard.admit("10.0.0.1") is None
    guard.opened(1, "10.0.0.1")
    guard.opened(2, "10.0.0.1")
    assert guard.admit("10.0.0.1") == "max_connections_per_ip"
    assert guard.admit("10.0.0.2") is None
    guard.opened(3, "10.0.0.2")
    assert guard.admit("10.0.0.3") == "max_connections"
    guard.closed(3)
    guard.closed(3)  # idempotent
    assert guard.open == 2 and guard.admit("10.0.0.3") is None


def test_unfinished_handshakes_are_counted_until_established() -> None:
    guard = ConnectionGuard(ConnectionPolicy(max_connections_per_ip=10, max_handshakes_per_ip=1,
                                             handshake_rate_per_ip=1000.0, handshake_burst_per_ip=1000.0))
    guard.opened(1, "10.0.0.1")
    assert guard.pending("10.0.0.1") == 1
    assert guard.admit("10.0.0.1") == "max_handshakes_per_ip"
    guard.established(1)
    assert guard.pending("10.0.0.1") == 0
    assert guard.admit("10.0.0.1") is None
    guard.closed(1)
    assert guard.open == 0


def test_handshake_rate_and_exempt_networks() -> None:
    clock = Clock()
    guard = ConnectionGuard(ConnectionPolicy(handshake_rate_per_ip=1.0, handshake_burst_per_ip=2.0,
                                             exempt=networks(["127.0.0.0/8", "::1/128"])), clock=clock)
    assert [guard.admit("192.0.2.7") for _ in range(3)] == [None, None, "handshake_rate_per_ip"]
    clock.now += 1.0
    assert guard.admit("192.0.2.7") is None
    assert all(guard.admit("127.0.0.1") is None for _ in range(100))  # exempt from per-IP limits
    guard.opened(5, "::1")
    assert guard.pending("::1") == 0  # not even counted
    guard.closed(5)


async def test_the_listening_socket_refuses_at_accept_and_releases_on_close() -> None:
    refused: list[tuple[str, str]] = []
    guard = ConnectionGuard(ConnectionPolicy(max_connections=1), on_refused=lambda ip, why: refused.append((ip, why)))
    sock = listening_socket("127.0.0.1", 0, guard)
    port = sock.getsockname()[1]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handler, sock=sock)
    try:
        first = await asyncio.open_connection("127.0.0.1", port)
        try:  # refused at accept: reset (or closed) at once
            second_reader, second_writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(second_reader.read(), 5) == b""
            second_writer.close()
        except ConnectionError:
            pass
        for _ in range(100):
            if refused:
                break
            await asyncio.sleep(0.01)
        assert refused == [("127.0.0.1", "max_connections")]
        assert guard.open == 1
        first[1].close()
        for _ in range(100):  # the server side closes its end after EOF
            if guard.open == 0:
                break
            await asyncio.sleep(0.01)
        assert guard.open == 0
    finally:
        server.close()
        await server.wait_closed()


def test_auth_throttle_grows_per_source_and_identity_and_forgets() -> None:
    clock = Clock()
    throttle = AuthThrottle(base=0.5, ceiling=4.0, memory=60.0, clock=clock)
    assert [throttle.failed("ip1", "CP1") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert throttle.failed("ip2", "CP1") == 4.0  # the identity is under attack, whatever the source
    assert throttle.failed("ip1", "CP2") == 4.0  # the source is attacking, whatever the identity
    assert throttle.failed("ip3", "CP3") == 0.5
    clock.now += 61
    assert throttle.failed("ip1", "CP1") == 0.5
    assert AuthThrottle(base=0.0).failed("x", "y") == 0.0


def test_listening_socket_ipv6_or_skip() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sock = listening_socket("::1", 0, ConnectionGuard())
    except OSError:
        pytest.skip("no IPv6 loopback")
    assert sock.family == socket.AF_INET6
    sock.close()
