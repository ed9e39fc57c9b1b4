"""Logs, metrics and traces: the one module that knows about logging and OpenTelemetry.

Why this exists: operators need to see what the bridge does (which chargers are on which protocol, what was
translated, what failed, how long it took) in the tools their platform already runs. Everything observable
arrives here: the core's ``Emit`` commands and its ``ExchangeDone`` records (one per completed CALL with both sides'
message ids) and the shell's own events. From them this module writes one structured log line per session event
and per error (never a secret), counts metrics (Prometheus endpoint and/or OTLP, configured by the standard
``OTEL_*`` variables) and, when enabled, records one span per exchange.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

from . import __version__
from .core.events import ExchangeDone

LOGGER: Final = logging.getLogger("ocpp_bridge")
_WARNING_KINDS: Final = frozenset({"frame.invalid", "call.timeout", "transaction.unknown", "store.error",
                                   "transaction.duplicate_stop", "csms.rejected_result", "meter.unmapped",
                                   "queue.growing", "queue.retry", "upstream.lost", "outage.closing_charger",
                                   "transaction.deauthorized", "session.taken_over", "handshake.refused"})
_ERROR_KINDS: Final = frozenset({"bug", "queue.refused"})
_QUIET_KINDS: Final = frozenset({"queue.delivered"})  # counted; logged at debug level
_SECRET_FIELDS: Final = frozenset({"authorization", "password", "authorization_key", "token", "secret"})


# --- logs -----------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: ("***" if k in _SECRET_FIELDS else v) for k, v in fields.items()})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        shown = " ".join(f"{k}={'***' if k in _SECRET_FIELDS else v}" for k, v in fields.items())
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created))
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {shown}".rstrip()


def configure(level: str = "info", log_format: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def event(kind: str, **fields: Any) -> None:
    """One observable thing happened: count it, and log it at the level its kind deserves."""
    TELEMETRY.count_event(kind, fields)
    level = logging.ERROR if kind in _ERROR_KINDS else logging.WARNING if kind in _WARNING_KINDS \
        else logging.DEBUG if kind in _QUIET_KINDS else logging.INFO
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, kind, extra={"fields": fields})


def exchange(done: ExchangeDone) -> None:
    """One CALL answered: counted, timed and (when enabled) traced; a log line at debug level only."""
    TELEMETRY.exchange(done)
    if LOGGER.isEnabledFor(logging.DEBUG):
        LOGGER.debug("exchange", extra={"fields": {"identity": done.identity, "origin": done.origin,
                                                    "action": done.action, "message_id": done.message_id,
                                                    "outcome": done.outcome, "peers": done.peers,
                                                    "seconds": round(done.ended - done.started, 6)}})


def frame(identity: str, direction: str, text: str) -> None:
    """Full frames, for the identities an operator switched debugging on for (``debug_identities``)."""
    if identity in TELEMETRY.debug_identities:
        LOGGER.info("frame", extra={"fields": {"identity": identity, "direction": direction, "frame": text}})


# --- metrics and traces ------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """The instruments. A fresh instance counts into an SDK provider with no reader until ``setup`` runs."""

    provider: MeterProvider = field(default_factory=MeterProvider)
    tracer: Tracer | None = None
    tracer_provider: TracerProvider | None = None
    debug_identities: frozenset[str] = frozenset()
    gauges: dict[str, Callable[[], Iterable[tuple[float, dict[str, str]]]]] = field(default_factory=dict)
    sessions_open: int = 0  # charger sessions open now, and closed since start (io/memory.py reads them)
    sessions_closed: int = 0

    def __post_init__(self) -> None:
        # Events are counted in a plain dict and reported by an observable counter when metrics are collected:
        # an OpenTelemetry Counter.add costs ~10 us (attribute cleaning, aggregation lookup), too much for an
        # event a flooding peer produces thousands of times a second (issue 5). Survives rebuild().
        self._event_counts: dict[str, int] = {}
        self._exchange_counts: dict[tuple[str, str, str], int] = {}  # the same for every exchange (~2.5 us saved)
        self._instruments()

    def rebuild(self, provider: MeterProvider, tracer_provider: TracerProvider | None,
                debug_identities: frozenset[str]) -> None:
        """Point the same object (everyone holds it) at new exporters."""
        self.provider, self.tracer_provider, self.debug_identities = provider, tracer_provider, debug_identities
        self.tracer = tracer_provider.get_tracer("ocpp_bridge", __version__) if tracer_provider else None
        self._instruments()

    def flush(self) -> None:
        """Export what is pending (at shutdown, so a SIGTERM loses no span or metric)."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        self.provider.force_flush()

    def _instruments(self) -> None:
        meter = self.provider.get_meter("ocpp_bridge", __version__)
        self.chargers = meter.create_up_down_counter(
            "ocpp_bridge.chargers.connected", description="Connected chargers by protocol and security profile")
        meter.create_observable_counter(
            "ocpp_bridge.exchanges", [self._observe_exchanges], description="Completed CALL exchanges by origin, "
            "action and outcome (translated, synthesized, refused, invalid, failed)")
        self.exchange_seconds = meter.create_histogram(
            "ocpp_bridge.exchange.duration", unit="s", description="From a CALL's arrival to its answer")
        meter.create_observable_counter("ocpp_bridge.events", [self._observe_events],
                                        description="Bridge events by kind")
        self.upstream_links = meter.create_up_down_counter(
            "ocpp_bridge.upstream.connected", description="Open upstream (CSMS) connections")
        meter.create_observable_gauge("ocpp_bridge.queue.depth", [self._observe("queue_depth")],
                                      description="Messages acknowledged to chargers, not yet accepted by the CSMS")
        meter.create_observable_gauge("ocpp_bridge.queue.oldest_age", [self._observe("queue_age")], unit="s",
                                      description="Age of the oldest queued message")
        meter.create_observable_gauge("ocpp_bridge.ledger.open_transactions", [self._observe("ledger")],
                                      description="Open transactions of connected chargers")

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            source = self.gauges.get(name)
            return [Observation(value, attrs) for value, attrs in source()] if source else []

        return callback

    def _observe_exchanges(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {"origin": origin, "action": action, "outcome": outcome})
                for (origin, action, outcome), count in list(self._exchange_counts.items())]

    def _observe_events(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {"kind": kind}) for kind, count in list(self._event_counts.items())]

    def count_event(self, kind: str, fields: dict[str, Any]) -> None:
        self._event_counts[kind] = self._event_counts.get(kind, 0) + 1
        if kind in ("upstream.lost", "route.link_released"):
            self.upstream_links.add(-1)
        elif kind == "upstream.restored":
            self.upstream_links.add(1)

    def session(self, opened: bool, protocol: str, profile: str = "0") -> None:
        delta = 1 if opened else -1
        self.sessions_open += delta
        self.sessions_closed += 0 if opened else 1
        self.chargers.add(delta, {"protocol": protocol, "security_profile": profile})
        self.upstream_links.add(delta)

    def exchange(self, done: ExchangeDone) -> None:
        key = (done.origin, done.action, done.outcome)
        self._exchange_counts[key] = self._exchange_counts.get(key, 0) + 1
        self.exchange_seconds.record(max(0.0, done.ended - done.started),
                                     {"origin": done.origin, "action": done.action})
        if self.tracer is not None:
            self._span(done)

    def _span(self, done: ExchangeDone) -> None:
        assert self.tracer is not None
        span = self.tracer.start_span(f"{done.origin} {done.action}", start_time=int(done.started * 1e9))
        span.set_attributes({
            "ocpp.identity": done.identity,
            "ocpp.action": done.action,
            "ocpp.outcome": done.outcome,
            "ocpp.origin": done.origin,
            "ocpp.message_id": done.message_id,
            "ocpp.peer.message_ids": [peer_id for peer_id, _ in done.peers],
            "ocpp.peer.actions": [action for _, action in done.peers],
            "ocpp.version": done.version,
            "ocpp.peer.version": done.peer_version,
        })
        span.end(end_time=int(done.ended * 1e9))


TELEMETRY = Telemetry()


def setup(metrics_listen: tuple[str, int] | None = None, traces: bool = False,
          span_exporter: SpanExporter | None = None, debug_identities: Iterable[str] = ()) -> Telemetry:
    """Wire exporters once at start-up: Prometheus on ``metrics_listen``, OTLP when OTEL_EXPORTER_OTLP_* is set,
    spans when ``traces`` (to ``span_exporter``, else OTLP)."""
    readers: list[MetricReader] = []
    if metrics_listen is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        readers.append(PrometheusMetricReader())
        start_http_server(metrics_listen[1], metrics_listen[0])
    if _otlp_configured("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "ocpp-bridge"),
                                "service.version": __version__})
    provider = MeterProvider(resource=resource, metric_readers=readers)
    otel_metrics.set_meter_provider(provider)
    tracer_provider = None
    if traces:
        tracer_provider = TracerProvider(resource=resource)
        exporter = span_exporter or _otlp_span_exporter()
        if exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    TELEMETRY.rebuild(provider, tracer_provider, frozenset(debug_identities))
    return TELEMETRY


def _otlp_configured(signal: str) -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def _otlp_span_exporter() -> SpanExporter | None:
    if not _otlp_configured("TRACES"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
