"""The load benchmark still runs: a tiny fleet through the direct, relay and bridge paths, each with a positive rate,
and through the picows relay when picows is installed.

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


def test_load_smoke_runs_the_picows_relay(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="the load benchmark needs the bench extra: pip install -e '.[bench]'")
    pytest.importorskip("picows", reason="the relay-picows path needs picows (in the test and bench extras, Linux)")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load.py"), "--smoke", "--paths", "relay-picows",
                           "--out", str(tmp_path)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = tmp_path.glob("*/result.json")
    figures = orjson.loads(result.read_bytes())
    assert set(figures["paths"]) == {"relay-picows"}
    measured = figures["paths"]["relay-picows"]
    assert measured["storm"]["booted"] == 5, measured["storm"]
    for mode in ("closed", "open"):
        assert measured[mode]["messages_per_second"] > 0, (mode, measured[mode])
        assert sum(measured[mode]["call_errors"].values()) == 0, (mode, measured[mode]["call_errors"])


def test_load_summary_compares_the_bridge_with_both_relays() -> None:
    pytest.importorskip("psutil", reason="the load benchmark needs the bench extra: pip install -e '.[bench]'")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import load
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    closed = {"relay": 20_000, "relay-picows": 50_000, "bridge": 4_000}
    summary = load.summarize({"paths": {p: {"closed": {"messages_per_server_core": rate, "messages_per_second": rate}}
                                        for p, rate in closed.items()}})
    assert summary["bridge_vs_relay_per_core"] == 0.2
    assert summary["bridge_vs_relay_picows_per_core"] == 0.08
    assert summary["bridge_extra_cpu_us_per_message_vs_relay"] == 200.0  # 250 us - 50 us
    assert summary["bridge_extra_cpu_us_per_message_vs_relay_picows"] == 230.0  # 250 us - 20 us
