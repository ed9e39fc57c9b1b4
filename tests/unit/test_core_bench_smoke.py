"""The core benchmark still runs: it records its traffic mix, replays it and reports a positive rate.

It only checks that the benchmark works (the figures themselves depend on the machine; see benchmarks/README.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_core_bench_smoke_run_writes_a_positive_rate(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "core_bench.py"), "--smoke", "--json",
                           str(report)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = orjson.loads(report.read_bytes())
    assert figures["frames_per_second"] > 0
    assert {r["setting"] for r in figures["results"]} == {"validate_output=True", "validate_output=False"}
    assert all(r["frames"] > 0 and r["records_persisted"] > 0 for r in figures["results"])
    assert "frames/s" in done.stdout
