"""The bridge as the CSMS's front door (issue 5): security profiles, hostile input and denial of service.

Real TLS on loopback with certificates made here (trustme), a real ``ocpp-bridge serve`` subprocess, the
recording CSMS and ``ocpp``-package chargers; hand-written sockets where a test needs to break the protocol
(half a TLS handshake, a 10 MiB frame header, a deflate bomb). Nothing of the bridge is mocked.

Most tests share one bridge with four listeners (profile 1 local, profile 1 forward, profile 2, profile 3) and a
pool of charger identities whose password hashes are in its credentials file; tests that need other settings
start their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import os
import resource
import signal
import ssl
import struct
import time
import urllib.request
import warnings
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State
from websockets.typing import Subprotocol

from ocpp_bridge.io.security import hash_password

from .conftest import BridgeProcess, free_port
from .peers import Csms, Handshake, RawCharger16, charger, charger_with, now, within

OPERATOR = "TestCPO"
RUN = f"{os.getpid() % 10000:04d}"
POOL = [f"SEC{RUN}-{number}" for number in range(100)]
PASSWORDS = {identity: f"pw-{identity}-0123456789abcdef" for identity in POOL}
UPSTREAM_PASSWORD = "upstream-secret-9f8e7d6c5b4a"  # the bridge's own password at the CSMS for one charger
TLS_FAILURES = (OSError, InvalidHandshake, EOFError, ConnectionClosed, TimeoutError)

_pool = iter(POOL)


def fresh() -> str:
    """An identity of the credentials pool that no other test used."""
    return next(_pool)


def basic(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def good(identity: str) -> dict[str, str]:
    return basic(identity, PASSWORDS[identity])


# --- configuration files ---------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(path: Path, listeners: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    for listener in listeners or []:
        lines += ["", "[[listeners]]", *(f"{key} = {toml_value(value)}" for key, value in listener.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_credentials(path: Path, passwords: dict[str, str]) -> Path:
    # Cheap scrypt parameters: the tests hash and verify many passwords; production uses the defaults.
    lines = [f"{json.dumps(i)} = {json.dumps(hash_password(p.encode(), n=1 << 10))}" for i, p in passwords.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- certificates ------------------------------------------------------------------------------------------------


@dataclass
class Pki:
    """A CA for the chargers and the bridge's listeners, with its files on disk."""

    ca: trustme.CA
    directory: Path
    ca_file: Path
    server_files: list[tuple[Path, Path]]  # (chain, key) of an ECDSA and an RSA certificate for 127.0.0.1

    @classmethod
    def make(cls, directory: Path) -> Pki:
        ca = trustme.CA(organization_name="Test PKI")
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        files = []
        for kind in (trustme.KeyType.ECDSA, trustme.KeyType.RSA):
            leaf = ca.issue_cert("127.0.0.1", "localhost", key_type=kind)
            chain, key = directory / f"server-{kind.name}.pem", directory / f"server-{kind.name}.key"
            chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(key))
            files.append((chain, key))
        return cls(ca, directory, ca_file, files)

    def charger_cert(self, cn: str, organization: str = OPERATOR, ca: trustme.CA | None = None,
                     not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> trustme.LeafCert:
        return (ca or self.ca).issue_cert("charger.invalid", common_name=cn, organization_name=organization,
                                          not_before=not_before, not_after=not_after)

    def forge(self, cn: str, organization: str | None = OPERATOR, key: Any = None, dns: list[str] | None = None,
              serial: int | None = None) -> tuple[Path, Path]:
        """A certificate signed by this CA, written with ``cryptography`` for what trustme cannot make (an
        RSA-1024 key, no subjectAltName at all, a chosen serial number); (chain file, key file)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        key = key or ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if organization is not None:
            names.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        builder = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
                   .not_valid_before(days(-1)).not_valid_after(days(30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        stem = self.directory / f"forged-{cert.serial_number:x}"
        chain, key_file = stem.with_suffix(".pem"), stem.with_suffix(".key")
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return chain, key_file

    def crl(self, path: Path, revoked: list[int], issued_hours_ago: float) -> Path:
        """A CRL of this CA revoking the given serial numbers, written to ``path`` (PEM)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=issued_hours_ago)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject).last_update(issued)
                   .next_update(days(7)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(issued).build())
        path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
            serialization.Encoding.PEM))
        return path

    def client(self, cert: trustme.LeafCert | tuple[Path, Path] | None = None, version: ssl.TLSVersion | None = None,
               ciphers: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if isinstance(cert, tuple):
            context.load_cert_chain(*cert)
        elif cert is not None:
            cert.configure_cert(context)
        if version is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
                context.minimum_version = context.maximum_version = version
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        if ciphers is not None:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(ciphers)
        return context

    def tls_listener(self, address: str, profile: int, **extra: Any) -> dict[str, Any]:
        return {"address": address, "profile": profile, "tls_cert": [str(c) for c, _ in self.server_files],
                "tls_key": [str(k) for _, k in self.server_files], **extra}


def days(count: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=count)


# --- the shared secure bridge -------------------------------------------------------------------------------------


@dataclass
class Secure:
    process: BridgeProcess
    pki: Pki
    p1: int  # profile 1, local credentials
    p1_forward: int  # profile 1, the CSMS verifies the password
    p2: int  # TLS + Basic, local credentials
    p3: int  # TLS + client certificates
    serial: str  # a certificate CN mapped to serial_identity
    serial_identity: str
    upstream_identity: str  # has a password of its own at the CSMS

    def url(self, port: int, identity: str, tls: bool = False) -> str:
        return f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ocpp/{identity}"


@pytest.fixture(scope="module")
def secure(csms_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    directory = tmp_path_factory.mktemp("secure")
    pki = Pki.make(directory)
    serial_identity, upstream_identity = fresh(), fresh()
    serial = f"SERIAL-{RUN}-0042"
    credentials = write_credentials(directory / "credentials.toml", PASSWORDS)
    upstream_credentials = directory / "upstream.toml"
    upstream_credentials.write_text(f"{json.dumps(upstream_identity)} = {json.dumps(UPSTREAM_PASSWORD)}\n")
    ports = [free_port() for _ in range(4)]
    config = write_config(
        directory / "bridge.toml",
        [{"address": f"127.0.0.1:{ports[0]}", "profile": 1, "credentials_file": str(credentials)},
         {"address": f"127.0.0.1:{ports[1]}", "profile": 1, "auth": "forward"},
         pki.tls_listener(f"127.0.0.1:{ports[2]}", 2, credentials_file=str(credentials)),
         pki.tls_listener(f"127.0.0.1:{ports[3]}", 3, tls_ca=str(pki.ca_file), operator=OPERATOR,
                          serial_identities={serial: serial_identity})],
        upstream_credentials_file=str(upstream_credentials), auth_failure_delay=0.05, auth_failure_delay_max=0.2,
        replacements_per_minute=2)
    process = BridgeProcess(free_port(), f"ws://127.0.0.1:{csms_port}/ocpp", directory / "state.db",
                            directory / "bridge.log", ["--config", str(config)])
    process.start()
    yield Secure(process, pki, *ports, serial, serial_identity, upstream_identity)
    if process.alive():
        assert process.terminate() == 0, process.log_tail()


@pytest.fixture
async def sec(secure: Secure) -> AsyncIterator[Secure]:
    assert secure.process.alive(), secure.process.log_tail()
    yield secure
    assert secure.process.alive(), f"the secure bridge died:\n{secure.process.log_tail()}"
    await secure.process.wait_idle()


# --- helpers ------------------------------------------------------------------------------------------------------


async def refused_with(url: str, headers: dict[str, str] | None = None, **options: Any) -> Any:
    """The HTTP response refusing an upgrade."""
    with pytest.raises(InvalidStatus) as refused:
        await within(connect(url, subprotocols=[Subprotocol("ocpp1.6")], additional_headers=headers,
                             open_timeout=5, **options))
    return refused.value.response


async def heartbeat(link: Any) -> None:
    answer = await link.call(c16.Heartbeat())
    assert answer.current_time


async def security_events(process: BridgeProcess, kind: str, count: int = 1, timeout: float = 5.0,
                          where: Callable[[dict[str, Any]], bool] = lambda line: True) -> list[dict[str, Any]]:
    """Wait until the bridge logged ``count`` lines of event ``security.<kind>`` matching ``where``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in process.log_lines() if line.get("event") == f"security.{kind}" and where(line)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} security.{kind} in the log:\n{process.log_tail(30)}")
        await asyncio.sleep(0.05)  # polling a log file; there is nothing to await


async def start_tls_csms(port: int, context: ssl.SSLContext,
                         on_connect: Callable[[Any], None] | None = None) -> Csms:
    """The recording CSMS, over TLS; ``on_connect`` sees each accepted connection first."""
    from websockets.asyncio.server import serve

    csms = Csms(port)

    async def handle(connection: Any) -> None:
        if on_connect is not None:
            on_connect(connection)
        await csms._handle(connection)

    csms.server = await serve(handle, "127.0.0.1", port, subprotocols=[Subprotocol("ocpp2.0.1")],
                              process_request=csms._process_request, ssl=context)
    return csms


# --- profile 1 ----------------------------------------------------------------------------------------------------


async def test_profile_1_happy_path_and_nothing_forwarded(sec, csms):
    identity = fresh()
    async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
    (handshake,) = csms.handshakes
    assert "Authorization" not in handshake.headers  # verified by the bridge: the charger's secret stays here


@pytest.mark.parametrize("case", ["wrong-password", "username-is-not-identity", "no-header", "not-basic",
                                  "garbage-base64", "unknown-identity"])
async def test_profile_1_refusals_are_401_before_the_upgrade(sec, csms, case):
    identity, other = fresh(), fresh()
    headers = {
        "wrong-password": basic(identity, "guess-guess-guess-guess"),
        "username-is-not-identity": good(other),  # valid credentials of ANOTHER charger (A00.FR.203)
        "no-header": None,
        "not-basic": {"Authorization": f"Bearer {PASSWORDS[identity]}"},
        "garbage-base64": {"Authorization": "Basic !!!not-base64!!!"},
        "unknown-identity": basic(f"NOBODY{RUN}", "whatever-whatever-123"),
    }[case]
    target = f"NOBODY{RUN}" if case == "unknown-identity" else identity
    response = await refused_with(sec.url(sec.p1, target), headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    await security_events(sec.process, "auth_failed", where=lambda line: line.get("identity") == target)
    assert csms.handshakes == []  # nothing was opened upstream


async def test_forward_mode_checks_the_username_and_lets_the_csms_decide(sec, csms_factory):
    identity = fresh()
    right = good(identity)["Authorization"]
    csms = await csms_factory(gate=lambda handshake: None if handshake.headers.get("Authorization") == right else 401)
    response = await refused_with(sec.url(sec.p1_forward, identity), good(fresh()))  # someone else's username
    assert response.status_code == 401
    assert csms.handshakes == []  # refused by the bridge itself
    response = await refused_with(sec.url(sec.p1_forward, identity), basic(identity, "not-the-password-123"))
    assert response.status_code == 401  # the CSMS's verdict
    async with charger(sec.url(sec.p1_forward, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
    assert [h.headers.get("Authorization") for h in csms.handshakes][-1] == right


async def test_upstream_credentials_replace_the_chargers(sec, csms):
    identity = sec.upstream_identity
    async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
    (handshake,) = csms.handshakes
    assert handshake.headers["Authorization"] == basic(identity, UPSTREAM_PASSWORD)["Authorization"]
    # Only for a charger the bridge authenticated itself: through a forward listener the CSMS must judge the
    # charger's own credentials (else anybody knowing the identity would get in with the bridge's password).
    async with charger(sec.url(sec.p1_forward, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
    assert csms.handshakes[1].headers["Authorization"] == good(identity)["Authorization"]


async def test_the_listen_port_serves_probes_only_when_listeners_are_configured(sec, csms):
    identity = fresh()
    response = await refused_with(sec.process.ws_url(identity), good(identity))
    assert response.status_code == 404
    assert sec.process.health()["status"] == "ok"
    assert csms.handshakes == []


# --- profile 2 ----------------------------------------------------------------------------------------------------


async def test_profile_2_happy_path_tls_1_2_or_later_without_compression(sec, csms):
    identity = fresh()
    async with charger_with(sec.url(sec.p2, identity, tls=True), identity, headers=good(identity),
                            ssl=sec.pki.client()) as link:
        await heartbeat(link)
        tls = link.ws.transport.get_extra_info("ssl_object")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.compression() is None  # A00.FR.320
    assert len(csms.handshakes) == 1


async def test_profile_2_wrong_password_is_401_over_tls(sec, csms):
    identity = fresh()
    response = await refused_with(sec.url(sec.p2, identity, tls=True), basic(identity, "wrong-wrong-wrong-1"),
                                  ssl=sec.pki.client())
    assert response.status_code == 401
    assert csms.handshakes == []


@pytest.mark.parametrize("suite", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                   "AES128-GCM-SHA256", "AES256-GCM-SHA384"])
async def test_the_ocpp_cipher_suites_are_offered(sec, csms, suite):
    """A00.FR.317: a charger limited to any one of the four suites still connects (TLS 1.2)."""
    identity = fresh()
    async with charger_with(sec.url(sec.p2, identity, tls=True), identity, headers=good(identity),
                            ssl=sec.pki.client(ciphers=suite)) as link:
        assert link.ws.transport.get_extra_info("cipher")[0] == suite
        await heartbeat(link)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"])
async def test_tls_1_0_and_1_1_are_refused_by_default(sec, csms, version):
    identity = fresh()
    with pytest.raises(TLS_FAILURES):
        await within(connect(sec.url(sec.p2, identity, tls=True), subprotocols=[Subprotocol("ocpp1.6")],
                             additional_headers=good(identity), ssl=sec.pki.client(version=version)))
    await security_events(sec.process, "tls_failed", where=lambda line: line.get("ocpp") == "InvalidTLSVersion")
    assert csms.handshakes == []


async def test_weak_cipher_only_client_is_refused(sec, csms):
    identity = fresh()
    with pytest.raises(TLS_FAILURES):
        await within(connect(sec.url(sec.p2, identity, tls=True), subprotocols=[Subprotocol("ocpp1.6")],
                             additional_headers=good(identity), ssl=sec.pki.client(ciphers="AES128-SHA")))
    assert csms.handshakes == []


async def test_plaintext_to_a_tls_listener_is_closed_without_an_answer(sec, csms):
    identity = fresh()
    reader, writer = await within(asyncio.open_connection("127.0.0.1", sec.p2))
    writer.write(f"GET /ocpp/{identity} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = await within(reader.read())
    writer.close()
    assert not answer.startswith(b"HTTP/1.1 101")
    await security_events(sec.process, "tls_failed")
    with pytest.raises(TLS_FAILURES):  # and ws:// to it is no WebSocket either
        await within(connect(sec.url(sec.p2, identity), subprotocols=[Subprotocol("ocpp1.6")],
                             additional_headers=good(identity)))
    assert csms.handshakes == []


async def test_tls_to_a_plain_listener_fails(sec, csms):
    identity = fresh()
    with pytest.raises(TLS_FAILURES):
        await within(connect(sec.url(sec.p1, identity, tls=True), subprotocols=[Subprotocol("ocpp1.6")],
                             additional_headers=good(identity), ssl=sec.pki.client()))
    assert csms.handshakes == []


# --- profile 3 ----------------------------------------------------------------------------------------------------


async def test_profile_3_happy_path(sec, csms):
    identity = fresh()
    context = sec.pki.client(sec.pki.charger_cert(identity))
    async with charger_with(sec.url(sec.p3, identity, tls=True), identity, ssl=context) as link:
        await heartbeat(link)
    (handshake,) = csms.handshakes
    assert "Authorization" not in handshake.headers


async def test_profile_3_serial_number_map(sec, csms):
    context = sec.pki.client(sec.pki.charger_cert(sec.serial))
    identity = sec.serial_identity
    async with charger_with(sec.url(sec.p3, identity, tls=True), identity, ssl=context) as link:
        await heartbeat(link)
    other = fresh()  # the same certificate is bound to its identity only
    response = await refused_with(sec.url(sec.p3, other, tls=True), ssl=context)
    assert response.status_code == 403


@pytest.mark.parametrize("case", ["wrong-O", "wrong-CN", "another-chargers-certificate"])
async def test_profile_3_certificate_not_matching_is_403(sec, csms, case):
    identity = fresh()
    cert = {"wrong-O": lambda: sec.pki.charger_cert(identity, organization="Evil CPO"),
            "wrong-CN": lambda: sec.pki.charger_cert(f"X{identity}"),
            "another-chargers-certificate": lambda: sec.pki.charger_cert(fresh())}[case]()
    response = await refused_with(sec.url(sec.p3, identity, tls=True), ssl=sec.pki.client(cert))
    assert response.status_code == 403
    await security_events(sec.process, "invalid_certificate", where=lambda line: line.get("identity") == identity)
    assert csms.handshakes == []


@pytest.mark.parametrize("case", ["IP-address", "domain-name"])
async def test_profile_3_cn_in_url_or_ip_format_is_403_even_as_the_identity(sec, csms, case):
    # A00.FR.511: a charger certificate's CN is its serial number, never a URL or an IP address, so that a
    # certificate issued to a server (a CSMS's CN is its FQDN, A00.FR.510) cannot pass for a charger's.
    identity = {"IP-address": f"10.{int(RUN) % 250}.0.7", "domain-name": f"csms-{RUN}.example.com"}[case]
    response = await refused_with(sec.url(sec.p3, identity, tls=True),
                                  ssl=sec.pki.client(sec.pki.charger_cert(identity)))
    assert response.status_code == 403
    assert "A00.FR.511" in json.loads(response.body)["error"]
    await security_events(sec.process, "invalid_certificate", where=lambda line: line.get("identity") == identity)
    assert csms.handshakes == []


async def test_profile_3_rsa_1024_client_certificate_fails_tls(sec, csms):
    from cryptography.hazmat.primitives.asymmetric import rsa

    identity = fresh()
    weak = sec.pki.forge(identity, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    context = sec.pki.client()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client is willing to use the weak key; the bridge is not
    context.load_cert_chain(*weak)
    with pytest.raises(TLS_FAILURES):  # A00.FR.501/502: below 112-bit security (OpenSSL security level 2)
        async with connect(sec.url(sec.p3, identity, tls=True), subprotocols=[Subprotocol("ocpp1.6")],
                           ssl=context, open_timeout=5) as ws:
            await within(ws.recv())
    await security_events(sec.process, "invalid_certificate",
                          where=lambda line: "key too weak" in str(line.get("reason", "")))
    assert csms.handshakes == []


@pytest.mark.parametrize("case", ["untrusted-CA", "expired", "not-yet-valid", "no-certificate"])
async def test_profile_3_untrusted_expired_or_missing_certificate_fails_tls(sec, csms, case):
    identity = fresh()
    certificate = {
        "untrusted-CA": lambda: sec.pki.charger_cert(identity, ca=trustme.CA(organization_name=OPERATOR)),
        "expired": lambda: sec.pki.charger_cert(identity, not_before=days(-400), not_after=days(-1)),
        "not-yet-valid": lambda: sec.pki.charger_cert(identity, not_before=days(10), not_after=days(400)),
        "no-certificate": lambda: None,
    }[case]()
    with pytest.raises(TLS_FAILURES):
        async with connect(sec.url(sec.p3, identity, tls=True), subprotocols=[Subprotocol("ocpp1.6")],
                           ssl=sec.pki.client(certificate), open_timeout=5) as ws:
            await within(ws.recv())  # TLS 1.3: the server's verdict on the certificate may come after "connected"
    await security_events(sec.process, "invalid_certificate" if case != "no-certificate" else "tls_failed")
    assert csms.handshakes == []


async def test_expired_certificate_policy_accept_is_logged(bridge_factory, csms, tmp_path):
    pki = Pki.make(tmp_path)
    port = free_port()
    config = write_config(tmp_path / "bridge.toml", [pki.tls_listener(
        f"127.0.0.1:{port}", 3, tls_ca=str(pki.ca_file), operator=OPERATOR, expired_certificates="accept")])
    process = bridge_factory(args=["--config", str(config)])
    identity = fresh()
    context = pki.client(pki.charger_cert(identity, not_before=days(-400), not_after=days(-3)))
    async with charger_with(f"wss://127.0.0.1:{port}/ocpp/{identity}", identity, ssl=context) as link:
        await heartbeat(link)
    (line,) = await security_events(process, "expired_certificate_accepted")
    assert line["identity"] == identity and line["expired_days"] >= 3
    # A certificate that is not valid yet is still refused.
    context = pki.client(pki.charger_cert(identity, not_before=days(5), not_after=days(400)))
    response = await refused_with(f"wss://127.0.0.1:{port}/ocpp/{identity}", ssl=context)
    assert response.status_code == 403


async def test_revoked_client_certificates_are_refused_and_a_new_crl_applies_after_sighup(bridge_factory, csms,
                                                                                          tmp_path):
    # A00.FR.704: the validity of a charger certificate is checked with the CA (here: its CRL); "the revocation
    # of the certificate does not mean that the connection needs to be closed" (SWP Ed.3 §2.6.3).
    pki = Pki.make(tmp_path)
    port = free_port()
    revoked, later = fresh(), fresh()
    revoked_cert, later_cert = pki.forge(revoked, serial=0x5EC001), pki.forge(later, serial=0x5EC002)
    crl = pki.crl(tmp_path / "chargers.crl", [0x5EC001], issued_hours_ago=2)
    listener = pki.tls_listener(f"127.0.0.1:{port}", 3, tls_ca=str(pki.ca_file), operator=OPERATOR,
                                tls_crl=str(crl))
    config = write_config(tmp_path / "bridge.toml", [listener])
    process = bridge_factory(args=["--config", str(config)])
    url = f"wss://127.0.0.1:{port}/ocpp"
    with pytest.raises(TLS_FAILURES):
        async with connect(f"{url}/{revoked}", subprotocols=[Subprotocol("ocpp1.6")],
                           ssl=pki.client(revoked_cert), open_timeout=5) as ws:
            await within(ws.recv())  # TLS 1.3: the verdict on the client certificate may come after "connected"
    await security_events(process, "invalid_certificate", where=lambda line: line.get("reason") ==
                          "certificate revoked")
    async with charger_with(f"{url}/{later}", later, ssl=pki.client(later_cert)) as link:
        await heartbeat(link)  # not revoked (yet)
        pki.crl(crl, [0x5EC001, 0x5EC002], issued_hours_ago=1)  # the CA re-issues its CRL
        assert process.proc is not None
        process.proc.send_signal(signal.SIGHUP)
        await within(_logged(process, "security.crl_loaded"))
        with pytest.raises(TLS_FAILURES):
            async with connect(f"{url}/{later}", subprotocols=[Subprotocol("ocpp1.6")],
                               ssl=pki.client(later_cert), open_timeout=5) as ws:
                await within(ws.recv())
        await heartbeat(link)  # the session opened before the revocation stays
    assert len(csms.handshakes) == 1
    assert len(await security_events(process, "invalid_certificate",
                                     where=lambda line: line.get("reason") == "certificate revoked", count=2)) == 2


async def _logged(process: BridgeProcess, event: str) -> None:
    while not any(line.get("event") == event for line in process.log_lines()):
        await asyncio.sleep(0.05)  # polling a log file; there is nothing to await


async def test_tls_legacy_version_only_for_named_chargers(bridge_factory, csms, tmp_path):
    pki = Pki.make(tmp_path)
    port = free_port()
    legacy, modern = fresh(), fresh()
    credentials = write_credentials(tmp_path / "credentials.toml", {i: PASSWORDS[i] for i in (legacy, modern)})
    config = write_config(tmp_path / "bridge.toml", [pki.tls_listener(
        f"127.0.0.1:{port}", 2, credentials_file=str(credentials), tls_legacy_identities=[legacy])])
    process = bridge_factory(args=["--config", str(config)])
    old_tls = pki.client(version=ssl.TLSVersion.TLSv1_1)
    async with charger_with(f"wss://127.0.0.1:{port}/ocpp/{legacy}", legacy, headers=good(legacy),
                            ssl=old_tls) as link:
        assert link.ws.transport.get_extra_info("ssl_object").version() == "TLSv1.1"
        await heartbeat(link)
    response = await refused_with(f"wss://127.0.0.1:{port}/ocpp/{modern}", good(modern), ssl=old_tls)
    assert response.status_code == 403
    await security_events(process, "tls_failed", where=lambda line: line.get("identity") == modern)
    async with charger_with(f"wss://127.0.0.1:{port}/ocpp/{modern}", modern, headers=good(modern),
                            ssl=pki.client()) as link:
        await heartbeat(link)


# --- the upstream link --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["self-signed", "wrong-host"])
async def test_upstream_certificate_refused_is_502_never_plain_ws(bridge_factory, tmp_path, case):
    pki = Pki.make(tmp_path)
    port = free_port()
    if case == "self-signed":  # a CA the bridge does not trust
        leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    else:  # trusted CA, but a certificate for another host
        leaf = pki.ca.issue_cert("csms.example.com")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(server)
    csms = await start_tls_csms(port, server)
    try:
        config = write_config(tmp_path / "bridge.toml", upstream_ca=str(pki.ca_file))
        process = bridge_factory(upstream=f"wss://localhost:{port}/ocpp", args=["--config", str(config)])
        identity = fresh()
        response = await refused_with(process.ws_url(identity))
        assert response.status_code == 502
        await security_events(process, "invalid_csms_certificate")
        assert csms.handshakes == []  # no HTTP at all reached the CSMS: TLS failed, and no ws:// retry
    finally:
        await csms.stop()


@pytest.mark.parametrize("case", ["CN-is-the-host", "CN-is-another-host"])
async def test_upstream_csms_certificate_without_san_is_checked_by_its_cn(bridge_factory, tmp_path, case):
    # A00.FR.412/510: the CSMS certificate's CN is its FQDN and its SAN dnsName SHOULD NOT be used (A00.FR.511
    # note): the bridge (the CP toward the CSMS) must verify the CN when there is no SAN.
    pki = Pki.make(tmp_path)
    port = free_port()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*pki.forge("localhost" if case == "CN-is-the-host" else "csms.example.com", "CSMS Org"))
    csms = await start_tls_csms(port, server)
    try:
        config = write_config(tmp_path / "bridge.toml", upstream_ca=str(pki.ca_file))
        process = bridge_factory(upstream=f"wss://localhost:{port}/ocpp", args=["--config", str(config)])
        identity = fresh()
        if case == "CN-is-the-host":
            async with charger(process.ws_url(identity), identity) as link:
                await heartbeat(link)
        else:
            assert (await refused_with(process.ws_url(identity))).status_code == 502
            await security_events(process, "invalid_csms_certificate")
            assert csms.handshakes == []
    finally:
        await csms.stop()


async def test_upstream_wss_with_verified_certificate_and_client_certificate(bridge_factory, tmp_path):
    pki = Pki.make(tmp_path)
    port = free_port()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.ca.issue_cert("localhost").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED  # the CSMS wants the bridge's certificate
    pki.ca.configure_trust(server)
    bridge_cert = pki.ca.issue_cert("bridge.example.com", common_name="bridge", organization_name=OPERATOR)
    cert_file, key_file = tmp_path / "bridge.pem", tmp_path / "bridge.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in bridge_cert.cert_chain_pems))
    bridge_cert.private_key_pem.write_to_path(str(key_file))
    csms = await start_tls_csms(port, server)
    try:
        config = write_config(tmp_path / "bridge.toml", upstream_ca=str(pki.ca_file), upstream_cert=str(cert_file),
                              upstream_key=str(key_file))
        process = bridge_factory(upstream=f"wss://localhost:{port}/ocpp", args=["--config", str(config)])
        identity = fresh()
        async with charger(process.ws_url(identity), identity) as link:
            await heartbeat(link)
        peer = csms.connections[identity].transport.get_extra_info("peercert")
        assert dict(item[0] for item in peer["subject"])["commonName"] == "bridge"
    finally:
        await csms.stop()


async def test_per_charger_upstream_client_certificates(bridge_factory, tmp_path):
    # Issue 5: the bridge's own client certificate toward the CSMS, per deployment or per charger. The mutual-TLS
    # CSMS reads which certificate it got on each connection.
    pki = Pki.make(tmp_path)
    port, local_port, forward_port = free_port(), free_port(), free_port()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.ca.issue_cert("localhost").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED
    pki.ca.configure_trust(server)

    def write(leaf: trustme.LeafCert, chain: Path, key: Path) -> None:
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))

    own, other = fresh(), fresh()
    certs = tmp_path / "upstream-certs"
    certs.mkdir()
    write(pki.ca.issue_cert("bridge.invalid", common_name=f"bridge-for-{own}"), certs / f"{own}.pem",
          certs / f"{own}.key")
    write(pki.ca.issue_cert("bridge.invalid", common_name="bridge"), tmp_path / "bridge.pem", tmp_path / "bridge.key")
    credentials = write_credentials(tmp_path / "credentials.toml", {i: PASSWORDS[i] for i in (own, other)})
    seen: list[tuple[str, str]] = []  # (identity, CN of the client certificate the CSMS got)

    def record(connection: Any) -> None:
        peer = connection.transport.get_extra_info("peercert")
        seen.append((connection.request.path.rsplit("/", 1)[-1], dict(i[0] for i in peer["subject"])["commonName"]))

    csms = await start_tls_csms(port, server, record)
    try:
        config = write_config(
            tmp_path / "bridge.toml",
            [{"address": f"127.0.0.1:{local_port}", "profile": 1, "credentials_file": str(credentials)},
             {"address": f"127.0.0.1:{forward_port}", "profile": 1, "auth": "forward"}],
            upstream_ca=str(pki.ca_file), upstream_cert=str(tmp_path / "bridge.pem"),
            upstream_key=str(tmp_path / "bridge.key"), upstream_client_certs_dir=str(certs))
        process = bridge_factory(upstream=f"wss://localhost:{port}/ocpp", args=["--config", str(config)])
        for identity, listener in ((own, local_port), (other, local_port), (own, forward_port)):
            async with charger(f"ws://127.0.0.1:{listener}/ocpp/{identity}", identity,
                               headers=good(identity)) as link:
                await heartbeat(link)
        assert seen == [(own, f"bridge-for-{own}"),  # authenticated by the bridge: its own certificate
                        (other, "bridge"),  # no files of its own: the deployment's
                        (own, "bridge")]  # through a forward listener only the CSMS can vouch for it
        # Renewed on disk: the next connection presents the new certificate, without a restart.
        write(pki.ca.issue_cert("bridge.invalid", common_name=f"renewed-{own}"), certs / f"{own}.pem",
              certs / f"{own}.key")
        async with charger(f"ws://127.0.0.1:{local_port}/ocpp/{own}", own, headers=good(own)) as link:
            await heartbeat(link)
        assert seen[-1] == (own, f"renewed-{own}")
        assert process.alive()
    finally:
        await csms.stop()


# --- duplicate identity -------------------------------------------------------------------------------------------


async def test_unauthenticated_duplicate_never_disturbs_the_live_session(sec, csms):
    identity = fresh()
    async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
        for headers in (None, basic(identity, "guess-guess-guess-guess"), good(fresh())):
            response = await refused_with(sec.url(sec.p1, identity), headers)
            assert response.status_code == 401
        await heartbeat(link)
        assert link.ws.close_code is None
    assert len(csms.handshakes) == 1  # one upstream connection, never disturbed


async def test_authenticated_reconnect_over_a_half_open_socket_replaces_it(sec, csms_factory):
    identity = fresh()
    upstream_states: list[Any] = []
    holder: list[Csms] = []

    def gate(handshake: Handshake) -> None:  # what the CSMS saw of the old link when the new one arrived
        old = holder[0].connections.get(identity)
        upstream_states.append(None if old is None else old.state)

    csms = await csms_factory(gate=gate)
    holder.append(csms)
    async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as old:
        await heartbeat(old)
        old.ws.transport.pause_reading()  # frozen: reads nothing, answers no ping, never closes (half-open)
        async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as new:
            await heartbeat(new)
            await heartbeat(new)
        old.ws.transport.resume_reading()
        with contextlib.suppress(ConnectionClosed):
            await within(old.ws.wait_closed())
    assert upstream_states[0] is None
    assert upstream_states[1] is not State.OPEN  # the old upstream was closed before the new one was opened
    assert len(csms.history) == 2
    await security_events(sec.process, "session_replaced", where=lambda line: line.get("identity") == identity)


async def test_replacements_are_rate_limited(sec, csms):
    identity = fresh()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):  # replacements_per_minute = 2: the first connection and two replacements pass
            link = await stack.enter_async_context(
                charger(sec.url(sec.p1, identity), identity, headers=good(identity)))
            await heartbeat(link)
        link = await stack.enter_async_context(charger(sec.url(sec.p1, identity), identity, headers=good(identity)))
        await heartbeat(link)
        response = await refused_with(sec.url(sec.p1, identity), good(identity))
        assert response.status_code == 429
        await heartbeat(link)  # the live session is untouched
    await security_events(sec.process, "replacement_limited", where=lambda line: line.get("identity") == identity)


async def test_duplicate_policy_reject_is_409(bridge_factory, csms, tmp_path):
    identity = fresh()
    credentials = write_credentials(tmp_path / "credentials.toml", {identity: PASSWORDS[identity]})
    port = free_port()
    config = write_config(tmp_path / "bridge.toml", [
        {"address": f"127.0.0.1:{port}", "profile": 1, "credentials_file": str(credentials)}],
        duplicate_policy="reject")
    bridge_factory(args=["--config", str(config)])
    url = f"ws://127.0.0.1:{port}/ocpp/{identity}"
    async with charger(url, identity, headers=good(identity)) as link:
        await heartbeat(link)
        assert (await refused_with(url, basic(identity, "wrong-wrong-wrong-1"))).status_code == 401  # auth first
        assert (await refused_with(url, good(identity))).status_code == 409
        await heartbeat(link)
    async with charger(url, identity, headers=good(identity)) as link:  # once it is gone, it may come back
        await heartbeat(link)
    assert len(csms.handshakes) == 2


# --- cross-charger tampering --------------------------------------------------------------------------------------


async def test_charger_b_cannot_stop_charger_as_transaction(sec, csms):
    a, b = fresh(), fresh()
    async with charger(sec.url(sec.p1, a), a, headers=good(a)) as charger_a, \
            charger(sec.url(sec.p1, b), b, headers=good(b)) as charger_b:
        started = await charger_a.call(c16.StartTransaction(connector_id=1, id_tag="OWNER-A", meter_start=0,
                                                            timestamp=now()))
        tx_a = (await csms.transaction_events(a, 1))[0]["transactionInfo"]["transactionId"]
        # RemoteStop naming A's transaction on B's link: rejected, nobody is asked to stop anything.
        answer = await within(csms.stations[b].call(c201.RequestStopTransaction(transaction_id=tx_a),
                                                    suppress=False))
        assert answer.status == "Rejected"
        assert charger_a.cp.received() == [] and charger_b.cp.received() == []
        # StopTransaction with A's 1.6 id from B: never A's transaction.
        await charger_b.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=99,
                                                 timestamp=now()))
        await csms.until_ended(b)
        assert tx_a not in {e["transactionInfo"]["transactionId"] for e in csms.received(b, "TransactionEvent")}
        await charger_a.call(c16.StopTransaction(transaction_id=started.transaction_id, meter_stop=50,
                                                 timestamp=now()))
        ended = await csms.until_ended(a, tx_a)
    assert [e["eventType"] for e in ended] == ["Started", "Ended"]


# --- secrets never logged -----------------------------------------------------------------------------------------


async def test_no_password_or_authorization_header_in_the_log(sec, csms_factory):
    identity, forwarded = fresh(), fresh()
    csms = await csms_factory(gate=lambda handshake: None)
    secrets = [PASSWORDS[identity], PASSWORDS[forwarded], UPSTREAM_PASSWORD, "guess-Sup3r-secret-XYZ"]
    async with charger(sec.url(sec.p1, identity), identity, headers=good(identity)) as link:
        await heartbeat(link)
    async with charger(sec.url(sec.p1_forward, forwarded), forwarded, headers=good(forwarded)) as link:
        await heartbeat(link)
    async with charger(sec.url(sec.p1, sec.upstream_identity), sec.upstream_identity,
                       headers=good(sec.upstream_identity)) as link:
        await heartbeat(link)
    await refused_with(sec.url(sec.p1, identity), basic(identity, "guess-Sup3r-secret-XYZ"))
    await refused_with(sec.url(sec.p2, identity, tls=True), basic(identity, "guess-Sup3r-secret-XYZ"),
                       ssl=sec.pki.client())
    await security_events(sec.process, "auth_failed", 2, where=lambda line: line.get("identity") == identity)
    assert len(csms.handshakes) == 3
    text = sec.process.log_path.read_text(encoding="utf-8", errors="replace")
    headers = [basic(i, p)["Authorization"].split()[1] for i, p in
               [(identity, PASSWORDS[identity]), (forwarded, PASSWORDS[forwarded]),
                (sec.upstream_identity, UPSTREAM_PASSWORD), (identity, "guess-Sup3r-secret-XYZ")]]
    for secret in secrets + headers:
        assert secret not in text


# --- message size and compression ---------------------------------------------------------------------------------


class RawWebSocket:
    """A hand-written WebSocket client: exactly the bytes a test wants on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
        self.reader, self.writer, self.response = reader, writer, response

    @classmethod
    async def open(cls, port: int, identity: str, extra: str = "") -> RawWebSocket:
        reader, writer = await within(asyncio.open_connection("127.0.0.1", port))
        writer.write((f"GET /ocpp/{identity} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n{extra}\r\n").encode())
        response = await within(reader.readuntil(b"\r\n\r\n"))
        assert response.startswith(b"HTTP/1.1 101"), response
        return cls(reader, writer, response)

    def header(self, length: int, opcode: int = 1, rsv1: bool = False, fin: bool = True) -> bytes:
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        if length < 126:
            return bytes([first, 0x80 | length])
        if length < 1 << 16:
            return bytes([first, 0x80 | 126]) + struct.pack("!H", length)
        return bytes([first, 0x80 | 127]) + struct.pack("!Q", length)

    @staticmethod
    def mask(payload: bytes, key: bytes = b"\x00\x00\x00\x00") -> bytes:
        return key + payload  # an all-zero masking key leaves the payload as it is (RFC 6455 §5.3)

    async def close_code(self, timeout: float = 5.0) -> int:
        """Read server frames until its close frame; its status code."""
        async def read() -> int:
            while True:
                head = await self.reader.readexactly(2)
                length = head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(length)
                if head[0] & 0x0F == 8:
                    return int(struct.unpack("!H", payload[:2])[0])

        return await within(read(), timeout)

    def close(self) -> None:
        self.writer.close()


def peak_rss_kib(process: BridgeProcess) -> int:
    assert process.proc is not None
    status = Path(f"/proc/{process.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


async def test_a_10_mib_frame_is_closed_1009_before_it_has_arrived(bridge, csms, identity):
    raw = await RawWebSocket.open(bridge.port, identity)
    try:
        size = 10 * 1024 * 1024
        raw.writer.write(raw.header(size) + b"\x00\x00\x00\x00" + b"[2" * 32_768)  # 64 KiB of the 10 MiB
        assert await raw.close_code() == 1009  # the bridge did not wait for (or buffer) the rest
    finally:
        raw.close()
    # The ordinary client's way, too: one 10 MiB message.
    ws = await within(connect(bridge.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")], compression=None))
    sending = asyncio.create_task(ws.send('[2,"1","DataTransfer",{"vendorId":"x","data":"' + "A" * (10 << 20) + '"}]'))
    with pytest.raises(ConnectionClosed):
        await within(ws.recv())
    assert ws.close_code == 1009
    with contextlib.suppress(ConnectionClosed):
        await within(sending)


async def test_a_decompression_bomb_is_closed_1009_and_never_inflated_whole(bridge, csms, identity):
    raw = await RawWebSocket.open(bridge.port, identity, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert b"permessage-deflate" in raw.response  # RFC 7692 is accepted toward chargers
    before = peak_rss_kib(bridge)
    try:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunks = [packer.compress(b'[2,"1","DataTransfer",{"vendorId":"x","data":"')]
        block = b"A" * (1 << 20)
        chunks += [packer.compress(block) for _ in range(128)]  # 128 MiB inflated
        chunks.append(packer.flush(zlib.Z_SYNC_FLUSH))
        payload = b"".join(chunks)[:-4]  # without the 00 00 FF FF tail (RFC 7692 §7.2.1)
        assert len(payload) < 1 << 20
        raw.writer.write(raw.header(len(payload), rsv1=True) + raw.mask(payload))
        assert await raw.close_code() == 1009
    finally:
        raw.close()
    assert peak_rss_kib(bridge) - before < 64 * 1024  # far less than the 128 MiB it would have taken


async def test_deflate_charger_works(bridge, csms, identity):
    async with charger_with(bridge.ws_url(identity), identity, compression="deflate") as link:
        assert link.ws.protocol.extensions  # negotiated
        await heartbeat(link)


# --- floods ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def limited(bridge_factory, tmp_path) -> AsyncIterator[tuple[BridgeProcess, Path]]:
    """A bridge with a low frame rate (5/s, burst 10) and a config file a test may rewrite and SIGHUP; its
    Prometheus endpoint is on ``process.metrics_port``."""
    metrics_port = free_port()
    config = write_config(tmp_path / "bridge.toml", frame_rate=5.0, frame_burst=10, frame_rate_close_after=400,
                          metrics_listen=f"127.0.0.1:{metrics_port}")
    process = bridge_factory(args=["--config", str(config)])
    process.metrics_port = metrics_port  # type: ignore[attr-defined]
    yield process, config


def events_counted(metrics_port: int, kind: str) -> float:
    """``ocpp_bridge_events_total{kind=...}`` from the bridge's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=3) as response:
        text = response.read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("ocpp_bridge_events_total{") and f'kind="{kind}"' in line)


async def flood(ws: Any, count: int, prefix: str) -> list[list[Any]]:
    """Send ``count`` Heartbeat CALLs without waiting, then collect an answer for each."""
    for number in range(count):
        await ws.send(json.dumps([2, f"{prefix}{number}", "Heartbeat", {}]))
    answers = []
    while len(answers) < count:
        answers.append(json.loads(await within(ws.recv(), 20)))
    return answers


async def test_one_charger_flooding_gets_callerrors_while_another_is_served(limited, csms, new_identity):
    process, _ = limited
    flooder, quiet = new_identity(), new_identity()
    control = await RawCharger16(process.ws_url(quiet), quiet).connect()
    try:
        async with connect(process.ws_url(flooder), subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            started = time.monotonic()
            sending = asyncio.create_task(flood(ws, 300, "f"))
            answer = await control.call("Heartbeat", {}, timeout=10)  # the other charger is still served
            assert "currentTime" in answer
            answers = await sending
            elapsed = time.monotonic() - started
            refused = [a for a in answers if a[0] == 4 and a[2] == "GenericError"]
            assert refused and all(a[3] == "rate limit exceeded" and a[1].startswith("f") for a in refused)
            assert ws.close_code is None  # below frame_rate_close_after: refused, not closed
        forwarded = len(csms.received(flooder, "Heartbeat"))
        assert forwarded <= 10 + 5 * elapsed + 5  # burst + rate: the CSMS never saw the flood
        assert forwarded + len(refused) == 300
    finally:
        await control.close()
    logged = await security_events(process, "rate_limited", where=lambda line: line.get("identity") == flooder)
    assert len(logged) < 100 < len(refused)  # the log has a budget per kind...
    assert events_counted(process.metrics_port, "security.rate_limited") == len(refused)  # ...the count has none


async def test_unreadable_frames_over_the_limit_get_minus_one(limited, csms, identity):
    process, _ = limited
    async with connect(process.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        for _ in range(12):  # burst 10: the last ones are over the limit
            await ws.send("[2, not json")
        answers = [json.loads(await within(ws.recv())) for _ in range(12)]
    assert all(a[1] == "-1" for a in answers)
    assert any(a[2] == "GenericError" and a[3] == "rate limit exceeded" for a in answers)
    await security_events(process, "invalid_message", where=lambda line: line.get("identity") == identity)
    assert events_counted(process.metrics_port, "frame.invalid") >= 10


async def test_persistent_flooding_is_closed_1008(limited, csms, identity):
    process, _ = limited
    async with connect(process.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        with contextlib.suppress(ConnectionClosed):
            for number in range(2000):
                await ws.send(json.dumps([2, f"p{number}", "Heartbeat", {}]))
            while True:
                await within(ws.recv())
        assert ws.close_code == 1008
    assert len(csms.received(identity, "Heartbeat")) <= 20


async def test_sighup_raises_the_frame_rate_of_a_running_session(limited, csms, identity):
    process, config = limited
    async with connect(process.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        answers = await flood(ws, 60, "a")
        assert sum(1 for a in answers if a[0] == 4) >= 30
        write_config(config, frame_rate=10_000.0, frame_burst=10_000, frame_rate_close_after=400,
                     metrics_listen=f"127.0.0.1:{process.metrics_port}")
        assert process.proc is not None
        process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not any(line.get("event") == "bridge.reloaded" for line in process.log_lines()):
            assert time.monotonic() < deadline, process.log_tail()
            await asyncio.sleep(0.05)  # polling a log file
        answers = await flood(ws, 60, "b")
        # No refusal by the rate limiter any more. (A peer that does not wait for answers may still be told so:
        # one CALL at a time, OCPP-J 4.1.1, with 16 held; that rule is not the rate limit.)
        rate_refusals = [a for a in answers if a[0] == 4 and "rate limit" in a[3]]
        assert not rate_refusals, rate_refusals[:3]
        assert sum(1 for a in answers if a[0] == 3) >= 16
        assert ws.close_code is None and ws.state is State.OPEN  # the same session, never closed
    assert not any(line.get("event") == "bridge.reload_failed" for line in process.log_lines())


class HostileCsms:
    """A 2.0.1 CSMS on bare websockets that answers Heartbeat and BootNotification at once, except for the
    identities in ``hostile``: their connections are handed to the test, which writes (floods) by hand."""

    def __init__(self, port: int, hostile: set[str]) -> None:
        self.port = port
        self.hostile = hostile
        self.links: asyncio.Queue[Any] = asyncio.Queue()
        self.server: Any = None

    async def start(self) -> HostileCsms:
        from websockets.asyncio.server import serve

        self.server = await serve(self._handle, "127.0.0.1", self.port, subprotocols=[Subprotocol("ocpp2.0.1")])
        return self

    async def stop(self) -> None:
        self.server.close()
        await within(self.server.wait_closed())

    async def _handle(self, connection: Any) -> None:
        identity = connection.request.path.rsplit("/", 1)[-1]
        if identity in self.hostile:
            await self.links.put(connection)
            await connection.wait_closed()
            return
        with contextlib.suppress(ConnectionClosed):
            async for text in connection:
                frame = json.loads(text)
                if frame[0] == 2:
                    answer = {"currentTime": now()} if frame[2] == "Heartbeat" else \
                        {"currentTime": now(), "interval": 300, "status": "Accepted"}
                    await connection.send(json.dumps([3, frame[1], answer]))


async def test_a_flooding_csms_is_refused_and_closed_while_another_session_is_served(bridge_factory, new_identity,
                                                                                     tmp_path):
    flooded, quiet = new_identity(), new_identity()
    csms = await HostileCsms(free_port(), {flooded}).start()
    metrics_port = free_port()
    config = write_config(tmp_path / "bridge.toml", csms_frame_rate=5.0, csms_frame_burst=10,
                          csms_frame_rate_close_after=400, reconnect_min=0.1, reconnect_max=0.5,
                          metrics_listen=f"127.0.0.1:{metrics_port}")
    process = bridge_factory(upstream=f"ws://127.0.0.1:{csms.port}/ocpp", args=["--config", str(config)])
    control = await RawCharger16(process.ws_url(quiet), quiet).connect()
    victim = await RawCharger16(process.ws_url(flooded), flooded).connect()
    try:
        hostile = await within(csms.links.get())
        answers: list[list[Any]] = []

        async def collect() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for text in hostile:
                    answers.append(json.loads(text))

        reader = asyncio.create_task(collect())
        started = time.monotonic()
        for number in range(300):  # 300 CALLs at once, never waiting for an answer
            await hostile.send(json.dumps([2, f"x{number}", "ClearCache", {}]))
        assert "currentTime" in await control.call("Heartbeat", {}, timeout=10)  # the other session is served
        refused = lambda: [a for a in answers if a[0] == 4 and a[3] == "rate limit exceeded"]  # noqa: E731
        deadline = time.monotonic() + 10
        while len(refused()) < 250 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the answers are in flight; nothing to await but their arrival
        elapsed = time.monotonic() - started
        assert all(a[1].startswith("x") and a[2] == "GenericError" for a in refused())  # each by its own id
        assert 250 <= len(refused()) <= 300
        # The charger never received the excess: at most the burst plus the rate over the time it took.
        assert len(victim.received) <= 10 + 5 * elapsed + 5, len(victim.received)
        assert victim.open and hostile.close_code is None  # below csms_frame_rate_close_after: not closed
        assert events_counted(metrics_port, "security.csms_rate_limited") >= len(refused())
        await security_events(process, "csms_rate_limited", where=lambda line: line.get("identity") == flooded)

        # A CSMS that keeps flooding: its link is closed with 1008 and opened again; the charger stays.
        with contextlib.suppress(ConnectionClosed):
            for number in range(5000):
                await hostile.send(json.dumps([2, f"y{number}", "ClearCache", {}]))
        await within(hostile.wait_closed(), 10)
        assert hostile.close_code == 1008
        again = await within(csms.links.get(), 10)  # the bridge reconnected (ride-through)
        assert again is not hostile and victim.open
        assert "currentTime" in await control.call("Heartbeat", {}, timeout=10)
        reader.cancel()
        assert len(victim.received) <= 10 + 5 * (time.monotonic() - started) + 10
    finally:
        await control.close()
        await victim.close()
        await csms.stop()


async def test_a_2x_chargers_flooding_csms_is_closed_and_the_charger_told_1001(bridge_factory, new_identity):
    # A 2.x session passes through without ride-through: the bridge closes the flooding CSMS link (1008) and
    # then the charger, which did nothing wrong, with 1001 (going away); it reconnects by itself.
    flooded = new_identity()
    csms = await HostileCsms(free_port(), {flooded}).start()
    process = bridge_factory(upstream=f"ws://127.0.0.1:{csms.port}/ocpp",
                             env={"OCPP_BRIDGE_CSMS_FRAME_RATE": "5", "OCPP_BRIDGE_CSMS_FRAME_BURST": "10",
                                  "OCPP_BRIDGE_CSMS_FRAME_RATE_CLOSE_AFTER": "50"})
    try:
        async with connect(process.ws_url(flooded), subprotocols=[Subprotocol("ocpp2.0.1")]) as ws:
            hostile = await within(csms.links.get())
            received = []

            async def drain() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for text in ws:
                        received.append(json.loads(text))

            async def ignore_refusals() -> None:  # read, or the bridge's close frame is never read either
                with contextlib.suppress(ConnectionClosed):
                    async for _ in hostile:
                        pass

            reader, ignoring = asyncio.create_task(drain()), asyncio.create_task(ignore_refusals())
            with contextlib.suppress(ConnectionClosed):
                for number in range(2000):
                    await hostile.send(json.dumps([2, f"z{number}", "ClearCache", {}]))
            await within(hostile.wait_closed(), 10)
            assert hostile.close_code == 1008
            await within(reader, 10)
            ignoring.cancel()
            assert ws.close_code == 1001
            assert len(received) <= 20  # the burst and the rate, never the flood
    finally:
        await csms.stop()


# --- connections and handshakes -----------------------------------------------------------------------------------


IDLE_SOCKETS = int(os.environ.get("OCPP_BRIDGE_TEST_IDLE_SOCKETS", "2000"))  # issue 5: 2,000 slowloris sockets


def enough_descriptors(sockets: int) -> None:
    """Both ends of ``sockets`` connections live on this machine (this process and the bridge it starts, which
    inherits the limit): raise the soft descriptor limit as far as needed, or skip saying why."""
    needed = sockets + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"{sockets} sockets need {needed} file descriptors; this machine allows {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def idle_connections(port: int, count: int, partial: bytes = b"") -> list[tuple[Any, Any]]:
    """``count`` TCP connections that never finish a handshake (optionally sending ``partial`` first)."""
    async def one() -> tuple[Any, Any]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionError:  # refused at accept before the connect call even returned
            return None, None
        if partial:
            writer.write(partial)
        return reader, writer

    return list(await within(asyncio.gather(*(one() for _ in range(count))), 30))


async def closed_within(reader: asyncio.StreamReader | None, timeout: float) -> bool:
    """Whether the bridge closed this connection within ``timeout`` seconds."""
    if reader is None:
        return True
    try:
        return await asyncio.wait_for(reader.read(1024), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def test_idle_connections_are_closed_by_timeout_while_a_charger_connects(bridge_factory, csms, tmp_path,
                                                                           new_identity):
    pki = Pki.make(tmp_path)
    plain_port, tls_port = free_port(), free_port()
    config = write_config(tmp_path / "bridge.toml",
                          [{"address": f"127.0.0.1:{plain_port}", "profile": 0},
                           pki.tls_listener(f"127.0.0.1:{tls_port}", 2, auth="forward")],
                          handshake_timeout=1.0, max_handshakes_per_ip=10_000, handshake_rate_per_ip=100_000.0,
                          handshake_burst_per_ip=100_000)
    enough_descriptors(IDLE_SOCKETS)
    process = bridge_factory(args=["--config", str(config)])
    half = IDLE_SOCKETS // 2
    started = time.monotonic()
    plain = await idle_connections(plain_port, half, b"GET /ocpp/slow HTTP/1.1\r\nHost: x\r\n")  # never ends
    tls = await idle_connections(tls_port, IDLE_SOCKETS - half, b"\x16\x03\x01")  # half a TLS record
    identity = new_identity()
    async with charger(f"ws://127.0.0.1:{plain_port}/ocpp/{identity}", identity) as link:
        await heartbeat(link)  # a legitimate charger still gets in
    results = await within(asyncio.gather(*(closed_within(reader, 15) for reader, _ in plain + tls)), 20)
    assert all(results)
    assert time.monotonic() - started < 15  # closed by the 1 s timeout, not by the test
    for _, writer in plain + tls:
        if writer is not None:
            writer.close()
    await security_events(process, "handshake_timeout")


async def test_per_source_limits_do_not_lock_out_other_sources(bridge_factory, csms, new_identity):
    process = bridge_factory(env={"OCPP_BRIDGE_PER_IP_EXEMPT": "", "OCPP_BRIDGE_MAX_HANDSHAKES_PER_IP": "20",
                                  "OCPP_BRIDGE_HANDSHAKE_TIMEOUT": "30"})
    idle = await idle_connections(process.port, 50)  # from 127.0.0.1: 20 may wait, the rest is refused at accept
    closed = await within(asyncio.gather(*(closed_within(reader, 2) for reader, _ in idle)), 10)
    assert 30 <= sum(closed) <= 32  # (a health probe of the harness may still hold a slot)
    identity = new_identity()
    async with charger_with(process.ws_url(identity), identity, local_addr=("127.0.0.2", 0)) as link:
        await heartbeat(link)  # another source is not affected
    for _, writer in idle:
        if writer is not None:
            writer.close()
    await security_events(process, "connection_refused", where=lambda line: line.get("ip") == "127.0.0.1")


async def test_handshake_rate_per_source(bridge_factory, csms, new_identity):
    process = bridge_factory(env={"OCPP_BRIDGE_PER_IP_EXEMPT": "", "OCPP_BRIDGE_HANDSHAKE_RATE_PER_IP": "0.5",
                                  "OCPP_BRIDGE_HANDSHAKE_BURST_PER_IP": "3"})
    statuses = []
    for number in itertools.count():
        identity = new_identity()
        try:
            async with charger(process.ws_url(identity), identity) as link:
                await heartbeat(link)
            statuses.append("ok")
        except TLS_FAILURES:
            statuses.append("refused")
        if statuses[-1] == "refused" or number > 6:
            break
    # (the health probe of the test harness used one token too)
    assert statuses[-1] == "refused" and statuses.count("ok") <= 3
    identity = new_identity()
    async with charger_with(process.ws_url(identity), identity, local_addr=("127.0.0.2", 0)) as link:
        await heartbeat(link)


async def test_half_open_charger_is_closed_by_ping_timeout_and_its_upstream_too(bridge_factory, csms, identity):
    process = bridge_factory(env={"OCPP_BRIDGE_PING_INTERVAL": "0.5", "OCPP_BRIDGE_PING_TIMEOUT": "0.5",
                                  "OCPP_BRIDGE_CLOSE_TIMEOUT": "1"})
    async with connect(process.ws_url(identity), subprotocols=[Subprotocol("ocpp1.6")], ping_interval=None) as ws:
        station = await csms.station(identity)
        ws.transport.pause_reading()  # no pong will ever come back
        await within(csms.connections[identity].wait_closed(), 10)  # the CSMS learns the station is gone
        assert station is csms.stations[identity]
        ws.transport.resume_reading()
        with contextlib.suppress(ConnectionClosed):
            await within(ws.wait_closed())
    await process.wait_idle()


async def test_a_hostile_csms_frame_over_the_limit_closes_only_the_upstream_link(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity) as link:
        await heartbeat(link)
        upstream = csms.connections[identity]
        with contextlib.suppress(ConnectionClosed):
            await within(upstream.send("[2," + " " * (2 << 20) + "]"))
        await within(upstream.wait_closed())
        assert upstream.close_code == 1009
        assert link.ws.close_code is None  # the charger rides through and the bridge reconnects
        await csms.handshakes_of(identity, 2, timeout=10)
        await heartbeat(link)


async def test_sighup_reloads_credentials(bridge_factory, csms, tmp_path):
    first, later = fresh(), fresh()
    credentials = write_credentials(tmp_path / "credentials.toml", {first: PASSWORDS[first]})
    port = free_port()
    config = write_config(tmp_path / "bridge.toml", [
        {"address": f"127.0.0.1:{port}", "profile": 1, "credentials_file": str(credentials)}])
    process = bridge_factory(args=["--config", str(config)])
    url = f"ws://127.0.0.1:{port}/ocpp"
    assert (await refused_with(f"{url}/{later}", good(later))).status_code == 401
    async with charger(f"{url}/{first}", first, headers=good(first)) as link:
        await heartbeat(link)
        write_credentials(credentials, {first: PASSWORDS[first], later: PASSWORDS[later]})
        assert process.proc is not None
        process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not any(line.get("event") == "bridge.reloaded" for line in process.log_lines()):
            assert time.monotonic() < deadline, process.log_tail()
            await asyncio.sleep(0.05)  # polling a log file
        async with charger(f"{url}/{later}", later, headers=good(later)) as other:
            await heartbeat(other)
        await heartbeat(link)  # the running session was not touched
