"""``ocpp-bridge routes check``, run as the real command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

NEW = "ws://csms.example/ocpp"
OLD = "ws://old.example/cs"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCPP_BRIDGE_")}
    return subprocess.run([sys.executable, "-m", "ocpp_bridge.cli", "routes", "check", *args], capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})}, check=False)


def config_file(tmp_path: Path) -> Path:
    (tmp_path / "pilot.txt").write_text("# pilot\nCP-7\nDEPOT-*\nCP-001\n", encoding="utf-8")
    path = tmp_path / "bridge.toml"
    path.write_text(f'''
upstream = "{NEW}"
legacy_upstream = "{OLD}"

[upstreams.csms21]
url = "wss://csms21.example/ocpp"
protocols = ["ocpp2.1"]

[[routes]]
mode = "shadow"
identities = ["CP-001", "CP-01*"]
identities_file = "{tmp_path / 'pilot.txt'}"

[[routes]]
mode = "translate"
identities = ["NEW-1"]
upstream = "csms21"
''', encoding="utf-8")
    return path


def test_without_identities_every_named_identity_and_the_default(tmp_path: Path) -> None:
    done = run("--config", str(config_file(tmp_path)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["IDENTITY", "MODE", "UPSTREAM", "LEGACY", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ["CP-001", "CP-7", "NEW-1", "(default)"]
    assert lines[1].split()[:6] == ["CP-001", "shadow", "default", NEW, "legacy", OLD]
    assert lines[1].endswith('routes[0] identities "CP-001"')
    assert lines[2].endswith(f'routes[0] identities_file {tmp_path / "pilot.txt"}:2 "CP-7"')
    assert lines[3].split()[:4] == ["NEW-1", "translate", "csms21", "wss://csms21.example/ocpp"]
    assert lines[4].endswith('default_route = "translate"')
    columns = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(columns) == 1  # the mode column is aligned


def test_identities_from_arguments_and_a_file_as_json(tmp_path: Path) -> None:
    wanted = tmp_path / "wanted.txt"
    wanted.write_text("DEPOT-9  # a depot charger\n\n", encoding="utf-8")
    done = run("--config", str(config_file(tmp_path)), "CP-0155", "OTHER", "--identities-file", str(wanted),
               "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    assert [row["identity"] for row in rows] == ["CP-0155", "OTHER", "DEPOT-9"]
    assert rows[0] == {"identity": "CP-0155", "mode": "shadow",
                       "upstream": {"name": "default", "url": NEW, "protocols": ["ocpp2.0.1"]},
                       "legacy": {"name": "legacy", "url": OLD, "protocols": ["ocpp1.6"]},
                       "reason": 'routes[0] identities "CP-01*"'}
    assert rows[1]["mode"] == "translate" and rows[1]["reason"] == 'default_route = "translate"'
    assert rows[2]["reason"].endswith(':3 "DEPOT-*"')


def test_default_route_from_the_environment_without_legacy(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text(f'upstream = "{NEW}"\n', encoding="utf-8")
    done = run("--config", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"identity": None, "mode": "translate", "upstream": {
        "name": "default", "url": NEW, "protocols": ["ocpp2.0.1"]}, "legacy": None,
        "reason": 'default_route = "translate"'}]
    done = run("--config", str(path), "A", env={"OCPP_BRIDGE_LEGACY_UPSTREAM": OLD,
                                                "OCPP_BRIDGE_DEFAULT_ROUTE": "legacy"})
    assert done.stdout.splitlines()[1].split()[:2] == ["A", "legacy"]


def test_config_errors_exit_2_and_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'upstream = "{NEW}"\n[[routes]]\nmode = "translate"\nidentities = ["A"]\nupstream = "x"\n',
                    encoding="utf-8")
    done = run("--config", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert "routes[0].upstream" in done.stderr and "'x'" in done.stderr and "Traceback" not in done.stderr
    pilot = tmp_path / "pilot.txt"
    pilot.write_text("CP-1\nCP 2,3\n", encoding="utf-8")
    path.write_text(f'upstream = "{NEW}"\n[[routes]]\nmode = "translate"\nidentities_file = "{pilot}"\n',
                    encoding="utf-8")
    done = run("--config", str(path))
    assert done.returncode == 2 and f"{pilot}:2" in done.stderr
    done = run("--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "does not exist" in done.stderr
