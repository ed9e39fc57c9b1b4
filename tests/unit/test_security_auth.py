"""ocpp_bridge.io.security: password hashes, Basic credentials, client-certificate rules, TLS contexts, events,
and frames made safe for logs."""

from __future__ import annotations

import base64
import logging
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_bridge import telemetry
from ocpp_bridge.config import OCPP_CIPHERS, ListenerSettings, Settings
from ocpp_bridge.io import security
from ocpp_bridge.io.security import (
    CredentialStore,
    ListenerPolicy,
    check_certificate,
    hash_password,
    parse_basic,
    redact_frame,
    verify_password,
)

CHEAP = {"n": 1 << 10}  # fast scrypt for tests


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2"])
def test_hash_and_verify(scheme: str) -> None:
    extra: dict[str, Any] = CHEAP if scheme == "scrypt" else {"iterations": 1000}
    encoded = hash_password(b"s3cret-key-0123456789", scheme, **extra)
    assert encoded.startswith("scrypt$" if scheme == "scrypt" else "pbkdf2_sha256$")
    assert b"s3cret" not in encoded.encode()
    assert verify_password(encoded, b"s3cret-key-0123456789")
    assert not verify_password(encoded, b"s3cret-key-012345678")
    assert hash_password(b"x", scheme, **extra) != hash_password(b"x", scheme, **extra)  # salted


@pytest.mark.parametrize("encoded", [
    "plain-text-password",
    "scrypt$16384$8$1$c2FsdA==",  # a field missing
    "scrypt$1000$8$1$c2FsdA==$aGFzaA==",  # n not a power of two
    "scrypt$16384$8$1$!!!$aGFzaA==",  # not base64
    "scrypt$16384$8$1$$aGFzaA==",  # empty salt
    "scrypt$2097152$8$1$c2FsdA==$aGFzaA==",  # n too large (memory)
    "pbkdf2_sha256$10$c2FsdA==$aGFzaA==",  # too few iterations
    "md5$abc$def",
])
def test_malformed_hashes_are_refused(encoded: str) -> None:
    with pytest.raises(ValueError, match="hash"):
        verify_password(encoded, b"x")


@pytest.mark.parametrize(("header", "expected"), [
    ("Basic " + base64.b64encode(b"CP1:pw:with:colons").decode(), ("CP1", b"pw:with:colons")),
    ("basic " + base64.b64encode(b"CP1:").decode(), ("CP1", b"")),
    ("Basic " + base64.b64encode(b"CP1:\xff\x00binary").decode(), ("CP1", b"\xff\x00binary")),  # 1.6 binary key
    (None, None),
    ("", None),
    ("Bearer abc", None),
    ("Basic", None),
    ("Basic !!!", None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),  # username not UTF-8
])
def test_parse_basic(header: str | None, expected: tuple[str, bytes] | None) -> None:
    assert parse_basic(header) == expected


@given(st.text(max_size=200))
def test_parse_basic_never_raises(header: str) -> None:
    parse_basic(header)
    parse_basic("Basic " + header)


async def test_credential_store_verifies_caches_and_hides_unknown_identities() -> None:
    store = CredentialStore(security.load_credentials(ListenerSettings.model_validate({
        "address": "127.0.0.1:1", "profile": 1,
        "credentials": {"CP1": hash_password(b"right-password-123", **CHEAP)}})))
    assert await store.verify("CP1", b"right-password-123")
    assert await store.verify("CP1", b"right-password-123")  # from the cache
    assert not await store.verify("CP1", b"wrong")
    assert not await store.verify("CP2", b"right-password-123")  # unknown: same work, same answer
    assert len(store) == 1


def _cert(cn: str | None = "CP1", org: str | None = "CPO", not_before: float = -86_400,
          not_after: float = 86_400) -> dict[str, Any]:
    subject = []
    if org is not None:
        subject.append((("organizationName", org),))
    if cn is not None:
        subject.append((("commonName", cn),))
    stamp = lambda offset: time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(time.time() + offset))  # noqa: E731
    return {"subject": tuple(subject), "notBefore": stamp(not_before), "notAfter": stamp(not_after)}


def _listener(**extra: Any) -> ListenerSettings:
    return ListenerSettings.model_construct(**{
        "address": "127.0.0.1:1", "profile": 3, "operator": "CPO", "serial_identities": {},
        "expired_certificates": "reject", "expired_grace_days": 0.0, **extra})


