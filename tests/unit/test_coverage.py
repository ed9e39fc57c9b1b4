"""The coverage matrix (issue 3 item 6): generated from the registry, complete, and never stale."""

from __future__ import annotations

from pathlib import Path

from ocpp_bridge import coverage
from ocpp_bridge.core import validate
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.translate import CHARGER_ROUTES, CSMS_ROUTES, Handling


def test_docs_coverage_md_is_up_to_date() -> None:
    assert coverage.DOC.read_text(encoding="utf-8") == coverage.render(), \
        "docs/coverage.md is stale: run `python -m ocpp_bridge.coverage`"


def test_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "coverage.md"
    assert coverage.main(["--check", str(path)]) == 1
    assert coverage.main([str(path)]) == 0
    assert coverage.main(["--check", str(path)]) == 0


def test_routes_name_real_actions_in_the_right_direction() -> None:
    v16 = validate.actions(Version.V16)
    v2 = validate.actions(Version.V201) | validate.actions(Version.V21)
    assert set(CHARGER_ROUTES) <= coverage.V16_FROM_CHARGER <= v16
    assert v2 >= coverage.V2_FROM_STATION
    for action, route in CSMS_ROUTES.items():
        assert action in v2
        assert action not in coverage.V2_FROM_STATION or action == "DataTransfer", action
        if route.handling is Handling.TRANSLATED:
            assert set(route.becomes) <= v16, action  # what a translated request becomes is 1.6


def test_every_csms_action_is_routed_or_knowingly_pending() -> None:
    v2 = validate.actions(Version.V201) | validate.actions(Version.V21)
    from_csms = {a for a in v2 if a not in coverage.V2_FROM_STATION or a == "DataTransfer"}
    assert from_csms - set(CSMS_ROUTES) == set(coverage.PENDING)
    assert set(CHARGER_ROUTES) == coverage.V16_FROM_CHARGER  # every 1.6 charger message is handled


def test_every_action_appears_in_the_matrix() -> None:
    text = coverage.render()
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    for version in Version:
        assert validate.actions(version) <= rows, version
