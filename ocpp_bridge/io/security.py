"""OCPP security profiles at the bridge: TLS contexts, Basic-auth credentials, client-certificate checks, events.

Why this exists: the bridge is the CSMS's front door (OCPP 1.6 Security White Paper Ed. 3 = 2.0.1 Part 2 §A00),
so it authenticates chargers itself, before the upgrade and before anything is opened upstream:

* profile 1/2 (A00.FR.201-206, 301-324): ``Authorization: Basic`` whose username equals the URL identity
  (A00.FR.203), password checked against a salted scrypt/PBKDF2 hash with a constant-time compare, 401 with
  ``WWW-Authenticate`` otherwise; or, with ``auth = "forward"``, the header goes to the CSMS which decides.
* profile 3 (A00.FR.401-430): the TLS layer verifies the client certificate against the configured CA (and,
  when configured, against a CRL: A00.FR.704); this module then checks O = the operator (A00.FR.404/509), a CN
  that is a serial number, not a URL, a domain name or an IP address (A00.FR.511: so a CSMS's certificate, whose
  CN is its FQDN by A00.FR.510, never passes for a charger's), CN bound to the identity (A00.FR.405) and the
  expiry policy (A00.FR.430 errata: an expired certificate is the CSMS's decision, so it is a setting).
* TLS 1.2+ only unless named legacy chargers need 1.0/1.1 (A00.FR.312-314), no TLS compression (A00.FR.320), the
  A00.FR.317 cipher suites, OpenSSL security level 2 (RSA >= 2048, ECC >= 224 bits: A00.FR.502/503).
* Security events (A00.FR.323/408) are counted always and logged with a budget per kind, so a flood of one kind
  (bad passwords, invalid frames) cannot crowd the others out of the log. No secret is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import ssl
import time
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from .. import telemetry
from .limits import FrameGate, FramePolicy, FrameVerdict, TokenBucket

if TYPE_CHECKING:
    from ..config import ListenerSettings, Settings

# --- security events ---------------------------------------------------------------------------------------

# Kinds a remote party can produce at will get a small log budget; the rest a larger one. Every kind has its own
# bucket, so no kind can use up another's. Counting (metrics) is never limited.
NOISY_KINDS: Final = frozenset({"auth_failed", "rate_limited", "invalid_message", "tls_failed", "connection_refused",
                                "handshake_timeout", "invalid_certificate", "handshake_refused",
                                "csms_rate_limited", "admin_auth_failed"})
_NOISY_BUDGET: Final = (5.0, 20.0)  # log lines per second, burst
_CRITICAL_BUDGET: Final = (50.0, 100.0)


@dataclass
class _LogBudget:
    bucket: TokenBucket
    suppressed: int = 0


_BUDGETS: dict[str, _LogBudget] = {}


def event(kind: str, **fields: Any) -> None:
    """A security event ``security.<kind>``: always counted, logged (warning) within the kind's budget."""
    full = f"security.{kind}"
    telemetry.TELEMETRY.count_event(full, fields)
    budget = _BUDGETS.get(full)
    now = time.monotonic()
    if budget is None:
        rate, burst = _NOISY_BUDGET if kind in NOISY_KINDS else _CRITICAL_BUDGET
        budget = _BUDGETS[full] = _LogBudget(TokenBucket(rate, burst, now))
    if not budget.bucket.take(now):
        budget.suppressed += 1
        return
    if budget.suppressed:
        fields = {**fields, "suppressed": budget.suppressed}  # lines not written since the last one of this kind
        budget.suppressed = 0
    if telemetry.LOGGER.isEnabledFor(logging.WARNING):
        telemetry.LOGGER.warning(full, extra={"fields": fields})


def frame_gate(policy: FramePolicy, identity: str, side: str) -> FrameGate:
    """The frame-rate gate of one side ("charger" or "csms") of one session; refusals are security events:
    ``rate_limited`` for the charger, ``csms_rate_limited`` for the CSMS (issue 5: a hostile or broken CSMS is
    held to the same limit)."""
    kind = "rate_limited" if side == "charger" else "csms_rate_limited"

    def refused(verdict: FrameVerdict) -> None:
        event(kind, what="frames", identity=identity, verdict=verdict.value)

    return FrameGate(policy, refused)


# --- frames in logs ----------------------------------------------------------------------------------------

_SECRET_NAMES: Final = frozenset({"authorizationkey", "basicauthpassword"})
_SECRET_HINT: Final = re.compile(r"authorizationkey|basicauthpassword|password", re.IGNORECASE)


