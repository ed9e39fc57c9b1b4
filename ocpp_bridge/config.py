"""Settings: a TOML file (``--config``), ``OCPP_BRIDGE_*`` environment variables and command-line flags.

Why this exists: operators configure a sidecar the way their platform does (a mounted file, env vars from a
Kubernetes manifest, a flag while debugging). Precedence is flags > environment > file > defaults, and a wrong
value is refused at start-up with a message that names the setting and where it came from.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from .core.settings import DEFAULT_TOKEN_RULES, DEFAULT_TOKEN_TYPE, CoreSettings, TokenTypeRule

SUPPORTED_UPSTREAM = ("ocpp2.1", "ocpp2.0.1")
LEGACY_PROTOCOL = "ocpp1.6"  # the old central system of a legacy or shadow route speaks 1.6, untranslated
ROUTE_MODE_NAMES = ("translate", "legacy", "shadow")  # routes.ROUTE_MODES, kept here so config imports nothing
RESERVED_UPSTREAMS = ("default", "legacy")  # upstream + upstream_protocols, legacy_upstream
MIN_ADMIN_TOKEN = 16
# OCPP A00.FR.317 (CSMS side): ECDHE-ECDSA and RSA AES-GCM suites; ECDHE-RSA added for forward secrecy with an RSA
# certificate. TLS 1.3 suites are OpenSSL's defaults (all AEAD). Drop AES*-GCM-SHA* (no forward secrecy) to give up
# A00.FR.317 conformance for forward secrecy only.
OCPP_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
                "ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-GCM-SHA384")
_ID_TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization")


class ConfigError(ValueError):
    """A setting is wrong; the message names it."""


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]*):(\d{1,5})", value.strip())
    if not match:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _csv(value: Any) -> Any:
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


def _ws_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("must be a ws:// or wss:// URL with a host")
    return value.rstrip("/")


class UpstreamSettings(BaseModel):
    """One ``[upstreams.<name>]`` table: a central system a route can name, either a 1.6 one or a 2.x CSMS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Base URL (ws:// or wss://); the bridge opens URL/<identity>.")
    protocols: list[str] = Field(default_factory=lambda: ["ocpp2.0.1"], description="ocpp1.6 (an old central "
                                 "system) or 2.x subprotocols in order of preference (a new CSMS); never both.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _ws_url(value)

    @field_validator("protocols", mode="before")
    @classmethod
    def _protocols_csv(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        known = (LEGACY_PROTOCOL, *SUPPORTED_UPSTREAM)
        unknown = [p for p in value if p not in known]
        if unknown or not value:
            raise ValueError(f"must be a non-empty list of {', '.join(known)}; got {unknown or value}")
        if LEGACY_PROTOCOL in value and len(value) > 1:
            raise ValueError(f"{LEGACY_PROTOCOL} cannot be mixed with 2.x: an upstream is either an old 1.6 central "
                             "system or a 2.x CSMS")
        if len(set(value)) != len(value):
            raise ValueError(f"lists a protocol twice: {value}")
        return value


class RouteSettings(BaseModel):
    """One ``[[routes]]`` table: which chargers take which route; the first matching rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str = Field(description="translate, legacy or shadow.")
    identities: list[str] = Field(default_factory=list, description="Charger identities or fnmatch globs "
                                  "(case-sensitive).")
    identities_file: Path | None = Field(None, description="Text file, one identity or glob per line, # comments.")
    upstream: str = Field("default", description="Name of the 2.x CSMS (translate, shadow; 2.x chargers).")
    legacy_upstream: str | None = Field(None, description="Name of the old 1.6 central system (legacy, shadow); "
                                        "default: legacy, when legacy_upstream is set.")

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ROUTE_MODE_NAMES:
            raise ValueError(f"must be one of {', '.join(ROUTE_MODE_NAMES)}")
        return value

    @model_validator(mode="after")
    def _some_identities(self) -> RouteSettings:
        if not self.identities and self.identities_file is None:
            raise ValueError("a route needs identities, identities_file or both")
        return self


class ListenerSettings(BaseModel):
    """One ``[[listeners]]`` table: an address and the one OCPP security profile served there (A00.FR.006)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="HOST:PORT chargers connect to.")
    profile: int = Field(0, ge=0, le=3, description="OCPP security profile: 0 none (lab use only), 1 Basic auth "
                         "over ws (trusted networks only), 2 TLS + Basic auth, 3 TLS with client certificates.")
    tls_cert: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Server certificate chain file(s), PEM; one per key type (an RSA and an "
                                          "ECDSA certificate serve all four A00.FR.317 suites).")
    tls_key: Annotated[list[Path], NoDecode] = Field(default_factory=list, description="Private key file(s), PEM, "
                                                     "in the order of tls_cert.")
    tls_ca: Path | None = Field(None, description="CA bundle client certificates must chain to (profile 3).")
    tls_crl: Path | None = Field(None, description="Profile 3: PEM file of certificate revocation lists, one per CA "
                                 "that issues charger certificates (A00.FR.704); a revoked client certificate "
                                 "fails the TLS handshake. Re-read on SIGHUP.")
    tls_min_version: str = Field("1.2", description="Lowest TLS version: 1.2 or 1.3.")
    tls_ciphers: str = Field(OCPP_CIPHERS, description="OpenSSL cipher list for TLS 1.2.")
    tls_legacy_identities: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Chargers allowed to use TLS 1.0/1.1 (A00.FR.313/314); when set, the "
                                          "listener accepts 1.0/1.1 handshakes and refuses them for anyone else.")
    auth: str = Field("local", description="Profiles 1/2: local (verify Basic credentials against the bridge's "
                      "own hashes) or forward (check the username, let the CSMS verify the password).")
    credentials_file: Path | None = Field(None, description="TOML file of identity = \"<password hash>\" lines "
                                          "(ocpp-bridge hash-password makes them).")
    credentials: dict[str, SecretStr] = Field(default_factory=dict, description="Inline identity -> password hash "
                                              "(shown masked by check-config).")
    operator: str | None = Field(None, description="Profile 3: the CPO name the client certificate's O must be "
                                 "(A00.FR.404).")
    serial_identities: dict[str, str] = Field(
        default_factory=dict, description="Profile 3: certificate CN (the charger's serial number, A00.FR.405) -> "
                                          "identity, for chargers whose CN is not their identity.")
    expired_certificates: str = Field("reject", description="Profile 3: reject or accept (A00.FR.430: the CSMS "
                                      "decides) client certificates past their notAfter; accepting is logged.")
    expired_grace_days: float = Field(0.0, ge=0, description="With reject: certificates expired for less than "
                                      "this many days are still accepted (and logged).")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("tls_cert", "tls_key", "tls_legacy_identities", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return [value] if isinstance(value, Path) else _csv(value)

    @field_validator("tls_min_version")
    @classmethod
    def _tls_min(cls, value: str) -> str:
        if value not in ("1.2", "1.3"):
            raise ValueError("must be 1.2 or 1.3 (TLS 1.0/1.1: name the legacy chargers in tls_legacy_identities)")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if value not in ("local", "forward"):
            raise ValueError("must be local or forward")
        return value

    @field_validator("expired_certificates")
    @classmethod
    def _expired(cls, value: str) -> str:
        if value not in ("reject", "accept"):
            raise ValueError("must be reject or accept")
        return value

    @model_validator(mode="after")
    def _profile(self) -> ListenerSettings:
        tls = self.profile in (2, 3)
        if tls and (not self.tls_cert or len(self.tls_cert) != len(self.tls_key)):
            raise ValueError(f"profile {self.profile} needs tls_cert and tls_key (the same number of each)")
        if not tls and (self.tls_cert or self.tls_key or self.tls_ca):
            raise ValueError(f"profile {self.profile} is plain ws://; TLS needs profile 2 or 3")
        if self.profile == 3 and (self.tls_ca is None or not self.operator):
            raise ValueError("profile 3 needs tls_ca (the CA of the chargers' certificates) and operator (the O "
                             "their certificates must carry)")
        if self.tls_crl is not None and self.profile != 3:
            raise ValueError("tls_crl is for profile 3 (client certificates)")
        if self.profile in (1, 2) and self.auth == "local":
            from .io.security import load_credentials

            load_credentials(self)  # the hashes must be readable and well-formed now, not at the first charger
            if not (self.credentials or self.credentials_file):
                raise ValueError('auth = "local" needs credentials or credentials_file (or auth = "forward")')
        for path in (*self.tls_cert, *self.tls_key, *([self.tls_ca] if self.tls_ca else []),
                     *([self.tls_crl] if self.tls_crl else [])):
            if not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        if self.tls_crl is not None:
            from .io.security import count_crls

            count_crls(self.tls_crl)  # a file without a readable CRL would refuse every charger: say so now
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.address)

    @property
    def tls(self) -> bool:
        return self.profile in (2, 3)


class Settings(BaseSettings):
    """Every setting of ``ocpp-bridge serve``. Field descriptions are the configuration reference."""

    model_config = SettingsConfigDict(env_prefix="OCPP_BRIDGE_", extra="forbid", validate_default=True)

    listen: str = Field("0.0.0.0:9000", description="HOST:PORT chargers connect to (ws://HOST:PORT/<path>/<identity>), "
                        "security profile 0: no authentication, for lab use only. When listeners are configured, "
                        "this port answers only /healthz and /readyz (for probes).")
    listeners: list[ListenerSettings] = Field(
        default_factory=list, description="[[listeners]] tables, one OCPP security profile each (keys: address, "
        "profile, tls_cert, tls_key, tls_ca, tls_crl, tls_min_version, tls_ciphers, tls_legacy_identities, auth, "
        "credentials_file, credentials, operator, serial_identities, expired_certificates, expired_grace_days; "
        "see docs/security.md).")
    upstream: str = Field(description="CSMS base URL; the bridge opens URL/<identity> for each charger.")
    upstream_protocols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ocpp2.0.1"],
        description="Subprotocols offered to the CSMS for 1.6 chargers, in order of preference "
                    "(e.g. ocpp2.1,ocpp2.0.1 speaks 2.1 when the CSMS offers it).")
    legacy_upstream: str | None = Field(None, description="The old OCPP 1.6 central system's base URL (ws:// or "
                                        "wss://), the upstream named legacy: legacy routes pass 1.6 chargers "
                                        "through to it untranslated, shadow routes keep it authoritative.")
    default_route: str = Field("translate", description="Route of chargers no [[routes]] rule names: translate "
                               "(to the 2.x CSMS), legacy (to legacy_upstream, untranslated) or shadow "
                               "(legacy_upstream answers, the CSMS gets a translated copy to compare).")
    upstreams: dict[str, UpstreamSettings] = Field(
        default_factory=dict, description="More named upstreams, [upstreams.<name>] tables (keys: url, protocols: "
        "ocpp1.6 for an old central system, else 2.x subprotocols); default and legacy are reserved.")
    routes: list[RouteSettings] = Field(
        default_factory=list, description="[[routes]] rules, the first match wins (keys: mode, identities: exact "
        "names or case-sensitive globs, identities_file: one per line with # comments, relative to the working "
        "directory, upstream: a 2.x upstream name, default default, legacy_upstream: a 1.6 upstream name, "
        "default legacy). ocpp-bridge routes check shows the outcome.")
    state: str = Field("./ocpp-bridge.db", description="SQLite state file (transaction ledger, charger records).")
    state_durability: str = Field("normal", description="SQLite synchronous level: normal survives a process "
                                                        "crash, full also a power loss, off neither.")
    call_timeout: float = Field(20.0, gt=0, le=300, description="Seconds to wait for either peer to answer a call.")
    drain_timeout: float = Field(10.0, ge=0, le=300, description="On SIGTERM, seconds to let calls in flight "
                                 "finish before chargers are closed with 1001 (stay below the pod's "
                                 "terminationGracePeriodSeconds).")
    open_timeout: float = Field(10.0, gt=0, le=120, description="Seconds to open the upstream connection.")
    validate_output: bool = Field(False, description="Also check the bridge's own output against the OCA schemas "
                                  "before sending it (defense in depth, ~10% more core CPU; incoming frames are "
                                  "always validated).")
    token_types: dict[str, str] = Field(
        default_factory=dict,
        description="Regex (full match) -> 2.0.1 IdTokenEnumType for 1.6 idTags, tried in order before the "
                    "built-in rules (8/14/20 hex digits ISO14443, 16 ISO15693, eMAID pattern).")
    default_token_type: str = Field(DEFAULT_TOKEN_TYPE, description="Token type when no rule matches.")
    mappings: Path | None = Field(None, description="Directory of mapping overrides (*.toml) applied over the "
                                                     "packaged tables.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    log_format: str = Field("json", description="json (one JSON object per line) or text (human-readable).")
    metrics_listen: str | None = Field(None, description="HOST:PORT of a Prometheus /metrics endpoint (off when "
                                       "unset). OTLP export follows the standard OTEL_EXPORTER_OTLP_* variables.")
    traces: bool = Field(False, description="Record one span per CALL exchange (exported over OTLP when "
                         "OTEL_EXPORTER_OTLP_ENDPOINT is set).")
    debug_identities: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Charger identities whose full frames are logged (changeable at runtime "
                                          "with SIGHUP).")
    outage_mode: str = Field("ride-through", description="What a CSMS outage does to connected 1.6 chargers: "
                             "ride-through (stay connected, queue durably, replay) or close (close them at once).")
    outage_grace: float = Field(600.0, gt=0, description="Seconds of continuous CSMS outage after which 1.6 "
                                "chargers are closed so they queue for themselves (OCPP-J Local Controller rule).")
    max_queue: int = Field(100_000, gt=0, description="Queued messages per charger beyond which, during an "
                           "outage, the charger is closed (nothing queued is ever dropped).")
    retry_interval: float = Field(10.0, gt=0, description="First back-off (s) after the CSMS answered a queued "
                                  "message with CALLERROR or not at all; doubles per attempt (E13).")
    retry_max: float = Field(300.0, gt=0, description="Cap (s) of that back-off; queued messages are retried "
                             "until accepted.")
    reconnect_min: float = Field(1.0, gt=0, description="First upstream reconnect back-off (s); doubles per "
                                 "attempt, with jitter.")
    reconnect_max: float = Field(60.0, gt=0, description="Cap (s) of the upstream reconnect back-off.")
    boot_retry_interval: int = Field(60, gt=0, description="Interval (s) given with BootNotification Pending "
                                     "while the CSMS is unreachable.")
    accept_unknown_tokens: bool = Field(False, description="While the CSMS is unreachable, accept tokens it never "
                                        "decided about (default: answer Invalid).")
    auth_cache_ttl: float = Field(86_400.0, gt=0, description="How long (s) a CSMS authorization without "
                                  "cacheExpiryDateTime may be reused while the CSMS is unreachable.")
    upstream_ca: Path | None = Field(None, description="CA bundle for the CSMS certificate (wss://); default: the "
                                     "system's trust store. The hostname is always checked.")
    upstream_cert: Path | None = Field(None, description="The bridge's client certificate for the CSMS (PEM).")
    upstream_key: Path | None = Field(None, description="Private key of upstream_cert (PEM).")
    upstream_client_certs_dir: Path | None = Field(
        None, description="Directory of per-charger client certificates for the CSMS (wss://): <identity>.pem "
                          "(chain) and <identity>.key, presented instead of upstream_cert for a charger the bridge "
                          "authenticated itself (local credentials, profile 3). Files are re-read when they change.")
    upstream_client_certs_cache: int = Field(1024, ge=1, description="Per-charger TLS contexts kept in memory "
                                             "(LRU); each holds the CSMS trust store (small with upstream_ca, "
                                             "~0.8 MiB with the system store).")
    upstream_credentials_file: Path | None = Field(
        None, description="TOML file of identity = \"password\": the Basic-auth password the bridge presents to the "
                          "CSMS for a charger it authenticated itself (local credentials, profile 3; 2.0.1 "
                          "BasicAuthPassword). Chargers on profile 0 or forward listeners present their own.")
    duplicate_policy: str = Field("replace", description="A second connection with a connected identity, once "
                                  "authenticated: replace (the old one is closed after the new upgrade) or reject "
                                  "(HTTP 409).")
    replacements_per_minute: float = Field(2.0, gt=0, description="Replacements allowed per identity per minute "
                                           "(burst of the same size); more get HTTP 429 and a security event.")
    max_message_size: int = Field(1 << 20, ge=1024, le=1 << 28, description="Largest message (bytes, after "
                                  "decompression) from a charger or the CSMS; larger closes with 1009.")
    compression: str = Field("deflate", description="permessage-deflate toward chargers (RFC 7692, required of a "
                             "CSMS by OCPP-J): deflate or none. The size limit applies to the inflated message.")
    frame_rate: float = Field(100.0, gt=0, description="Frames per second per charger (token bucket, live-"
                              "reloadable); excess CALLs get CALLERROR GenericError and are never forwarded.")
    frame_burst: int = Field(200, ge=1, description="Frames a charger may send at once above frame_rate.")
    frame_rate_close_after: int = Field(1000, ge=0, description="Refused frames within 10 s after which the "
                                        "charger is closed with 1008 (0: never close).")
    csms_frame_rate: float = Field(100.0, gt=0, description="Frames per second from the CSMS per charger "
                                   "connection (token bucket, live-reloadable); excess CALLs get CALLERROR "
                                   "GenericError back and never reach the charger.")
    csms_frame_burst: int = Field(200, ge=1, description="Frames the CSMS may send at once above csms_frame_rate.")
    csms_frame_rate_close_after: int = Field(1000, ge=0, description="Refused CSMS frames within 10 s after which "
                                             "that upstream connection is closed with 1008 and opened again "
                                             "(0: never close).")
    max_connections: int = Field(10_000, ge=1, description="Open connections, all listeners together; more are "
                                 "closed at accept.")
    max_connections_per_ip: int = Field(1000, ge=1, description="Open connections per source IP.")
    max_handshakes_per_ip: int = Field(100, ge=1, description="Connections per source IP that have not finished "
                                       "their upgrade (slowloris).")
    handshake_rate_per_ip: float = Field(20.0, gt=0, description="New connections per second per source IP.")
    handshake_burst_per_ip: int = Field(100, ge=1, description="New connections a source IP may open at once "
                                        "above handshake_rate_per_ip.")
    per_ip_exempt: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks exempt from the per-IP limits (a local sidecar proxy, a load balancer without "
                    "PROXY protocol); global limits still apply.")
    handshake_timeout: float = Field(10.0, gt=0, le=300, description="Seconds for a new connection's TLS "
                                     "handshake and for its HTTP upgrade request to arrive; then it is closed.")
    ping_interval: float = Field(20.0, gt=0, description="Seconds between WebSocket pings to each peer.")
    ping_timeout: float = Field(20.0, gt=0, description="Seconds without a pong after which a peer is "
                                "considered gone (half-open) and closed.")
    close_timeout: float = Field(10.0, gt=0, le=120, description="Seconds a peer gets to complete the closing "
                                 "handshake before its connection is dropped (a half-open peer never does).")
    write_limit: int = Field(32_768, ge=1024, description="Bytes buffered for a peer that does not read before "
                             "sending waits (slow readers cannot make the bridge buffer without bound).")
    auth_failure_delay: float = Field(0.5, ge=0, description="Seconds before answering a failed authentication, "
                                      "doubled per recent failure of the same source or identity.")
    auth_failure_delay_max: float = Field(5.0, ge=0, description="Cap (s) of that delay. Correct credentials are "
                                          "never delayed.")
    admin_listen: str | None = Field(None, description="HOST:PORT of the admin HTTP API (charger routes, "
                                     "migration status; off when unset). Bind it to a private address.")
    admin_token: SecretStr | None = Field(None, json_schema_extra={"secret": True}, description="Bearer token "
                                          f"the admin API requires (at least {MIN_ADMIN_TOKEN} characters; "
                                          "required with admin_listen; prefer the environment to the flag).")
    admin_tls_cert: Path | None = Field(None, description="Certificate chain (PEM) of the admin API; with "
                                        "admin_tls_key it serves HTTPS.")
    admin_tls_key: Path | None = Field(None, description="Private key (PEM) of admin_tls_cert.")
    shadow_ready_seconds: float = Field(86_400.0, ge=0, description="GET /admin/migration calls a charger in shadow "
                                        "ready after this many seconds without a difference that matters ...")
    shadow_ready_messages: int = Field(100, ge=0, description="... and at least this many messages both central "
                                       "systems answered since the last such difference.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return _ws_url(value)

    @field_validator("legacy_upstream")
    @classmethod
    def _legacy_upstream(cls, value: str | None) -> str | None:
        return None if value is None else _ws_url(value)

    @field_validator("default_route")
    @classmethod
    def _default_route(cls, value: str, info: ValidationInfo) -> str:
        if value not in ROUTE_MODE_NAMES:
            raise ValueError(f"must be one of {', '.join(ROUTE_MODE_NAMES)}")
        if value != "translate" and info.data.get("legacy_upstream") is None and "legacy_upstream" in info.data:
            raise ValueError(f"{value!r} needs legacy_upstream (the old 1.6 central system's URL)")
        return value

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, value: dict[str, UpstreamSettings]) -> dict[str, UpstreamSettings]:
        for name in value:
            if name in RESERVED_UPSTREAMS:
                raise ValueError(f"the name {name!r} is reserved ({name} = "
                                 f"{'upstream' if name == 'default' else 'legacy_upstream'}); choose another")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
        return value

    @field_validator("admin_listen")
    @classmethod
    def _admin_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN:
            raise ValueError(f"is shorter than {MIN_ADMIN_TOKEN} characters (use a random one, e.g. "
                             "openssl rand -hex 32)")
        if value is None and info.data.get("admin_listen") is not None:
            raise ValueError("is required when admin_listen is set")
        return value

    @field_validator("admin_tls_key")
    @classmethod
    def _admin_tls_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "admin_tls_cert" in info.data and (value is None) != (info.data["admin_tls_cert"] is None):
            raise ValueError("admin_tls_cert and admin_tls_key go together")
        return value

    @field_validator("per_ip_exempt", mode="before")
    @classmethod
    def _exempt_csv(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("per_ip_exempt")
    @classmethod
    def _exempt(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("duplicate_policy")
    @classmethod
    def _duplicate(cls, value: str) -> str:
        if value not in ("replace", "reject"):
            raise ValueError("must be replace or reject")
        return value

    @field_validator("compression")
    @classmethod
    def _compression(cls, value: str) -> str:
        if value not in ("deflate", "none"):
            raise ValueError("must be deflate or none")
        return value

    @field_validator("upstream_ca", "upstream_cert", "upstream_key", "upstream_credentials_file", "admin_tls_cert",
                     "admin_tls_key")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("upstream_client_certs_dir")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.upstream_cert is None) != (self.upstream_key is None):
            raise ValueError("upstream_cert and upstream_key go together")
        if self.upstream_client_certs_dir is not None and not self.upstream.startswith("wss://"):
            raise ValueError("upstream_client_certs_dir needs a wss:// upstream (client certificates are TLS)")
        addresses = [self.listen_address, *(split_host_port(item.address) for item in self.listeners)]
        addresses = [address for address in addresses if address[1] != 0]  # port 0: any free port
        if len(set(addresses)) != len(addresses):
            raise ValueError("listen and every listener need an address of their own")
        if self.upstream_credentials_file is not None:
            from .io.security import load_upstream_credentials

            load_upstream_credentials(self.upstream_credentials_file)
        return self

    @field_validator("upstream_protocols", mode="before")
    @classmethod
    def _protocols_csv(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("upstream_protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in SUPPORTED_UPSTREAM]
        if unknown or not value:
            raise ValueError(f"must be a non-empty list of {', '.join(SUPPORTED_UPSTREAM)}; got {unknown or value}")
        return value

    @field_validator("state_durability")
    @classmethod
    def _durability(cls, value: str) -> str:
        if value not in ("off", "normal", "full"):
            raise ValueError("must be off, normal or full")
        return value

    @field_validator("token_types")
    @classmethod
    def _token_types(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern, token_type in value.items():
            re.compile(pattern)
            if token_type not in _ID_TOKEN_TYPES:
                raise ValueError(f"{token_type!r} is not an IdTokenEnumType ({', '.join(_ID_TOKEN_TYPES)})")
        return value

    @field_validator("default_token_type")
    @classmethod
    def _default_token_type(cls, value: str) -> str:
        if value not in _ID_TOKEN_TYPES:
            raise ValueError(f"must be one of {', '.join(_ID_TOKEN_TYPES)}")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError("must be json or text")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @field_validator("debug_identities", mode="before")
    @classmethod
    def _identities_csv(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("outage_mode")
    @classmethod
    def _outage_mode(cls, value: str) -> str:
        if value not in ("ride-through", "close"):
            raise ValueError("must be ride-through or close")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be debug, info, warning or error")
        return value.lower()

    @property
    def listen_address(self) -> tuple[str, int]:
        return split_host_port(self.listen)

    def core(self) -> CoreSettings:
        from .mappings import load_key_table

        rules = tuple(TokenTypeRule(re.compile(p), t) for p, t in self.token_types.items()) + DEFAULT_TOKEN_RULES
        return CoreSettings(call_timeout=self.call_timeout, validate_output=self.validate_output,
                            token_rules=rules, default_token_type=self.default_token_type,
                            keys=load_key_table(self.mappings), outage_mode=self.outage_mode,
                            outage_grace=self.outage_grace, max_queue=self.max_queue,
                            retry_interval=self.retry_interval, retry_max=self.retry_max,
                            boot_retry_interval=self.boot_retry_interval,
                            accept_unknown_tokens=self.accept_unknown_tokens, auth_cache_ttl=self.auth_cache_ttl)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = set(Settings.model_fields)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load(config_file: Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (non-None values) > OCPP_BRIDGE_* environment > the TOML file > defaults."""
    file_values = _read_file(config_file) if config_file else {}
    given = {k: v for k, v in flags.items() if v is not None}

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            from pydantic_settings import InitSettingsSource

            return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_values)

    try:
        layered = _Layered(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None
    except SettingsError as exc:  # e.g. an environment value that is not valid JSON for a dict setting
        raise ConfigError(f"invalid configuration: {exc}") from None
    # Field values as validated (nested models stay models; a dump would turn listeners into plain dicts).
    settings = Settings.model_construct(**{name: getattr(layered, name) for name in Settings.model_fields})
    if settings.routes:
        from .routes import RouteTable

        try:
            RouteTable.from_settings(settings)  # upstream names and identities files: refused now, not at a charger
        except ConfigError as exc:
            source = f"{config_file} or env OCPP_BRIDGE_ROUTES" if config_file else "env OCPP_BRIDGE_ROUTES"
            raise ConfigError(f"invalid configuration:\n  {exc} ({source})") from None
    return settings


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        top = str(loc[0]) if loc else "settings"
        name = name or top
        where = f" (flag --{top.replace('_', '-')}, env OCPP_BRIDGE_{top.upper()}"
        where += f" or {config_file})" if config_file else ")"
        message = "is required" if error["type"] == "missing" else error["msg"]
        lines.append(f"setting {name!r} {message}{where}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
