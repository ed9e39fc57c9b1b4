"""Field conversions shared by the translation families: time, id tokens, EVSE addressing, meter values.

Why this exists: the same few shapes (a timestamp, an idTag, a SampledValue, a connector) appear in many
messages; converting them in one place keeps every message consistent and keeps the strict-CSMS rules
(RFC 3339 UTC with at most millisecond precision, token types consistent with the token's format) in force
everywhere.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from .rpc import Version

if TYPE_CHECKING:
    from .session import TranslatingSession

MAX_V16_ID_TAG = 20  # 1.6 IdToken is CiString20

# --- time ---------------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """UTC, 'Z', at most millisecond precision: what the strictest CSMS accepts."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# Already what rfc3339 writes (a four-digit year from 1000: strftime writes smaller years without zeros).
_RFC3339_MS: Final = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)


def timestamp(value: str) -> str:
    """Normalise a charger's own timestamp (validated as date-time by the schema) to :func:`rfc3339`."""
    if _RFC3339_MS.fullmatch(value):
        datetime.fromisoformat(value)  # still a real instant (raises like below if not)
        return value
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:  # the schema requires an offset; be lenient if validation was relaxed
        parsed = parsed.replace(tzinfo=UTC)
    return rfc3339(parsed)


def epoch(now: float) -> str:
    """The bridge's receive time, for fields 2.0.1 requires and the charger did not give."""
    return rfc3339(datetime.fromtimestamp(now, UTC))


def seconds(value: str) -> float:
    """Epoch seconds of a (schema-validated) date-time, to compare it with the session's clock."""
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


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
_REGISTER: Final = "Energy.Active.Import.Register"  # the default measurand (1.6 §7.31)
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**64 - 1


_COPIED: Final = ("context", "measurand", "phase", "location")  # same names and values in 1.6 and 2.0.1
_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _number(text: str) -> int | float | None:
    if text.isascii():
        if text.isdigit():
            if len(text) < 19:  # the common case: a plain Wh/W reading
                return int(text)
        elif text.replace(".", "", 1).isdigit():  # the other common case: "230.4", "5.", ".5" (ASCII digits only)
            value = float(text)
            return value if math.isfinite(value) else None
    if not _DECIMAL.fullmatch(text):
        return None
    if "." not in text and "e" not in text and "E" not in text:  # an integer (no exception raised for the rest)
        try:
            whole = int(text)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            pass
        else:
            # orjson writes integers of at most 64 bits; a longer one would fail when the frame is serialized
            # (after its seqNo was spent and with the CSMS lane left busy), so it travels as a float instead.
            if _MIN_INT <= whole <= _MAX_INT:
                return whole
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def sampled_value(session: TranslatingSession, sample: dict[str, Any]) -> dict[str, Any] | None:
    """1.6 Raw SampledValue -> 2.0.1 SampledValueType, or ``None`` (with an Emit) when 2.0.1 cannot carry it.
    SignedData samples are :func:`meter_values`' business: they sign a plain reading, they are not one."""
    measurand = sample.get("measurand", _REGISTER)
    if measurand in UNMAPPED_MEASURANDS:
        # 2.0.1 has no such measurand; sending it without one would read as an energy register. Keep a trace.
        session.emit("meter.unmapped", measurand=measurand, value=sample["value"], unit=sample.get("unit"))
        return None
    number = _number(sample["value"])
    if number is None or sample.get("format") == "SignedData":
        session.emit("meter.unmapped", measurand=measurand, reason="non-numeric value")
        return None
    result: dict[str, Any] = {"value": number}
    for name in _COPIED:
        if name in sample:
            result[name] = sample[name]
    unit = sample.get("unit")
    if unit is not None:
        result["unitOfMeasure"] = {"unit": _UNITS.get(unit, unit)}
    return result


