"""The serving process's collector policy: nothing walked on a timer or on allocations; what was allocated is
frozen once a second; the whole heap collected when it grew by a quarter, after many sessions ended, or on a
slow timer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from ocpp_bridge.io import memory
from ocpp_bridge.io.memory import Collector


@contextlib.contextmanager
def _running(collector: Collector) -> Iterator[Collector]:
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


async def test_young_objects_are_frozen_and_a_cycle_is_freed_by_the_full_collection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.02)
    with _running(Collector(interval=0.25)) as collector:
        assert not gc.isenabled()
        node = _Node()
        alive = weakref.ref(node)
        del node
        await asyncio.sleep(0.1)
        assert collector.freezes >= 2
        assert collector.full_collections == 0
        assert alive() is not None  # frozen, not walked: still there
        await asyncio.sleep(0.3)
        assert collector.full_collections >= 1
        assert alive() is None  # the whole heap, frozen objects included, was collected
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_a_growing_heap_starts_a_collection_before_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(memory, "GROWTH_MIN", 5_000)
    with _running(Collector(interval=3600)) as collector:
        await asyncio.sleep(0.1)
        assert collector.full_collections == 0
        garbage = [_Node() for _ in range(max(10_000, collector._heap // 3))]  # >= a quarter of the heap
        probe = weakref.ref(garbage[0])
        del garbage  # the list goes, the cycles stay: net growth without any deallocation
        await asyncio.sleep(0.1)
        assert collector.full_collections == 1
        assert probe() is None
        assert collector.collected >= 10_000


async def test_many_ended_sessions_start_a_collection_before_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"open": 1000, "closed": 0}
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.02)
    with _running(Collector(lambda: (counts["open"], counts["closed"]), interval=3600)) as collector:
        await asyncio.sleep(0.1)
        assert collector.full_collections == 0
        counts["closed"] = 99  # fewer than 100 and than 10 % of the open sessions: not yet
        await asyncio.sleep(0.1)
        assert collector.full_collections == 0
        counts["closed"] = 150
        await asyncio.sleep(0.1)
        assert collector.full_collections == 1


async def test_a_fruitless_collection_makes_the_next_one_wait_longer_and_a_fruitful_one_resets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.01)
    with _running(Collector(interval=0.05)) as collector:
        await asyncio.sleep(0.12)  # the timer fires; nothing to free: the policy backs off
        assert collector.full_collections >= 1
        assert collector.wait > 0.05 and collector.growth_share > memory.GROWTH_SHARE
        backed_off = collector.full_collections
        await asyncio.sleep(0.08)  # fewer collections than on the base timer
        assert collector.full_collections - backed_off <= 1
        garbage = [_Node() for _ in range(max(50_000, collector._heap // 10))]  # cycles: freed only by a collection
        probe = weakref.ref(garbage[0])
        del garbage
        for _ in range(400):  # until the collection that frees them (the timer, now a longer one)
            await asyncio.sleep(0.005)
            if probe() is None:
                break
        assert probe() is None
        assert collector.wait == 0.05 and collector.growth_share == memory.GROWTH_SHARE  # it freed a lot: reset
