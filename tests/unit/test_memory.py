"""The serving process's collector policy: no collection on allocations; the young generations on a timer, the
whole heap on a slower one or after many sessions ended."""

from __future__ import annotations

import asyncio
import gc

import pytest

from ocpp_bridge.io import memory
from ocpp_bridge.io.memory import Collector


async def test_collections_run_on_the_timer_not_on_allocations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.02)
    collector = Collector(interval=0.15)
    collector.start()
    try:
        assert not gc.isenabled()
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        await asyncio.sleep(0.3)
        assert collector.young_collections >= 3
        assert collector.full_collections >= 1  # and the cycle above is gone with it
    finally:
        collector.stop()
        gc.unfreeze()
    assert gc.isenabled()


async def test_many_ended_sessions_start_a_collection_before_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"open": 1000, "closed": 0}
    monkeypatch.setattr(memory, "CHECK_INTERVAL", 0.02)
    collector = Collector(lambda: (counts["open"], counts["closed"]), interval=3600)
    collector.start()
    try:
        await asyncio.sleep(0.1)
        assert collector.full_collections == 0
        counts["closed"] = 99  # fewer than 100 and than 10 % of the open sessions: not yet
        await asyncio.sleep(0.1)
        assert collector.full_collections == 0
        counts["closed"] = 150
        await asyncio.sleep(0.1)
        assert collector.full_collections == 1
    finally:
        collector.stop()
        gc.unfreeze()
