"""The serving process's collector policy: young generations as usual, the whole heap on a timer."""

from __future__ import annotations

import asyncio
import gc

from ocpp_bridge.io.memory import YOUNG_THRESHOLDS, Collector


async def test_the_oldest_generation_is_collected_on_the_timer_only() -> None:
    before = gc.get_threshold()
    collector = Collector(interval=0.05)
    collector.start()
    try:
        assert gc.get_threshold()[:2] == YOUNG_THRESHOLDS
        assert gc.get_threshold()[2] > 10**9
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        await asyncio.sleep(0.2)
        assert collector.full_collections >= 1  # and the cycle above is gone with it
    finally:
        collector.stop()
        gc.unfreeze()
    assert gc.get_threshold() == before
