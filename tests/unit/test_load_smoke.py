"""The load benchmark still runs: a tiny fleet through the direct, relay and bridge paths, each with a positive rate.

It only checks that the benchmark works (the figures depend on the machine; see benchmarks/README.md). It starts
real processes on loopback (the sink, the relay and ``ocpp-bridge serve``), so it needs the ``bench`` extra
(psutil; uvloop and matplotlib are optional) and is skipped without psutil.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_load_smoke_run_reports_a_positive_rate_per_path(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="the load benchmark needs the bench extra: pip install -e '.[bench]'")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load.py"), "--smoke", "--out", str(tmp_path)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = tmp_path.glob("*/result.json")
    figures = orjson.loads(result.read_bytes())
    assert set(figures["paths"]) == {"direct", "relay", "bridge"}
    for path, measured in figures["paths"].items():
        assert measured["storm"]["booted"] == 5, (path, measured["storm"])
        for mode in ("closed", "open"):
            assert measured[mode]["messages_per_second"] > 0, (path, mode, measured[mode])
    assert (result.parent / "report.md").read_text().startswith("# Load benchmark")
