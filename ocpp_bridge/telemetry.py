"""Structured logs for what the core emits and what the shell does.

Why this exists: operators need one JSON line per session event and per error, with the charger identity and
message ids, and never a secret. Core ``Emit`` commands and shell events both come through here.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import orjson

LOGGER: Final = logging.getLogger("ocpp_bridge")
_WARNING_KINDS: Final = frozenset({"frame.invalid", "call.timeout", "transaction.unknown", "store.error",
                                   "transaction.duplicate_stop", "csms.rejected_result", "meter.unmapped"})
_ERROR_KINDS: Final = frozenset({"bug"})
_SECRET_FIELDS: Final = frozenset({"authorization", "password", "authorization_key", "token"})


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


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def event(kind: str, **fields: Any) -> None:
    level = logging.ERROR if kind in _ERROR_KINDS else logging.WARNING if kind in _WARNING_KINDS else logging.INFO
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, kind, extra={"fields": fields})