def meter_values(session: TranslatingSession, values: list[dict[str, Any]],
                 readings: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """1.6 MeterValue[] -> 2.0.1 MeterValueType[], keeping the charger's own timestamps.

    A SignedData sample becomes the ``signedMeterValue`` of the plain sample it signs (same measurand, phase,
    location and context, in the same MeterValue). ``readings`` (context -> Wh) are register readings the caller
    knows from elsewhere (meterStart, meterStop): a signed Energy.Active.Import.Register of that context without a
    plain partner is attached to it. A signed value with no reading to attach to is never sent as a made-up one.
    """
    result = []
    for value in values:
        converted: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []  # the 1.6 sample behind each converted one (a signed value's partner)
        signed: list[dict[str, Any]] = []
        for raw in value["sampledValue"]:
            if raw.get("format") == "SignedData":
                signed.append(raw)
                continue
            sample = sampled_value(session, raw)
            if sample is not None:
                converted.append(sample)
                kept.append(raw)
        if signed:  # after every plain reading is converted, whatever the order they came in
            samples = list(zip(kept, converted, strict=True))
            for raw in signed:
                _attach_signed(session, raw, samples, readings or {})
            converted = [c for _, c in samples]
        if converted:
            result.append({"timestamp": timestamp(value["timestamp"]), "sampledValue": converted})
    return result


# --- signed meter values (OCA application note "Signed Meter Values in OCPP" v1.0 §5.2; reference §3.5) ---------

_SML_ESCAPE: Final = "1b1b1b1b"  # the SML transport escape that starts the EDL meters' data (hex in a 1.6 value)
_HEX: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)
# SignedMeterValueType length limits (2.0.1, 2.1). 2.0.1 requires all four fields, 2.1 only data and encoding.
_SIGNED_LIMITS: Final = {"signedMeterData": (2500, 32768), "signingMethod": (50, 50), "encodingMethod": (50, 50),
                         "publicKey": (2500, 2500)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _signed_fields(text: str) -> dict[str, Any] | None:
    """What a SignedData value holds: the app note's JSON SignedMeterValueType, or a bare OCMF / SML blob."""
    if text.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        return {"signedMeterData": data.get("signedMeterData", data.get("signedMeterValue")),  # a common variant
                "signingMethod": data.get("signingMethod", ""), "encodingMethod": data.get("encodingMethod"),
                "publicKey": data.get("publicKey", "")}
    if text.startswith("OCMF|"):  # legacy: the OCMF string itself (signingMethod and publicKey are inside it)
        return {"signedMeterData": _b64(text.encode()), "signingMethod": "", "encodingMethod": "OCMF",
                "publicKey": ""}
    if _HEX.fullmatch(text) and text.lower().startswith(_SML_ESCAPE):  # legacy: hex-encoded SML (EDL)
        return {"signedMeterData": _b64(bytes.fromhex(text)), "signingMethod": "", "encodingMethod": "EDL",
                "publicKey": ""}
    return None


def signed_meter_value(session: TranslatingSession, text: str) -> dict[str, str] | None:
    """A 1.6 SignedData value as the upstream version's SignedMeterValueType, or ``None`` if it cannot be one."""
    fields = _signed_fields(text)
    v21 = session.upstream is Version.V21
    if fields is None or not all(isinstance(v, str) and len(v) <= _SIGNED_LIMITS[k][v21] for k, v in fields.items()):
        return None
    if v21:  # optional in 2.1: an empty value says nothing
        fields = {k: v for k, v in fields.items() if v or k in ("signedMeterData", "encodingMethod")}
    return fields


def _reading(sample: dict[str, Any]) -> tuple[Any, ...]:
    """Which reading a 1.6 sample is about."""
    return (sample.get("measurand", _REGISTER), sample.get("phase"), sample.get("location"),
            sample.get("context", "Sample.Periodic"))


def _attach_signed(session: TranslatingSession, raw: dict[str, Any],
                   samples: list[tuple[dict[str, Any], dict[str, Any]]], readings: Mapping[str, int]) -> None:
    measurand = raw.get("measurand", _REGISTER)
    signed = signed_meter_value(session, raw["value"])
    if signed is None:
        session.emit("meter.unmapped", measurand=measurand, reason="unrecognised or oversized signed data")
        return
    key = _reading(raw)
    partner = next((c for r, c in samples if _reading(r) == key and "signedMeterValue" not in c), None)
    context = key[3]
    if partner is None and measurand == _REGISTER and context in readings:
        partner = {"value": readings[context], "context": context, "measurand": measurand,
                   "unitOfMeasure": {"unit": "Wh"}} | ({"location": raw["location"]} if "location" in raw else {})
        samples.append((raw, partner))
    if partner is None:
        session.emit("meter.unmapped", measurand=measurand, reason="signed value without a plain reading")
        return
    partner["signedMeterValue"] = signed


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
