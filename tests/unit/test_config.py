"""Settings precedence (flags > env > file > defaults) and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocpp_bridge import config
from ocpp_bridge.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OCPP_BRIDGE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = config.load(upstream="ws://csms:9000/ocpp")
    assert settings.listen == "0.0.0.0:9000"
    assert settings.upstream_protocols == ["ocpp2.0.1"]
    assert settings.state == "./ocpp-bridge.db"
    assert settings.listen_address == ("0.0.0.0", 9000)


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'upstream = "ws://file/ocpp"\nlisten = "127.0.0.1:1000"\nstate = "file.db"\n')
    monkeypatch.setenv("OCPP_BRIDGE_LISTEN", "127.0.0.1:2000")
    monkeypatch.setenv("OCPP_BRIDGE_STATE", "env.db")
    settings = config.load(path, state="flag.db")
    assert settings.upstream == "ws://file/ocpp"  # only in the file
    assert settings.listen == "127.0.0.1:2000"  # env beats file
    assert settings.state == "flag.db"  # flag beats env


def test_protocol_list_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_UPSTREAM_PROTOCOLS", "ocpp2.1, ocpp2.0.1")
    assert config.load(upstream="ws://x/o").upstream_protocols == ["ocpp2.1", "ocpp2.0.1"]
    monkeypatch.delenv("OCPP_BRIDGE_UPSTREAM_PROTOCOLS")
    path = write(tmp_path, 'upstream = "ws://x/o"\nupstream_protocols = ["ocpp2.1"]\n')
    assert config.load(path).upstream_protocols == ["ocpp2.1"]


@pytest.mark.parametrize(("flags", "fragment"), [
    ({}, "'upstream' is required"),
    ({"upstream": "http://csms/ocpp"}, "'upstream'"),
    ({"upstream": "ws://x/o", "listen": "nohost"}, "'listen'"),
    ({"upstream": "ws://x/o", "listen": "1.2.3.4:99999"}, "out of range"),
    ({"upstream": "ws://x/o", "upstream_protocols": "ocpp1.6"}, "'upstream_protocols'"),
])
def test_errors_name_the_setting(flags: dict[str, str], fragment: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(**flags)
    assert fragment in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "upstream = \n"))
    with pytest.raises(config.ConfigError, match="unknown setting"):
        config.load(write(tmp_path, 'upstream = "ws://x/o"\nlisten_port = 3\n'))
    with pytest.raises(config.ConfigError, match="IdTokenEnumType"):
        config.load(write(tmp_path, 'upstream = "ws://x/o"\ntoken_types = { "^A$" = "Badge" }\n'))


def test_token_type_rules_come_first() -> None:
    core = config.load(upstream="ws://x/o", token_types={"[0-9]{8}": "KeyCode"}).core()
    assert core.token_type("12345678") == "KeyCode"  # would be ISO14443 (8 hex digits) by default
    assert core.token_type("ABCDEF12") == "ISO14443"
    assert core.token_type("free-vend") == "Local"


def test_cli_reports_bad_settings_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream", "ftp://nope", "--listen", "127.0.0.1:0"]) == 2
    assert "setting 'upstream'" in capsys.readouterr().err


def test_check_config_prints_effective_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = write(tmp_path, 'upstream = "ws://csms/ocpp"\nlisten = "127.0.0.1:9100"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    effective = json.loads(out.out)
    assert effective["listen"] == "127.0.0.1:9100" and effective["upstream"] == "ws://csms/ocpp"
    assert "configuration is valid" in out.err


def test_check_config_names_the_bad_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'upstream = "ws://csms/ocpp"\noutage_mode = "panic"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "'outage_mode'" in capsys.readouterr().err


def test_masking_of_secret_looking_settings() -> None:
    from ocpp_bridge.reference import masked, secret_settings

    settings = config.load(upstream="ws://x/o", default_token_type="Central")
    shown = masked(settings)
    assert shown["upstream"] == "ws://x/o" and shown["default_token_type"] == "Central"  # not secrets
    for name in secret_settings():
        assert shown[name] in ("***", None, "", [], {})
