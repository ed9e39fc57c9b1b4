"""Per-charger routes (issue 8): settings, rule precedence, identities files, errors that name the problem."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge import config
from ocpp_bridge.routes import ROUTE_MODES, Route, RouteTable, UpstreamTarget

NEW = "ws://csms.example/ocpp"
OLD = "ws://old.example/cs"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OCPP_BRIDGE_"):
            monkeypatch.delenv(name)


def table(**values: Any) -> RouteTable:
    values.setdefault("upstream", NEW)
    return RouteTable.from_settings(config.load(**values))


def error(**values: Any) -> str:
    values.setdefault("upstream", NEW)
    with pytest.raises(config.ConfigError) as info:
        RouteTable.from_settings(config.load(**values))
    return str(info.value)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- resolving ---------------------------------------------------------------------------------------------


def test_without_rules_everyone_takes_the_default_route() -> None:
    routes = table()
    route = routes.resolve("CP-1")
    assert route == Route("translate", UpstreamTarget("default", NEW, ("ocpp2.0.1",)), None,
                          'default_route = "translate"')
    assert not route.upstream.legacy
    assert routes.explicit_identities() == []
    assert set(routes.upstreams) == {"default"}


def test_legacy_upstream_is_the_upstream_named_legacy() -> None:
    routes = table(legacy_upstream=OLD + "/", default_route="legacy", upstream_protocols="ocpp2.1,ocpp2.0.1")
    route = routes.resolve("CP-1")
    assert route.mode == "legacy" and route.reason == 'default_route = "legacy"'
    assert route.legacy == UpstreamTarget("legacy", OLD, ("ocpp1.6",)) and route.legacy.legacy
    assert route.upstream.protocols == ("ocpp2.1", "ocpp2.0.1")


def test_first_matching_rule_in_file_order_wins_over_a_later_exact_name() -> None:
    routes = table(legacy_upstream=OLD, routes=[
        {"mode": "legacy", "identities": ["CP-0*"]},
        {"mode": "shadow", "identities": ["CP-001", "CP-9"]},
        {"mode": "translate", "identities": ["CP-9", "CP-?"]},
    ])
    assert routes.resolve("CP-001").mode == "legacy"  # the glob of rule 0 comes first
    assert routes.resolve("CP-001").reason == 'routes[0] identities "CP-0*"'
    assert routes.resolve("CP-9").mode == "shadow"  # exact in rule 1 beats rule 2's exact and glob
    assert routes.resolve("CP-9").reason == 'routes[1] identities "CP-9"'
    assert routes.resolve("CP-7").reason == 'routes[2] identities "CP-?"'
    assert routes.resolve("CP-77").reason == 'default_route = "translate"'
    assert routes.explicit_identities() == ["CP-001", "CP-9"]


def test_an_exact_name_before_a_glob_wins() -> None:
    routes = table(legacy_upstream=OLD, routes=[
        {"mode": "shadow", "identities": ["CP-5"]},
        {"mode": "legacy", "identities": ["CP-*"]},
    ])
    assert routes.resolve("CP-5").mode == "shadow"
    assert routes.resolve("CP-6").mode == "legacy"


def test_globs_are_case_sensitive_and_support_classes() -> None:
    routes = table(legacy_upstream=OLD, routes=[{"mode": "legacy", "identities": ["cp-[0-4]?", "X[!A]"]}])
    assert routes.resolve("cp-12").mode == "legacy"
    assert routes.resolve("CP-12").mode == "translate"  # fnmatchcase, not the OS's rules
    assert routes.resolve("cp-52").mode == "translate"
    assert routes.resolve("XB").mode == "legacy" and routes.resolve("XA").mode == "translate"


def test_identities_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    pilot = write(tmp_path, "pilot.txt", "# pilot chargers\n\nCP-5\n  CP-7  # depot B\nDEPOT-*\nCP-5\n")
    routes = table(legacy_upstream=OLD, routes=[
        {"mode": "shadow", "identities": ["CP-1"], "identities_file": str(pilot)},
        {"mode": "legacy", "identities": ["CP-7", "CP-8"]},
    ])
    assert routes.resolve("CP-7").reason == f'routes[0] identities_file {pilot}:4 "CP-7"'
    assert routes.resolve("CP-7").mode == "shadow"
    assert routes.resolve("DEPOT-3").reason == f'routes[0] identities_file {pilot}:5 "DEPOT-*"'
    assert routes.resolve("CP-1").reason == 'routes[0] identities "CP-1"'
    assert routes.explicit_identities() == ["CP-1", "CP-5", "CP-7", "CP-8"]


def test_identities_file_bad_line_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.txt", "CP-1\n# fine\nCP:2\n")
    message = error(routes=[{"mode": "translate", "identities_file": str(bad)}])
    assert f"{bad}:3" in message and "'CP:2'" in message and "routes[0].identities_file" in message
    long = write(tmp_path, "long.txt", "A" * 49 + "\n")
    assert f"{long}:1" in error(routes=[{"mode": "translate", "identities_file": str(long)}])
    glob = write(tmp_path, "glob.txt", "\n\nCP-[1\n")
    assert f"{glob}:3" in error(routes=[{"mode": "translate", "identities_file": str(glob)}])
    missing = error(routes=[{"mode": "translate", "identities_file": str(tmp_path / "none.txt")}])
    assert "none.txt" in missing and "cannot be read" in missing


def test_route_rules_from_a_toml_file(tmp_path: Path) -> None:
    write(tmp_path, "pilot.txt", "CP-7\n")
    path = write(tmp_path, "bridge.toml", f'''
upstream = "{NEW}"
legacy_upstream = "{OLD}"
default_route = "legacy"

[upstreams.csms21]
url = "wss://csms21.example/ocpp"
protocols = ["ocpp2.1", "ocpp2.0.1"]

[upstreams.oldeu]
url = "ws://old-eu.example/cs"
protocols = ["ocpp1.6"]

[[routes]]
mode = "shadow"
identities = ["CP-001", "CP-01*"]
identities_file = "{tmp_path / 'pilot.txt'}"
upstream = "csms21"
legacy_upstream = "oldeu"

[[routes]]
mode = "translate"
identities = ["NEW-*"]
''')
    routes = RouteTable.from_settings(config.load(path))
    shadow = routes.resolve("CP-7")
    assert shadow.mode == "shadow"
    assert shadow.upstream == UpstreamTarget("csms21", "wss://csms21.example/ocpp", ("ocpp2.1", "ocpp2.0.1"))
    assert shadow.legacy == UpstreamTarget("oldeu", "ws://old-eu.example/cs", ("ocpp1.6",))
    assert routes.resolve("NEW-1").legacy == UpstreamTarget("legacy", OLD, ("ocpp1.6",))  # the implicit one
    assert routes.resolve("OTHER").mode == "legacy"
    assert list(routes.upstreams) == ["default", "legacy", "csms21", "oldeu"]


# --- errors --------------------------------------------------------------------------------------------------


def test_unknown_upstream_name() -> None:
    message = error(routes=[{"mode": "translate", "identities": ["A"], "upstream": "nope"}])
    assert "routes[0].upstream" in message and "'nope'" in message and "configured: default" in message


def test_upstream_of_the_wrong_kind() -> None:
    upstreams = {"old2": {"url": OLD, "protocols": ["ocpp1.6"]}, "new2": {"url": NEW, "protocols": ["ocpp2.1"]}}
    message = error(upstreams=upstreams, routes=[{"mode": "translate", "identities": ["A"], "upstream": "old2"}])
    assert "routes[0].upstream" in message and "'old2' speaks ocpp1.6" in message
    message = error(upstreams=upstreams, routes=[
        {"mode": "translate", "identities": ["A"]},
        {"mode": "legacy", "identities": ["B"], "legacy_upstream": "new2"},
    ])
    assert "routes[1].legacy_upstream" in message and "'new2' is a 2.x CSMS" in message
    message = error(routes=[{"mode": "translate", "identities": ["A"], "legacy_upstream": "gone"}])
    assert "routes[0].legacy_upstream" in message and "'gone'" in message


def test_legacy_mode_without_a_legacy_upstream() -> None:
    message = error(routes=[{"mode": "shadow", "identities": ["A"]}])
    assert "routes[0].mode" in message and "'shadow'" in message and "legacy_upstream" in message
    message = error(default_route="legacy")
    assert "'default_route'" in message and "legacy_upstream" in message


def test_bad_modes_and_rules() -> None:
    assert "'routes[0].mode'" in error(routes=[{"mode": "mirror", "identities": ["A"]}])
    assert "translate, legacy, shadow" in error(routes=[{"mode": "mirror", "identities": ["A"]}])
    assert "identities_file" in error(routes=[{"mode": "translate"}])
    assert "'routes[0].colour'" in error(routes=[{"mode": "translate", "identities": ["A"], "colour": 1}])
    assert "'default_route'" in error(default_route="mirror")
    assert "routes[0].identities[1]" in error(routes=[{"mode": "translate", "identities": ["A", "B,C"]}])


def test_upstream_settings_errors() -> None:
    assert "cannot be mixed" in error(upstreams={"x": {"url": OLD, "protocols": ["ocpp1.6", "ocpp2.0.1"]}})
    assert "'upstreams.x.url'" in error(upstreams={"x": {"url": "http://old/cs"}})
    assert "'upstreams.x.protocols'" in error(upstreams={"x": {"url": OLD, "protocols": ["ocpp1.5"]}})
    assert "reserved" in error(upstreams={"legacy": {"url": OLD, "protocols": ["ocpp1.6"]}})
    assert "'legacy_upstream'" in error(legacy_upstream="http://old/cs")


def test_route_errors_name_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bridge.toml", f'upstream = "{NEW}"\n[[routes]]\nmode = "legacy"\nidentities = ["A"]\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert "routes[0].mode" in str(info.value) and str(path) in str(info.value)


# --- admin API switching -----------------------------------------------------------------------------------


def test_with_mode() -> None:
    routes = table(legacy_upstream=OLD, routes=[{"mode": "legacy", "identities": ["A"]}])
    switched = routes.with_mode(routes.resolve("A"), "shadow")
    assert switched.mode == "shadow" and switched.reason == "admin API"
    assert switched.upstream == routes.resolve("A").upstream and switched.legacy == routes.resolve("A").legacy
    with pytest.raises(ValueError, match="unknown route mode 'mirror': use one of translate, legacy, shadow"):
        routes.with_mode(switched, "mirror")
    alone = table()
    assert alone.with_mode(alone.resolve("A"), "translate").reason == "admin API"
    for mode in ("legacy", "shadow"):
        with pytest.raises(ValueError, match=f"'{mode}' needs an old 1.6 central system"):
            alone.with_mode(alone.resolve("A"), mode)
    assert ROUTE_MODES == ("translate", "legacy", "shadow")


# --- precedence of the new settings ------------------------------------------------------------------------


def test_new_settings_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "bridge.toml", f'upstream = "{NEW}"\nlegacy_upstream = "ws://file/cs"\n'
                 'default_route = "legacy"\nadmin_listen = "127.0.0.1:7000"\nadmin_token = "file-token-0123456789"\n')
    settings = config.load(path)
    assert settings.legacy_upstream == "ws://file/cs" and settings.default_route == "legacy"
    monkeypatch.setenv("OCPP_BRIDGE_LEGACY_UPSTREAM", "ws://env/cs")
    monkeypatch.setenv("OCPP_BRIDGE_DEFAULT_ROUTE", "shadow")
    monkeypatch.setenv("OCPP_BRIDGE_ADMIN_TOKEN", "env-token-0123456789")
    settings = config.load(path)
    assert settings.legacy_upstream == "ws://env/cs" and settings.default_route == "shadow"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "env-token-0123456789"
    settings = config.load(path, legacy_upstream="ws://flag/cs", default_route="translate",
                           admin_listen="127.0.0.1:7001", admin_token="flag-token-0123456789")
    assert settings.legacy_upstream == "ws://flag/cs" and settings.default_route == "translate"
    assert settings.admin_listen == "127.0.0.1:7001"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "flag-token-0123456789"


def test_routes_and_upstreams_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_UPSTREAMS", '{"old": {"url": "ws://old/cs", "protocols": ["ocpp1.6"]}}')
    monkeypatch.setenv("OCPP_BRIDGE_ROUTES", '[{"mode": "legacy", "identities": ["A"], "legacy_upstream": "old"}]')
    route = table().resolve("A")
    assert route.mode == "legacy" and route.legacy == UpstreamTarget("old", "ws://old/cs", ("ocpp1.6",))


def test_admin_settings_are_checked_and_the_token_never_shown(tmp_path: Path) -> None:
    from ocpp_bridge.reference import masked

    assert "'admin_token' Value error, is required" in error(admin_listen="127.0.0.1:7000")
    short = error(admin_listen="127.0.0.1:7000", admin_token="abc-secret")
    assert "shorter than 16" in short and "abc-secret" not in short
    assert "'admin_listen'" in error(admin_listen="nowhere", admin_token="x" * 16)
    cert = write(tmp_path, "admin.pem", "")
    assert "go together" in error(admin_tls_cert=str(cert))
    assert "not a readable file" in error(admin_tls_cert=str(tmp_path / "no.pem"), admin_tls_key=str(cert))
    settings = config.load(upstream=NEW, admin_listen="127.0.0.1:7000", admin_token="s3cret-s3cret-s3cret")
    assert masked(settings)["admin_token"] == "***"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(masked(settings))


def test_serve_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocpp_bridge import cli

    seen: dict[str, Any] = {}

    def fake_load(path: Path | None, **flags: Any) -> Any:
        seen.update(flags)
        raise config.ConfigError("stop here")

    monkeypatch.setattr(config, "load", fake_load)
    assert cli.main(["serve", "--upstream", NEW, "--legacy-upstream", OLD, "--default-route", "shadow",
                     "--admin-listen", "127.0.0.1:7000", "--admin-token", "t" * 16]) == 2
    assert seen["legacy_upstream"] == OLD and seen["default_route"] == "shadow"
    assert seen["admin_listen"] == "127.0.0.1:7000" and seen["admin_token"] == "t" * 16


# --- resolve == the naive first match ----------------------------------------------------------------------

_PATTERNS = st.sampled_from(["A", "B", "AB", "A*", "*B", "?", "[AB]", "A?", "*", "BA", "[!A]*"])


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(st.tuples(st.sampled_from(ROUTE_MODES), st.lists(_PATTERNS, min_size=1, max_size=4)),
                      max_size=5),
       identity=st.sampled_from(["A", "B", "AB", "BA", "ABA", "C", "a"]))
def test_resolve_is_the_first_match_in_file_order(rules: list[tuple[str, list[str]]], identity: str) -> None:
    legacy = UpstreamTarget("legacy", OLD, ("ocpp1.6",))
    upstream = UpstreamTarget("default", NEW, ("ocpp2.0.1",))
    default = Route("translate", upstream, legacy, "default")
    entries = [(pattern, Route(mode, upstream, legacy, f"routes[{index}] {pattern}"))  # type: ignore[arg-type]
               for index, (mode, patterns) in enumerate(rules) for pattern in patterns]
    expected = next((route for pattern, route in entries if fnmatchcase(identity, pattern)), default)
    assert RouteTable({"default": upstream, "legacy": legacy}, default, entries).resolve(identity) == expected
