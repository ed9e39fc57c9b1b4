"""Field conversions shared by the translation families: time, id tokens, EVSE addressing, meter values.

Why this exists: the same few shapes (a timestamp, an idTag, a SampledValue, a connector) appear in many
messages; converting them in one place keeps every message consistent and keeps the strict-CSMS rules
(RFC 3339 UTC with at most millisecond precision, token types consistent with the token's format) in force
everywhere.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .session import TranslatingSession

MAX_V16_ID_TAG = 20  # 1.6 IdToken is CiString20

# --- time ---------------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """UTC, 'Z', at most millisecond precision: what the strictest CSMS accepts."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def timestamp(value: str) -> str:
    """Normalise a charger's own timestamp (validated as date-time by the schema) to :func:`rfc3339`."""
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:  # the schema requires an offset; be lenient if validation was relaxed
        parsed = parsed.replace(tzinfo=UTC)
    return rfc3339(parsed)


def epoch(now: float) -> str:
    """The bridge's receive time, for fields 2.0.1 requires and the charger did not give."""
    return rfc3339(datetime.fromtimestamp(now, UTC))


def timestamp_or(value: str | None, now: float) -> str:
    """The charger's timestamp when it gave one, else the receive time (for fields 2.0.1 requires)."""
    return timestamp(value) if value else epoch(now)


# --- id tokens ----------------------------------------------------------------------------------------


def id_token(session: TranslatingSession, id_tag: str) -> dict[str, Any]:
    """A 1.6 idTag as a 2.0.1 IdTokenType; a token the CSMS itself sent keeps the type the CSMS gave it."""
    token_type = session.meta.token_types.get(id_tag) or session.settings.token_type(id_tag)
    return {"idToken": id_tag, "type": token_type}


# 2.0.1 AuthorizationStatusEnumType -> 1.6 AuthorizationStatus (mapping reference §3.1).
_AUTH_STATUS: Final = {
    "Accepted": "Accepted",
    "Blocked": "Blocked",
    "Expired": "Expired",
    "Invalid": "Invalid",
    "ConcurrentTx": "ConcurrentTx",
}


def id_tag_info(info: dict[str, Any]) -> dict[str, Any]:
    """2.0.1 IdTokenInfoType -> 1.6 IdTagInfo. Statuses 1.6 lacks (Unknown, NoCredit, ...) become Invalid."""
    result: dict[str, Any] = {"status": _AUTH_STATUS.get(info["status"], "Invalid")}
    if "cacheExpiryDateTime" in info:
        result["expiryDate"] = info["cacheExpiryDateTime"]
    group = info.get("groupIdToken", {}).get("idToken")
    if group and len(group) <= MAX_V16_ID_TAG:
        result["parentIdTag"] = group
    return result


# --- EVSE addressing ----------------------------------------------------------------------------------
# Default topology (mapping reference §1): 1.6 connectorId c <-> EVSE c, connector 1; connectorId 0 = station.


def evse_of(connector_id: int) -> dict[str, int]:
    return {"id": connector_id, "connectorId": 1}


def connector_of(evse_id: int, connector_id: int | None = None) -> int | None:
    """The 1.6 connectorId of an EVSE (and connector); ``None`` if it cannot exist on a 1.6 charger."""
    if connector_id is not None and connector_id != 1:
        return None
    return evse_id


# --- meter values -------------------------------------------------------------------------------------

# Units the 1.6 schemas allow whose 2.0.1 spelling differs (1.6-J errata §2.1; ``Hertz`` is in the ocpp package).
_UNITS: Final = {"Celcius": "Celsius", "Hertz": "Hz"}
# 1.6 measurands with no 2.0.1/2.1 MeasurandEnumType value (mapping reference §3.5).
UNMAPPED_MEASURANDS: Final = frozenset({"Temperature", "RPM"})
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**64 - 1


_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _number(text: str) -> int | float | None:
    if not _DECIMAL.fullmatch(text):
        return None
    try:
        whole = int(text)
    except ValueError:
        pass
    else:
        # orjson writes integers of at most 64 bits; a longer one would fail when the frame is serialized
        # (after its seqNo was spent and with the CSMS lane left busy), so it travels as a float instead.
        if _MIN_INT <= whole <= _MAX_INT:
            return whole
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sampled_value(session: TranslatingSession, sample: dict[str, Any]) -> dict[str, Any] | None:
    """1.6 SampledValue -> 2.0.1 SampledValueType, or ``None`` (with an Emit) when 2.0.1 cannot carry it."""
    measurand = sample.get("measurand", "Energy.Active.Import.Register")
    if measurand in UNMAPPED_MEASURANDS:
        # 2.0.1 has no such measurand; sending it without one would read as an energy register. Keep a trace.
        session.emit("meter.unmapped", measurand=measurand, value=sample["value"], unit=sample.get("unit"))
        return None
    number = _number(sample["value"])
    if number is None or sample.get("format") == "SignedData":
        session.emit("meter.unmapped", measurand=measurand, reason="signed or non-numeric value")
        return None
    result: dict[str, Any] = {"value": number}
    for name in ("context", "measurand", "phase", "location"):
        if name in sample:
            result[name] = sample[name]
    if "unit" in sample:
        result["unitOfMeasure"] = {"unit": _UNITS.get(sample["unit"], sample["unit"])}
    return result


def meter_values(session: TranslatingSession, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """1.6 MeterValue[] -> 2.0.1 MeterValueType[], keeping the charger's own timestamps."""
    result = []
    for value in values:
        samples = [s for s in (sampled_value(session, raw) for raw in value["sampledValue"]) if s is not None]
        if samples:
            result.append({"timestamp": timestamp(value["timestamp"]), "sampledValue": samples})
    return result


def register_sample(stamp: str, watt_hours: int, context: str) -> dict[str, Any]:
    """The Energy.Active.Import.Register reading of a 1.6 meterStart / meterStop (integer Wh)."""
    return {
        "timestamp": stamp,
        "sampledValue": [{
            "value": watt_hours,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }],
    }
