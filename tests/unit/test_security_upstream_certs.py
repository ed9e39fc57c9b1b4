"""ocpp_bridge.io.upstream: the bridge's client certificate toward the CSMS, per deployment or per charger."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme

from ocpp_bridge import config
from ocpp_bridge.config import Settings
from ocpp_bridge.io.upstream import ChargerCertificates, UpstreamOptions, charger_certificates


@pytest.fixture
def ca(tmp_path: Path) -> trustme.CA:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return authority


def issue(ca: trustme.CA, directory: Path, stem: str, cn: str) -> None:
    leaf = ca.issue_cert("bridge.invalid", common_name=cn)
    (directory / f"{stem}.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(directory / f"{stem}.key"))


def settings(tmp_path: Path, directory: Path, **extra: object) -> Settings:
    return config.load(upstream="wss://csms.example.com/ocpp", upstream_ca=str(tmp_path / "ca.pem"),
                       upstream_client_certs_dir=str(directory), **extra)


def test_a_charger_with_files_gets_its_own_context_cached_until_they_change(tmp_path: Path, ca: trustme.CA) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    issue(ca, directory, "CP1", "bridge-for-CP1")
    built: list[str] = []
    chargers = charger_certificates(settings(tmp_path, directory))
    assert chargers is not None
    make = chargers._make
    chargers._make = lambda cert, key: built.append(cert.name) or make(cert, key)  # type: ignore[method-assign]
    first = chargers.context("CP1")
    assert isinstance(first, ssl.SSLContext) and chargers.context("CP1") is first and built == ["CP1.pem"]
    assert chargers.context("CP2") is None  # no files: the deployment's certificate applies
    issue(ca, directory, "CP1", "bridge-for-CP1-renewed")  # rotated on disk: rebuilt at the next connection
    stamp = os.stat(directory / "CP1.pem").st_mtime_ns + 1_000_000_000
    os.utime(directory / "CP1.pem", ns=(stamp, stamp))
    assert chargers.context("CP1") is not first and built == ["CP1.pem", "CP1.pem"]


def test_incomplete_or_broken_files_are_an_error_not_a_fallback(tmp_path: Path, ca: trustme.CA) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    issue(ca, directory, "CP1", "x")
    (directory / "CP1.key").unlink()
    chargers = charger_certificates(settings(tmp_path, directory))
    assert chargers is not None
    with pytest.raises(ValueError, match=r"only one of CP1\.pem and CP1\.key"):
        chargers.context("CP1")
    (directory / "CP2.pem").write_text("not a certificate")
    (directory / "CP2.key").write_text("not a key")
    with pytest.raises(ValueError, match=r"CP2\.pem/CP2\.key"):
        chargers.context("CP2")


def test_identities_never_name_a_path_outside_the_directory(tmp_path: Path) -> None:
    chargers = ChargerCertificates(tmp_path, lambda cert, key: ssl.create_default_context())
    (tmp_path / "..pem").write_text("")
    for identity in ("..", ".", "", "a/b", "a\0b"):
        assert chargers.context(identity) is None


def test_only_a_charger_the_bridge_authenticated_gets_its_own_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    issue(ca, directory, "CP1", "bridge-for-CP1")
    deployment = ssl.create_default_context()
    options = UpstreamOptions(deployment, chargers=charger_certificates(settings(tmp_path, directory)))
    own = options.context_for("CP1", authenticated=True)
    assert own is not None and own is not deployment
    assert options.context_for("CP1", authenticated=False) is deployment  # only the CSMS can vouch for it
    assert options.context_for("CP2", authenticated=True) is deployment
    assert UpstreamOptions(None).context_for("CP1", authenticated=True) is None  # ws://


@pytest.mark.parametrize(("values", "message"), [
    ({"upstream": "ws://csms/ocpp", "upstream_client_certs_dir": "."}, "needs a wss:// upstream"),
    ({"upstream": "wss://csms/ocpp", "upstream_client_certs_dir": "/nonexistent-dir"}, "'upstream_client_certs_dir' "
     ".*not a directory"),
    ({"upstream": "wss://csms/ocpp", "upstream_client_certs_cache": "0"}, "'upstream_client_certs_cache' "
     ".*greater than or equal to 1"),
])
def test_setting_mistakes_name_the_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(**values)
