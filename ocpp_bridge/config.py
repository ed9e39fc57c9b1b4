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

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from .core.settings import DEFAULT_TOKEN_RULES, DEFAULT_TOKEN_TYPE, CoreSettings, TokenTypeRule

SUPPORTED_UPSTREAM = ("ocpp2.1", "ocpp2.0.1")
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


class Settings(BaseSettings):
    """Every setting of ``ocpp-bridge serve``. Field descriptions are the configuration reference."""

    model_config = SettingsConfigDict(env_prefix="OCPP_BRIDGE_", extra="forbid", validate_default=True)

    listen: str = Field("0.0.0.0:9000", description="HOST:PORT chargers connect to (ws://HOST:PORT/<path>/<identity>).")
    upstream: str = Field(description="CSMS base URL; the bridge opens URL/<identity> for each charger.")
    upstream_protocols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ocpp2.0.1"],
        description="Subprotocols offered to the CSMS for 1.6 chargers, in order of preference "
                    "(e.g. ocpp2.1,ocpp2.0.1 speaks 2.1 when the CSMS offers it).")
    state: str = Field("./ocpp-bridge.db", description="SQLite state file (transaction ledger, charger records).")
    state_durability: str = Field("normal", description="SQLite synchronous level: normal survives a process "
                                                        "crash, full also a power loss, off neither.")
    call_timeout: float = Field(20.0, gt=0, le=300, description="Seconds to wait for either peer to answer a call.")
    open_timeout: float = Field(10.0, gt=0, le=120, description="Seconds to open the upstream connection.")
    validate_output: bool = Field(True, description="Check the bridge's own output against the OCA schemas.")
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

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be a ws:// or wss:// URL with a host")
        return value.rstrip("/")

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
    return Settings.model_construct(**layered.model_dump())


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        where = f" (flag --{name.replace('_', '-')}, env OCPP_BRIDGE_{name.upper()}"
        where += f" or {config_file})" if config_file else ")"
        message = "is required" if error["type"] == "missing" else error["msg"]
        lines.append(f"setting {name!r} {message}{where}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
