"""Docs generated from code must be current; the container and Kubernetes contracts are checked statically
(no Docker engine runs on the build machines)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ocpp_bridge import reference
from ocpp_bridge.cli import _parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", reference.DOCUMENTS)
def test_configuration_reference_is_current(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert reference.render(text) == text, f"{document} is stale: run python -m ocpp_bridge.reference"


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def test_dockerfile_contract() -> None:
    steps = instructions()
    stages = [arg for op, arg in steps if op == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("python:3.1") and "slim" in s for s in stages)  # multi-stage, slim
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    user = [arg for op, arg in final if op == "USER"]
    assert user and user[-1] not in ("root", "0")  # non-root
    health = next(arg for op, arg in final if op == "HEALTHCHECK")
    assert "/healthz" in health
    entrypoint = next(arg for op, arg in final if op == "ENTRYPOINT")
    command = next(arg for op, arg in final if op == "CMD")
    argv = [*shlex.split(entrypoint.strip("[]").replace('"', "").replace(",", " ")),
            *shlex.split(command.strip("[]").replace('"', "").replace(",", " "))]
    assert argv[0] == "ocpp-bridge"
    _parser().parse_args([*argv[1:], "--upstream", "ws://csms/ocpp"])  # the CLI accepts what the image runs
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "OCPP_BRIDGE_STATE=/var/lib/ocpp-bridge/" in env  # state on the volume: read-only root works
    assert any(op == "VOLUME" and "/var/lib/ocpp-bridge" in arg for op, arg in final)
    exposed = " ".join(arg for op, arg in final if op == "EXPOSE")
    assert "9000" in exposed


def test_kubernetes_example_has_probes_secret_and_budget() -> None:
    text = (ROOT / "deploy/kubernetes/csms-with-bridge.yaml").read_text(encoding="utf-8")
    kinds = set(re.findall(r"^kind: (\w+)", text, re.M))
    assert {"Deployment", "Secret", "PodDisruptionBudget", "Service"} <= kinds
    assert "path: /healthz" in text and "path: /readyz" in text
    assert "readOnlyRootFilesystem: true" in text and "secretRef" in text
