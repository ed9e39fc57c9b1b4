"""Security settings: [[listeners]] tables and their rules, limit knobs, hash-password, and the docs that list them."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import trustme

from ocpp_bridge import config
from ocpp_bridge.cli import main
from ocpp_bridge.config import ListenerSettings, Settings
from ocpp_bridge.io.security import hash_password, verify_password

ROOT = Path(__file__).resolve().parents[2]
HASH = hash_password(b"pw-0123456789abcdef", n=1 << 10)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OCPP_BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return {"cert": str(cert), "key": str(key), "ca": str(ca_file)}


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "bridge.toml"
    path.write_text('upstream = "wss://csms.example.com/ocpp"\n' + text)
    return config.load(path)


def test_listeners_from_toml(tmp_path: Path, tls_files: dict[str, str]) -> None:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(f'CP1 = "{HASH}"\n"RDAM 123" = "{HASH}"\n')
    settings = load(tmp_path, f'''
[[listeners]]
address = "0.0.0.0:8080"
profile = 1
credentials_file = "{credentials}"

[[listeners]]
address = "0.0.0.0:8443"
profile = 2
tls_cert = "{tls_files["cert"]}"
tls_key = "{tls_files["key"]}"
auth = "forward"

[[listeners]]
address = "[::]:9443"
profile = 3
tls_cert = ["{tls_files["cert"]}"]
tls_key = ["{tls_files["key"]}"]
tls_ca = "{tls_files["ca"]}"
operator = "ACME CPO"
serial_identities = {{ "SN-1" = "CP1" }}
expired_certificates = "accept"
''')
    first, second, third = settings.listeners
    assert isinstance(first, ListenerSettings) and (first.profile, first.auth) == (1, "local")
    assert second.tls and second.tls_cert == [Path(tls_files["cert"])] and second.tls_min_version == "1.2"
    assert third.host_port == ("::", 9443) and third.serial_identities == {"SN-1": "CP1"}
    from ocpp_bridge.io.security import load_credentials

    assert set(load_credentials(first)) == {"CP1", "RDAM 123"}


@pytest.mark.parametrize(("table", "message"), [
    ('profile = 2\nauth = "forward"', "needs tls_cert and tls_key"),
    ('profile = 1\ntls_cert = "{cert}"\ntls_key = "{key}"\nauth = "forward"', "plain ws"),
    ('profile = 3\ntls_cert = "{cert}"\ntls_key = "{key}"', "needs tls_ca"),
    ('profile = 3\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{ca}"', "operator"),
    ("profile = 1", "needs credentials"),
    ('profile = 1\ncredentials = {{ CP1 = "plain-password" }}', "malformed|hash"),
    ('profile = 1\nauth = "maybe"', "local or forward"),
    ('profile = 2\ntls_cert = "{cert}"\ntls_key = "{key}"\nauth = "forward"\ntls_min_version = "1.0"',
     "1.2 or 1.3"),
    ('profile = 2\ntls_cert = "/nonexistent.pem"\ntls_key = "{key}"\nauth = "forward"', "not a readable file"),
    ("profile = 4", "less than or equal to 3"),
    ('profile = 1\nauth = "forward"\ncolour = "red"', "Extra inputs"),
    ('profile = 3\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{ca}"\noperator = "X"\n'
     'expired_certificates = "sometimes"', "reject or accept"),
    ('profile = 2\ntls_cert = "{cert}"\ntls_key = "{key}"\nauth = "forward"\ntls_crl = "{ca}"',
     "tls_crl is for profile 3"),
    ('profile = 3\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{ca}"\noperator = "X"\ntls_crl = "{ca}"',
     "tls_crl .*no certificate revocation list"),
    ('profile = 3\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{ca}"\noperator = "X"\n'
     'tls_crl = "/nonexistent.crl"', "not a readable file"),
])
def test_listener_mistakes_are_refused_with_a_message(tmp_path: Path, tls_files: dict[str, str], table: str,
                                                      message: str) -> None:
    text = f'[[listeners]]\naddress = "0.0.0.0:8443"\n{table.format(**tls_files)}\n'
    with pytest.raises(config.ConfigError, match=message):
        load(tmp_path, text)


def test_listener_addresses_must_differ(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="address of their own"):
        load(tmp_path, 'listen = "0.0.0.0:9000"\n[[listeners]]\naddress = "0.0.0.0:9000"\nauth = "forward"\n')


def test_credentials_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "creds.toml"
    bad.write_text("CP1 = 5\n")
    with pytest.raises(config.ConfigError, match="values must be strings"):
        load(tmp_path, f'[[listeners]]\naddress = "0.0.0.0:1"\nprofile = 1\ncredentials_file = "{bad}"\n')
    with pytest.raises(config.ConfigError, match="does-not-exist"):
        load(tmp_path, f'[[listeners]]\naddress = "0.0.0.0:1"\nprofile = 1\n'
                       f'credentials_file = "{tmp_path / "does-not-exist.toml"}"\n')


def test_limit_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = config.load(upstream="ws://csms/ocpp")
    assert settings.listeners == []
    assert (settings.max_message_size, settings.frame_rate, settings.frame_burst) == (1 << 20, 100.0, 200)
    assert (settings.csms_frame_rate, settings.csms_frame_burst, settings.csms_frame_rate_close_after) == \
        (100.0, 200, 1000)
    assert (settings.handshake_timeout, settings.ping_interval, settings.ping_timeout) == (10.0, 20.0, 20.0)
    assert settings.duplicate_policy == "replace" and settings.compression == "deflate"
    assert settings.per_ip_exempt == ["127.0.0.0/8", "::1/128"]
    monkeypatch.setenv("OCPP_BRIDGE_PER_IP_EXEMPT", "")
    monkeypatch.setenv("OCPP_BRIDGE_FRAME_RATE", "7.5")
    monkeypatch.setenv("OCPP_BRIDGE_LISTENERS", json.dumps([{"address": "127.0.0.1:7001", "auth": "forward",
                                                             "profile": 1}]))
    settings = config.load(upstream="ws://csms/ocpp")
    assert settings.per_ip_exempt == [] and settings.frame_rate == 7.5
    assert settings.listeners[0].address == "127.0.0.1:7001"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("duplicate_policy", '"newest"', "replace or reject"),
    ("compression", '"gzip"', "deflate or none"),
    ("per_ip_exempt", '["not-a-network"]', "does not appear to be"),
    ("max_message_size", "10", "greater than or equal to 1024"),
    ("upstream_cert", '"/nonexistent.pem"', "not a readable file"),
    ("csms_frame_rate", "0", "'csms_frame_rate' .*greater than 0"),
    ("csms_frame_burst", "0", "'csms_frame_burst' .*greater than or equal to 1"),
    ("csms_frame_rate_close_after", "-1", "'csms_frame_rate_close_after' .*greater than or equal to 0"),
])
def test_limit_mistakes(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        load(tmp_path, f"{name} = {value}\n")


def test_upstream_client_certificate_needs_its_key(tmp_path: Path, tls_files: dict[str, str]) -> None:
    with pytest.raises(config.ConfigError, match="go together"):
        load(tmp_path, f'upstream_cert = "{tls_files["cert"]}"\n')


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery staple\n"))
    assert main(["hash-password", "--scheme", "pbkdf2"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert verify_password(encoded, b"correct horse battery staple")
    monkeypatch.setattr("sys.stdin", io.StringIO("00ff10\n"))
    assert main(["hash-password", "--hex"]) == 0
    assert verify_password(capsys.readouterr().out.strip(), b"\x00\xff\x10")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["hash-password"]) == 2


def test_docs_security_names_every_listener_key_and_security_setting() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    for name in ListenerSettings.model_fields:
        assert f"`{name}`" in text, name
    for name in ("max_message_size", "compression", "frame_rate", "frame_burst", "frame_rate_close_after",
                 "max_connections", "max_connections_per_ip", "max_handshakes_per_ip", "handshake_rate_per_ip",
                 "handshake_burst_per_ip", "per_ip_exempt", "handshake_timeout", "ping_interval", "ping_timeout",
                 "close_timeout", "write_limit", "auth_failure_delay", "auth_failure_delay_max", "duplicate_policy",
                 "replacements_per_minute", "upstream_ca", "upstream_cert", "upstream_key",
                 "upstream_credentials_file", "csms_frame_rate", "csms_frame_burst", "csms_frame_rate_close_after",
                 "upstream_client_certs_dir", "upstream_client_certs_cache"):
        assert f"`{name}`" in text, name