@pytest.mark.parametrize(("cert", "identity", "listener", "reason"), [
    (_cert(), "CP1", _listener(), None),
    (_cert(org="Other"), "CP1", _listener(), "O is not the operator"),
    (_cert(org=None), "CP1", _listener(), "O is not the operator"),
    (_cert(cn="CP2"), "CP1", _listener(), "not bound"),
    (_cert(cn=None), "CP1", _listener(), "exactly one CN"),
    (_cert(cn="SN-77"), "CP1", _listener(serial_identities={"SN-77": "CP1"}), None),
    (_cert(cn="SN-77"), "CP9", _listener(serial_identities={"SN-77": "CP1"}), "not bound"),
    (_cert(cn="CP1"), "CP1", _listener(serial_identities={"CP1": "CP5"}), "not bound"),  # mapped elsewhere
    (_cert(not_after=-3600), "CP1", _listener(), "expired"),
    (_cert(not_after=-3600), "CP1", _listener(expired_grace_days=1.0), None),
    (_cert(not_after=-3 * 86_400), "CP1", _listener(expired_grace_days=1.0), "expired"),
    (_cert(not_after=-3 * 86_400), "CP1", _listener(expired_certificates="accept"), None),
    (_cert(not_before=3600), "CP1", _listener(expired_certificates="accept"), "not valid yet"),
    (None, "CP1", _listener(), "no client certificate"),
    # A00.FR.511: a CN in the format of a URL or an IP address is refused, even when it is the identity
    (_cert(cn="192.0.2.7"), "192.0.2.7", _listener(), "A00.FR.511"),
    (_cert(cn="2001:db8::7"), "CP1", _listener(serial_identities={"2001:db8::7": "CP1"}), "A00.FR.511"),
    (_cert(cn="csms.example.com"), "csms.example.com", _listener(), "A00.FR.511"),
    (_cert(cn="https://csms.example.com/ocpp"), "CP1", _listener(serial_identities={
        "https://csms.example.com/ocpp": "CP1"}), "A00.FR.511"),
    (_cert(cn="ACME.00042"), "ACME.00042", _listener(), None),  # a dotted serial number is not a domain name
])
def test_client_certificate_rules(cert: dict[str, Any] | None, identity: str, listener: ListenerSettings,
                                  reason: str | None) -> None:
    refusal = check_certificate(cert, identity, listener)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.status == 403 and reason in refusal.reason
        assert refusal.kind == "invalid_certificate"


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[trustme.CA, Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, cert, key, ca_file


def test_server_context_defaults(pem_files: tuple[trustme.CA, Path, Path, Path]) -> None:
    _, cert, key, ca_file = pem_files
    listener = ListenerSettings.model_validate({"address": "127.0.0.1:1", "profile": 3, "tls_cert": [str(cert)],
                                                "tls_key": [str(key)], "tls_ca": str(ca_file), "operator": "CPO"})
    context = security.server_context(listener)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert not context.verify_flags & 0x200000  # expired certificates fail in the TLS handshake (policy reject)
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names <= set(OCPP_CIPHERS.split(":"))
    assert {"ECDHE-ECDSA-AES128-GCM-SHA256", "AES128-GCM-SHA256"} <= names
    accepting = ListenerSettings.model_validate({**listener.model_dump(), "expired_certificates": "accept"})
    assert security.server_context(accepting).verify_flags & 0x200000


@pytest.mark.parametrize(("name", "expected"), [
    ("10.0.0.1", True), ("::1", True), ("[fe80::1]", True), ("https://a", True), ("wss://csms/ocpp", True),
    ("csms.example.com", True), ("www.example.de.", True), ("host/path", True),
    ("SN-000123", False), ("ACME.00042", False), ("DE*ABC*E1", False), ("CP1", False), ("RDAM 123", False),
    ("localhost", False), ("1.2.3", False),
])
def test_url_or_ip_format(name: str, expected: bool) -> None:
    assert security.url_or_ip(name) is expected


def test_upstream_context_checks_the_csms_common_name_when_there_is_no_san() -> None:
    context = security.upstream_context(Settings.model_construct(upstream="wss://csms.example.com/ocpp",
                                                                 upstream_ca=None, upstream_cert=None))
    assert context is not None and context.check_hostname and context.hostname_checks_common_name  # A00.FR.412


def test_server_context_checks_the_crl_of_the_leaf(pem_files: tuple[trustme.CA, Path, Path, Path],
                                                   tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca, cert, key, ca_file = pem_files
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    now = time.time()
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(datetime.fromtimestamp(now - 60, UTC)).next_update(datetime.fromtimestamp(now + 3600, UTC))
           .sign(serialization.load_pem_private_key(ca.private_key_pem.bytes(), None), hashes.SHA256()))  # type: ignore[arg-type]
    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert security.count_crls(crl_file) == 1
    listener = ListenerSettings.model_validate({"address": "127.0.0.1:1", "profile": 3, "tls_cert": [str(cert)],
                                                "tls_key": [str(key)], "tls_ca": str(ca_file), "operator": "CPO",
                                                "tls_crl": str(crl_file)})
    context = security.server_context(listener)
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF and context.cert_store_stats()["crl"] == 1
    without = ListenerSettings.model_validate({**listener.model_dump(), "tls_crl": None})
    assert not security.server_context(without).verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_legacy_tls_only_when_chargers_are_named(pem_files: tuple[trustme.CA, Path, Path, Path]) -> None:
    _, cert, key, _ = pem_files
    base = {"address": "127.0.0.1:1", "profile": 2, "tls_cert": [str(cert)], "tls_key": [str(key)],
            "auth": "forward"}
    assert security.server_context(ListenerSettings.model_validate(base)).minimum_version is ssl.TLSVersion.TLSv1_2
    legacy = ListenerSettings.model_validate({**base, "tls_legacy_identities": "OLD1,OLD2"})
    assert legacy.tls_legacy_identities == ["OLD1", "OLD2"]
    assert security.server_context(legacy).minimum_version is ssl.TLSVersion.TLSv1


async def test_listener_policy_basic_auth_decisions() -> None:
    policy = ListenerPolicy.build(ListenerSettings.model_validate({
        "address": "127.0.0.1:1", "profile": 1, "credentials": {"CP1": hash_password(b"pw-0123456789", **CHEAP)}}))

    def auth(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert isinstance(await policy.admit("CP1", auth("CP1", "pw-0123456789"), None), security.Admitted)
    assert (await policy.admit("CP1", auth("CP1", "nope"), None)).reason == "wrong credentials"  # type: ignore[union-attr]
    refusal = await policy.admit("CP1", auth("CP2", "pw-0123456789"), None)
    assert isinstance(refusal, security.Refusal) and refusal.status == 401 and "username" in refusal.reason
    assert isinstance(await policy.admit("CP1", None, None), security.Refusal)
    forward = ListenerPolicy.build(ListenerSettings.model_validate({"address": "127.0.0.1:1", "profile": 1,
                                                                    "auth": "forward"}))
    admitted = await forward.admit("CP1", auth("CP1", "anything"), None)
    assert isinstance(admitted, security.Admitted) and admitted.forward_authorization == auth("CP1", "anything")
    assert not admitted.authenticated
    open_door = ListenerPolicy.build(ListenerSettings.model_validate({"address": "127.0.0.1:1"}))
    assert (await open_door.admit("CP1", "Basic xyz", None)) == security.Admitted("Basic xyz", authenticated=False)


def test_security_events_are_counted_always_and_logged_within_a_budget(caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[str] = []
    monkeypatch.setattr(telemetry.TELEMETRY, "count_event", lambda kind, fields: counted.append(kind))
    monkeypatch.setattr(security, "_BUDGETS", {})
    telemetry.LOGGER.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="ocpp_bridge"):
            for _ in range(500):
                security.event("auth_failed", identity="CP1", password="hunter2")  # noisy: a small budget
            security.event("session_replaced", identity="CP1")  # critical: its own budget, still logged
    finally:
        telemetry.LOGGER.propagate = False
    assert counted.count("security.auth_failed") == 500
    logged = [r for r in caplog.records if r.getMessage() == "security.auth_failed"]
    assert 0 < len(logged) < 50
    assert any(r.getMessage() == "security.session_replaced" for r in caplog.records)
    line = telemetry.JsonFormatter().format(logged[0])
    assert "hunter2" not in line and '"password":"***"' in line


@pytest.mark.parametrize(("frame", "secret"), [
    ('[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"00112233445566778899aabbccddeeff"}]',
     "00112233445566778899aabbccddeeff"),
    ('[2,"1","SetVariables",{"setVariableData":[{"attributeValue":"Sup3rSecretPassw0rd!",'
     '"component":{"name":"SecurityCtrlr"},"variable":{"name":"BasicAuthPassword"}}]}]', "Sup3rSecretPassw0rd!"),
    ('[3,"1",{"configurationKey":[{"key":"AuthorizationKey","readonly":false,"value":"abcdefabcdef0123"}]}]',
     "abcdefabcdef0123"),
    ('[2,"1","DataTransfer",{"vendorId":"x","data":{"password":"p4ssw0rd-xyz"}}]', "p4ssw0rd-xyz"),
    ('[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"deadbeefdeadbeef"', "deadbeefdeadbeef"),
])
def test_frames_are_redacted_for_logs(frame: str, secret: str) -> None:
    shown = redact_frame(frame)
    assert secret not in shown


def test_unparsable_frames_with_a_hint_of_a_secret_are_withheld() -> None:
    assert redact_frame('{"password": 1' + "0" * 30 + "}") in ('{"password":"***"}', "<frame withheld: it may "
                                                              "contain a secret>")
    assert "hunter2" not in redact_frame('[2,"1","X",{"password":"hunter2"')


def test_frames_without_secrets_are_logged_as_they_are() -> None:
    frame = '[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"300"}]'
    assert redact_frame(frame) == frame


@settings(max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["key", "value", "name", "password", "x"]), children,
                                      max_size=4), max_leaves=20))
def test_redaction_never_raises(value: Any) -> None:
    import orjson

    redact_frame(orjson.dumps(value).decode() + " password")
    redact_frame(orjson.dumps(value).decode())