def redact_frame(text: str) -> str:
    """A frame for a log line: values of AuthorizationKey / BasicAuthPassword (and any *password* field) hidden."""
    if not _SECRET_HINT.search(text):
        return text
    try:
        return orjson.dumps(_redact(orjson.loads(text))).decode()
    except (ValueError, TypeError, RecursionError):  # orjson's decode/encode errors are ValueError/TypeError
        return "<frame withheld: it may contain a secret>"


def _redact(value: Any) -> Any:
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if not isinstance(value, dict):
        return value
    names = {str(v).lower() for k, v in value.items() if k in ("key", "name") and isinstance(v, str)}
    nested = value.get("variable")
    if isinstance(nested, dict) and isinstance(nested.get("name"), str):
        names.add(nested["name"].lower())
    secret = bool(names & _SECRET_NAMES)
    out = {}
    for key, item in value.items():
        if "password" in key.lower() or (secret and key in ("value", "attributeValue")):
            out[key] = "***"
        else:
            out[key] = _redact(item)
    return out


# --- password hashes ---------------------------------------------------------------------------------------

_SCRYPT_DEFAULT: Final = (1 << 14, 8, 1)
_PBKDF2_DEFAULT: Final = 600_000


def hash_password(password: bytes, scheme: str = "scrypt", *, n: int = _SCRYPT_DEFAULT[0],
                  r: int = _SCRYPT_DEFAULT[1], p: int = _SCRYPT_DEFAULT[2], iterations: int = _PBKDF2_DEFAULT,
                  salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` or ``pbkdf2_sha256$iterations$salt$hash`` (base64), a fresh 16-byte salt."""
    salt = salt if salt is not None else os.urandom(16)
    b64 = base64.b64encode
    if scheme == "scrypt":
        digest = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r, p), dklen=32)
        return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"
    if scheme == "pbkdf2":
        digest = hashlib.pbkdf2_hmac("sha256", password, salt, iterations, dklen=32)
        return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"
    raise ValueError(f"unknown scheme {scheme!r} (scrypt or pbkdf2)")


def _maxmem(n: int, r: int, p: int) -> int:
    return 128 * n * r * (p + 2) + (1 << 20)


@dataclass(frozen=True, slots=True)
class _Hash:
    scheme: str
    params: tuple[int, ...]
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> _Hash:
        parts = encoded.split("$")
        try:
            if parts[0] == "scrypt" and len(parts) == 6:
                n, r, p = (int(x) for x in parts[1:4])
                if n < 2 or n & (n - 1) or n > 1 << 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
                    raise ValueError("scrypt parameters out of range")
                return cls("scrypt", (n, r, p), _b64(parts[4]), _b64(parts[5]))
            if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
                iterations = int(parts[1])
                if not 1000 <= iterations <= 10_000_000:
                    raise ValueError("pbkdf2 iterations out of range")
                return cls("pbkdf2", (iterations,), _b64(parts[2]), _b64(parts[3]))
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"malformed password hash: {exc}") from None
        raise ValueError("a password hash is scrypt$n$r$p$salt$hash or pbkdf2_sha256$iterations$salt$hash")

    def matches(self, password: bytes) -> bool:
        if self.scheme == "scrypt":
            n, r, p = self.params
            computed = hashlib.scrypt(password, salt=self.salt, n=n, r=r, p=p, maxmem=_maxmem(n, r, p),
                                      dklen=len(self.digest))
        else:
            computed = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.params[0], dklen=len(self.digest))
        return hmac.compare_digest(computed, self.digest)  # constant time (the CVE-2021-33880 lesson)


def _b64(text: str) -> bytes:
    value = base64.b64decode(text, validate=True)
    if not value:
        raise ValueError("empty salt or hash")
    return value


def verify_password(encoded: str, password: bytes) -> bool:
    return _Hash.parse(encoded).matches(password)


# --- credential stores -------------------------------------------------------------------------------------


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid TOML: {exc}") from None
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{what} {path}: values must be strings (identity = \"...\"), not for {', '.join(bad)}")
    return data


def load_credentials(listener: ListenerSettings) -> dict[str, _Hash]:
    """identity -> parsed hash, from the listener's file and inline table (inline wins)."""
    raw = dict(_read_toml(listener.credentials_file, "credentials_file")) if listener.credentials_file else {}
    raw.update({identity: value.get_secret_value() for identity, value in listener.credentials.items()})
    parsed = {}
    for identity, encoded in raw.items():
        try:
            parsed[identity] = _Hash.parse(encoded)
        except ValueError as exc:
            raise ValueError(f"credentials for {identity!r}: {exc}") from None
    return parsed


def load_upstream_credentials(path: Path | None) -> dict[str, str]:
    return dict(_read_toml(path, "upstream_credentials_file")) if path is not None else {}


def basic_authorization(identity: str, password: str) -> str:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return f"Basic {token}"


class CredentialStore:
    """Verifies Basic-auth passwords off the event loop (scrypt is deliberately slow) and remembers recent
    successes (keyed by an HMAC under a per-process key, never the password) so a reconnect storm stays cheap."""

    CACHE_SECONDS: Final = 600.0

    def __init__(self, hashes: Mapping[str, _Hash], workers: int = 4) -> None:
        self._hashes = dict(hashes)
        self._semaphore = asyncio.Semaphore(workers)  # bounds the memory scrypt uses at once
        self._key = os.urandom(32)
        self._recent: dict[str, tuple[bytes, float]] = {}
        # An unknown identity costs as much as a known one (no identity enumeration by timing).
        self._dummy = next(iter(self._hashes.values()), None) or _Hash.parse(
            hash_password(b"-", n=_SCRYPT_DEFAULT[0], salt=b"\0" * 16))

    def __len__(self) -> int:
        return len(self._hashes)

    async def verify(self, identity: str, password: bytes) -> bool:
        token = hmac.new(self._key, identity.encode() + b"\0" + password, hashlib.sha256).digest()
        recent = self._recent.get(identity)
        if recent is not None and recent[1] > time.monotonic() and hmac.compare_digest(recent[0], token):
            return True
        stored = self._hashes.get(identity)
        async with self._semaphore:
            ok = await asyncio.to_thread((stored or self._dummy).matches, password)
        if ok and stored is not None:
            self._recent[identity] = (token, time.monotonic() + self.CACHE_SECONDS)
            return True
        self._recent.pop(identity, None)
        return False


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """(username, password bytes) of an ``Authorization: Basic`` header, or None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return username.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


# --- TLS ---------------------------------------------------------------------------------------------------

_NO_CHECK_TIME: Final = 0x200000  # X509_V_FLAG_NO_CHECK_TIME: the expiry policy is applied by check_certificate
LEGACY_TLS: Final = frozenset({"TLSv1", "TLSv1.1"})
_TLS_VERSION_REASONS: Final = frozenset({"UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "VERSION_TOO_LOW",
                                         "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"})


class _AuditedSSLObject(ssl.SSLObject):
    """Reports TLS handshakes that fail (A00.FR.323/408: log a security event when terminating for security)."""

    listener: str = ""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLCertVerificationError as exc:
            event("invalid_certificate", listener=self.listener, reason=exc.verify_message,
                  ocpp="InvalidChargePointCertificate")
            raise
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            ocpp = "InvalidTLSVersion" if reason in _TLS_VERSION_REASONS else \
                "InvalidTLSCipherSuite" if reason == "NO_SHARED_CIPHER" else \
                "InvalidChargePointCertificate" if "CERTIFICATE" in reason else None
            event("tls_failed", listener=self.listener, reason=reason, ocpp=ocpp)
            raise


def server_context(listener: ListenerSettings) -> ssl.SSLContext:
    """The TLS context of a profile 2/3 listener."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    legacy = bool(listener.tls_legacy_identities)
    if legacy:  # A00.FR.313/314: only for the named chargers; ListenerPolicy refuses them to everyone else
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated on purpose, for named chargers only
            context.minimum_version = ssl.TLSVersion.TLSv1
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3 if listener.tls_min_version == "1.3" \
            else ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    # OpenSSL 3 needs security level 0 for TLS 1.0/1.1 (SHA-1 handshake signatures); A00.FR.324's legacy suite.
    ciphers = f"{listener.tls_ciphers}:AES128-SHA:@SECLEVEL=0" if legacy else f"{listener.tls_ciphers}:@SECLEVEL=2"
    context.set_ciphers(ciphers)
    for cert, key in zip(listener.tls_cert, listener.tls_key, strict=True):
        context.load_cert_chain(cert, key)
    if listener.profile == 3:
        assert listener.tls_ca is not None
        context.verify_mode = ssl.CERT_REQUIRED  # A00.FR.403: no certificate, or an untrusted one: no TLS at all
        context.load_verify_locations(cafile=listener.tls_ca)
        _load_crls(context, listener)
        if listener.expired_certificates == "accept" or listener.expired_grace_days > 0:
            context.verify_flags |= _NO_CHECK_TIME
    context.sslobject_class = type("AuditedSSLObject", (_AuditedSSLObject,),
                                   {"listener": listener.address})
    return context


def count_crls(path: Path) -> int:
    """How many CRLs a ``tls_crl`` file holds (at least one, or ValueError naming the setting)."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        scratch.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"tls_crl {path}: not a PEM file of CRLs ({getattr(exc, 'reason', None) or exc})") from None
    crls = int(scratch.cert_store_stats()["crl"])
    if crls == 0:
        raise ValueError(f"tls_crl {path}: no certificate revocation list in it")
    return crls


def _load_crls(context: ssl.SSLContext, listener: ListenerSettings) -> None:
    """A00.FR.704: check every client certificate against its CA's CRL in the TLS handshake.

    CHECK_LEAF: the charger's certificate is looked up in the CRL of its issuer; an issuer without a CRL in the
    file fails every certificate it issued (fail closed), as does a CRL past its nextUpdate. Loading again (SIGHUP)
    adds the file's CRLs to the context's store: OpenSSL uses the most recent CRL of an issuer (the latest
    thisUpdate), so a re-issued CRL takes over for the next handshakes without a restart."""
    if listener.tls_crl is None:
        return
    context.load_verify_locations(cafile=listener.tls_crl)
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def upstream_context(settings: Settings, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext | None:
    """wss:// toward the CSMS: certificate and hostname always verified; never a fall-back to ws://. The bridge's
    client certificate: ``cert``/``key`` (one charger's) or else the deployment's ``upstream_cert``."""
    urls = [settings.upstream, settings.legacy_upstream or "", *(item.url for item in settings.upstreams.values())]
    if not any(url.startswith("wss://") for url in urls):
        return None
    context = ssl.create_default_context(cafile=settings.upstream_ca)  # CERT_REQUIRED, check_hostname
    # A00.FR.412/510: the CSMS certificate carries its FQDN in the CN, and the SAN dnsName SHOULD NOT be used
    # (A00.FR.511 note) unless the CSMS is reached by several paths; so the CN must count when there is no SAN
    # (with a SAN, RFC 6125 says the SAN alone decides). Set explicitly: it is not every Python's default.
    context.hostname_checks_common_name = True
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    if cert is not None:
        context.load_cert_chain(cert, key)
    elif settings.upstream_cert is not None:
        context.load_cert_chain(settings.upstream_cert, settings.upstream_key)
    return context


# --- client certificates (profile 3) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str  # safe to log and to send: never contains a secret
    kind: str = "auth_failed"  # the security event


def _subject(cert: Mapping[str, Any], name: str) -> list[str]:
    return [value for rdn in cert.get("subject", ()) for key, value in rdn if key == name]


_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_DOMAIN_NAME: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?")


def url_or_ip(name: str) -> bool:
    """Whether a certificate CN is "in the format of a URL or an IP address" (A00.FR.511): an IPv4/IPv6 address
    (bracketed or not), anything with a URL scheme or a path, or a domain name (dot-separated labels ending in an
    alphabetic top-level label: the FQDN a CSMS certificate carries, A00.FR.510). Serial numbers such as
    "SN-000123", "ACME.00042" or "DE*ABC*E1" are none of these."""
    candidate = name.strip()
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(candidate.removeprefix("[").removesuffix("]"))
        return True
    if _URL_SCHEME.match(candidate) or "/" in candidate:
        return True
    return _DOMAIN_NAME.fullmatch(candidate) is not None


def check_certificate(cert: Mapping[str, Any] | None, identity: str, listener: ListenerSettings,
                      now: float | None = None) -> Refusal | None:
    """A00.FR.404/405/430 on a certificate the TLS layer already verified against the CA; None when fine."""
    if not cert:
        return Refusal(403, "no client certificate", "invalid_certificate")
    now = time.time() if now is None else now
    if ssl.cert_time_to_seconds(cert["notBefore"]) > now:
        return Refusal(403, "client certificate is not valid yet", "invalid_certificate")
    expired_for = now - ssl.cert_time_to_seconds(cert["notAfter"])
    if expired_for > 0:
        within_grace = expired_for < listener.expired_grace_days * 86_400
        if listener.expired_certificates != "accept" and not within_grace:
            return Refusal(403, "client certificate has expired", "invalid_certificate")
        event("expired_certificate_accepted", identity=identity, listener=listener.address,
              expired_days=round(expired_for / 86_400, 2))
    organizations = _subject(cert, "organizationName")
    if organizations != [listener.operator]:
        return Refusal(403, "client certificate O is not the operator (A00.FR.404)", "invalid_certificate")
    names = _subject(cert, "commonName")
    if len(names) != 1:
        return Refusal(403, "client certificate needs exactly one CN (A00.FR.405)", "invalid_certificate")
    if url_or_ip(names[0]):  # A00.FR.511: never a URL or IP address, even when it equals the identity
        return Refusal(403, "client certificate CN is a URL, domain name or IP address, not a charger serial "
                            "number (A00.FR.511)", "invalid_certificate")
    bound = listener.serial_identities.get(names[0], names[0])
    if not hmac.compare_digest(bound.encode(), identity.encode()):
        return Refusal(403, "client certificate CN is not bound to this identity (A00.FR.405)",
                       "invalid_certificate")
    return None


# --- one listener's policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admitted:
    forward_authorization: str | None  # the charger's header to hand to the CSMS (forward mode / profile 0)
    authenticated: bool  # the bridge itself verified who this is (local credentials or a client certificate)


WWW_AUTHENTICATE: Final = 'Basic realm="OCPP", charset="UTF-8"'


@dataclass
class ListenerPolicy:
    settings: ListenerSettings
    credentials: CredentialStore | None = None
    context: ssl.SSLContext | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.settings.address

    @classmethod
    def build(cls, settings: ListenerSettings) -> ListenerPolicy:
        local = settings.profile in (1, 2) and settings.auth == "local"
        credentials = CredentialStore(load_credentials(settings)) if local else None
        return cls(settings, credentials, server_context(settings) if settings.tls else None)

    @property
    def profile(self) -> int:
        return self.settings.profile

    def refresh(self, settings: ListenerSettings) -> bool:
        """SIGHUP: new credentials, operator, CN map and CRLs (the same ``tls_crl`` file, re-read) for this
        listener; False (nothing changed) when a setting that shapes the socket or the TLS context changed, which
        needs a restart."""
        fixed = ("address", "profile", "tls_cert", "tls_key", "tls_ca", "tls_crl", "tls_min_version",
                 "tls_ciphers", "tls_legacy_identities", "auth", "expired_certificates", "expired_grace_days")
        if any(getattr(settings, name) != getattr(self.settings, name) for name in fixed):
            return False
        local = settings.profile in (1, 2) and settings.auth == "local"
        self.credentials = CredentialStore(load_credentials(settings)) if local else None
        if self.context is not None and settings.tls_crl is not None:
            try:
                _load_crls(self.context, settings)
            except (ssl.SSLError, OSError) as exc:  # the CRLs loaded before stay in force
                event("crl_reload_failed", listener=self.name, reason=str(exc))
            else:
                telemetry.event("security.crl_loaded", listener=self.name,
                                crls=self.context.cert_store_stats()["crl"])
        self.settings = settings
        return True

    async def admit(self, identity: str, authorization: str | None, tls: ssl.SSLObject | None) -> \
            Admitted | Refusal:
        """Authenticate a charger's upgrade request (before any duplicate logic and before the CSMS)."""
        if tls is not None:
            refusal = self._check_tls(identity, tls)
            if refusal is not None:
                return refusal
        if self.profile == 0:
            return Admitted(authorization, authenticated=False)
        if self.profile == 3:
            return Admitted(None, authenticated=True)
        basic = parse_basic(authorization)
        if basic is None:
            return Refusal(401, "missing or malformed Basic credentials")
        username, password = basic
        if not hmac.compare_digest(username.encode(), identity.encode()):  # A00.FR.203
            return Refusal(401, "username is not the charger identity")
        if self.credentials is None:  # forward: the CSMS verifies the password
            return Admitted(authorization, authenticated=False)
        if not await self.credentials.verify(identity, password):
            return Refusal(401, "wrong credentials")
        return Admitted(None, authenticated=True)

    def _check_tls(self, identity: str, tls: ssl.SSLObject) -> Refusal | None:
        if tls.version() in LEGACY_TLS and identity not in self.settings.tls_legacy_identities:
            return Refusal(403, f"{tls.version()} is allowed only for the listed legacy chargers (A00.FR.313)",
                           "tls_failed")
        if self.profile == 3:
            return check_certificate(tls.getpeercert(), identity, self.settings)
        return None
