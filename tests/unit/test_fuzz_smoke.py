"""CI smoke run of the coverage-guided fuzzer (benchmarks/fuzz_core.py): it must run and find no crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_fuzzer_runs_without_a_crash() -> None:
    pytest.importorskip("atheris", reason="atheris is installed by the test extra on Linux")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/fuzz_core.py"), "-atheris_runs=1500"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Done 1500 runs" in done.stderr or "Done 1500 in" in done.stderr
