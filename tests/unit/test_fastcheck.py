"""core/fastcheck.py: the msgspec types compiled from the OCA schemas accept only what fastjsonschema accepts, and
``validate.check`` answers exactly as it did without them."""

from __future__ import annotations

import copy
import math
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocpp_bridge.core import fastcheck, validate
from ocpp_bridge.core.rpc import ErrorCode, Version

V16, V201, V21 = Version.V16, Version.V201, Version.V21


def _cases(*versions: Version) -> list[tuple[Version, str, bool]]:
    return [(version, action, response) for version in versions for action in sorted(validate.actions(version))
            for response in (False, True) if validate._schema(version, action, response) is not None]


def _fast_accepts(version: Version, action: str, response: bool, payload: Any) -> bool:
    fast = validate._fast_type(version, action, response)
    assert fast is not None
    try:
        msgspec.convert(payload, fast, strict=True)
    except (msgspec.ValidationError, ValueError):  # ValueError: e.g. Decimal("sNaN") for a float (check has both)
        return False
    return True


def _slow_accepts(version: Version, action: str, response: bool, payload: Any) -> bool:
    validator = validate._validator(version, action, response)
    assert validator is not None
    try:
        validator(payload)
    except Exception:  # any failure of the reference validator counts as a rejection
        return False
    return True


def _slow_check(version: Version, action: str, payload: Any, *, response: bool) -> validate.Violation | None:
    with mock.patch.object(validate, "_fast_type", return_value=None):
        return validate.check(version, action, payload, response=response)


# ---------------------------------------------------------------------------------------------- which schemas


def test_how_many_schemas_have_a_fast_type() -> None:
    counts = {}
    for version in (V16, V201, V21):
        cases = _cases(version)
        counts[version] = (sum(validate._fast_type(*case) is not None for case in cases), len(cases))
    # 1.6: multipleOf (charging schedule limits) and format uri (firmware/diagnostics locations) stay slow
    assert counts[V16] == (73, 78)
    assert counts[V201] == (128, 128)
    assert counts[V21] == (181, 181)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 0.1}}},
    {"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
    {"type": "object", "properties": {"a": {"type": ["string", "null"]}}},
    {"type": "object", "properties": {"a": {"enum": [1, 2]}}},
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a"}}},
    {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
    {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
    {"type": "object", "properties": {"a": {"type": "object", "minProperties": 1}}},
    {"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}},
    {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}}},
    {"type": "object", "properties": {"a": {"type": "number", "maximum": 2.0**60}}},
    {"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}},
    {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}},
     "definitions": {"A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/A"}}}}},
    {"type": "object", "properties": {"a": {"$ref": "#/definitions/A", "maxLength": 3}},
     "definitions": {"A": {"type": "string"}}},
    {"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}}},
    {"type": "array", "items": {"type": "string"}},
])
def test_anything_not_understood_has_no_fast_type(schema: dict[str, Any]) -> None:
    assert fastcheck.compile_schema(schema) is None


# ---------------------------------------------------------------------------------- the hot path takes the fast one

_STAMP = "2024-05-06T07:08:09.123Z"
_SAMPLES = [{"value": "1234.5", "context": "Sample.Periodic", "measurand": measurand, "unit": unit,
             "location": "Outlet", **({"phase": phase} if phase else {})}
            for measurand, unit, phase in [("Energy.Active.Import.Register", "Wh", None), ("Power.Active.Import", "W",
                                           None), ("Current.Import", "A", "L1"), ("Current.Import", "A", "L2"),
                                           ("Current.Import", "A", "L3"), ("Voltage", "V", "L1-N"),
                                           ("Voltage", "V", "L2-N"), ("Voltage", "V", "L3-N"), ("SoC", "Percent", None),
                                           ("Temperature", "Celsius", "N")]]
_ID_TAG_INFO = {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"}
_HOT: list[tuple[Version, str, bool, dict[str, Any]]] = [
    (V16, "MeterValues", False, {"connectorId": 1, "transactionId": 42,
                                 "meterValue": [{"timestamp": _STAMP, "sampledValue": _SAMPLES}]}),
    (V16, "MeterValues", True, {}),
    (V16, "StatusNotification", False, {"connectorId": 1, "errorCode": "NoError", "status": "Charging",
                                        "timestamp": "2024-05-06T07:08:09Z"}),
    (V16, "StatusNotification", True, {}),
    (V16, "Heartbeat", False, {}),
    (V16, "Heartbeat", True, {"currentTime": "2024-05-06T07:08:09.123456+02:00"}),
    (V16, "StartTransaction", False, {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 0,
                                      "timestamp": _STAMP, "reservationId": 7}),
    (V16, "StartTransaction", True, {"transactionId": 42, "idTagInfo": _ID_TAG_INFO}),
    (V16, "StopTransaction", False, {"transactionId": 42, "idTag": "04A1B2C3", "meterStop": 12345,
                                     "timestamp": _STAMP, "reason": "Local",
                                     "transactionData": [{"timestamp": _STAMP, "sampledValue": _SAMPLES[:2]}]}),
    (V16, "StopTransaction", True, {"idTagInfo": _ID_TAG_INFO}),
    (V16, "BootNotification", False, {"chargePointVendor": "Acme", "chargePointModel": "X1",
                                      "firmwareVersion": "1.2.3", "chargePointSerialNumber": "SN1"}),
    (V16, "BootNotification", True, {"status": "Accepted", "currentTime": _STAMP, "interval": 300}),
    (V16, "Authorize", False, {"idTag": "04A1B2C3"}),
    (V16, "Authorize", True, {"idTagInfo": {"status": "Accepted", "parentIdTag": "P1"}}),
    (V201, "TransactionEvent", False, {
        "eventType": "Updated", "timestamp": _STAMP, "triggerReason": "MeterValuePeriodic", "seqNo": 3,
        "transactionInfo": {"transactionId": "tx-42", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
        "meterValue": [{"timestamp": _STAMP, "sampledValue": [
            {"value": 1234.5, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
            {"value": 16, "measurand": "Current.Import", "phase": "L1", "location": "Outlet"}]}]}),
    (V201, "TransactionEvent", True, {"totalCost": 1.5, "chargingPriority": 0,
                                      "idTokenInfo": {"status": "Accepted"}}),
    (V201, "StatusNotification", False, {"timestamp": _STAMP, "connectorStatus": "Occupied", "evseId": 1,
                                         "connectorId": 1}),
    (V201, "StatusNotification", True, {}),
    (V201, "Heartbeat", False, {}),
    (V201, "Heartbeat", True, {"currentTime": _STAMP}),
    (V201, "GetVariables", False, {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}),
    (V201, "GetVariables", True, {"getVariableResult": [
        {"attributeStatus": "Accepted", "attributeValue": "300", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]}),
    (V201, "BootNotification", False, {"reason": "PowerUp", "chargingStation": {
        "model": "X1", "vendorName": "Acme", "firmwareVersion": "1.2.3"}}),
    (V201, "BootNotification", True, {"currentTime": _STAMP, "interval": 300, "status": "Accepted"}),
    (V201, "MeterValues", False, {"evseId": 1, "meterValue": [{"timestamp": _STAMP, "sampledValue": [
        {"value": 230.1, "measurand": "Voltage", "phase": "L1-N"}]}]}),
]


@pytest.mark.parametrize(("version", "action", "response", "payload"), _HOT,
                         ids=[f"{v.name}-{a}{'Response' if r else ''}" for v, a, r, _ in _HOT])
def test_hot_schemas_take_the_fast_path(version: Version, action: str, response: bool,
                                        payload: dict[str, Any]) -> None:
    assert validate._fast_type(version, action, response) is not None
    assert _fast_accepts(version, action, response, payload)
    before = copy.deepcopy(payload)
    with mock.patch.object(validate, "_validator", side_effect=AssertionError("slow path taken")):
        assert validate.check(version, action, payload, response=response) is None
    assert payload == before


def _meter_values(**changes: Any) -> dict[str, Any]:
    sample = {**_SAMPLES[0], **changes}
    return {"connectorId": 1, "meterValue": [{"timestamp": _STAMP, "sampledValue": [sample]}]}


_INVALID: list[tuple[Version, str, bool, Any, ErrorCode]] = [
    (V16, "MeterValues", False, _meter_values(measurand="Energy"), ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, _meter_values(value=1234.5), ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, _meter_values(unit=None), ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, _meter_values(extra=1), ErrorCode.FORMAT_VIOLATION),
    (V16, "MeterValues", False, {"connectorId": 1, "meterValue": []}, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, {"meterValue": [{"timestamp": _STAMP, "sampledValue": _SAMPLES}]},
     ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, {"connectorId": True, "meterValue": [{"timestamp": _STAMP, "sampledValue": []}]},
     ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V16, "MeterValues", False, {"connectorId": 1, "meterValue": [{"timestamp": "2024-02-30T00:00:00Z",
                                                                    "sampledValue": _SAMPLES}]},
     ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "StatusNotification", False, {"connectorId": 1, "errorCode": "NoError", "status": "charging"},
     ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "StatusNotification", False, {"connectorId": 1.0, "errorCode": "NoError", "status": "Charging"},
     ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V16, "Heartbeat", False, {"x": 1}, ErrorCode.FORMAT_VIOLATION),
    (V16, "Heartbeat", True, {"currentTime": "2024-01-01T00:00:60Z"}, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "Heartbeat", True, {"currentTime": "2024-01-01T00:00:00Z\n"}, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "Heartbeat", True, [], ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V16, "Authorize", False, {"idTag": "x" * 21}, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V16, "Authorize", False, {}, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    (V16, "BootNotification", True, {"status": "Accepted", "currentTime": _STAMP, "interval": "300"},
     ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V201, "TransactionEvent", False, {"eventType": "Updated", "timestamp": _STAMP, "triggerReason": "Bogus",
                                       "seqNo": 3, "transactionInfo": {"transactionId": "t"}},
     ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V201, "TransactionEvent", False, {"eventType": "Updated", "timestamp": _STAMP, "triggerReason": "Authorized",
                                       "seqNo": 3, "transactionInfo": {"transactionId": "t" * 37}},
     ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (V201, "TransactionEvent", True, {"totalCost": "1.5"}, ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    (V201, "GetVariables", False, {"getVariableData": []}, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    (V201, "StatusNotification", False, {"timestamp": _STAMP, "connectorStatus": "Occupied", "evseId": 1,
                                         "connectorId": 1, "customData": {}},
     ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
]


@pytest.mark.parametrize(("version", "action", "response", "payload", "code"), _INVALID)
def test_violations_are_the_same_as_without_the_fast_path(version: Version, action: str, response: bool,
                                                          payload: Any, code: ErrorCode) -> None:
    before = copy.deepcopy(payload)
    violation = validate.check(version, action, payload, response=response)
    assert violation is not None
    assert violation.code is code
    assert violation == _slow_check(version, action, payload, response=response)
    assert payload == before


def test_a_payload_only_the_slow_path_accepts_is_still_valid() -> None:
    # fastcheck's date-time pattern leaves out 29 February, lower-case t/z and far years: fastjsonschema decides
    for stamp in ("2024-02-29T00:00:00Z", "2024-01-01t00:00:00z", "0999-01-01T00:00:00Z"):
        assert not _fast_accepts(V16, "Heartbeat", True, {"currentTime": stamp})
        assert validate.check(V16, "Heartbeat", {"currentTime": stamp}, response=True) is None


# ------------------------------------------------------------------------------------------------- date-time

_BAD_STAMPS = [
    "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-13-01T00:00:00Z",
    "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z",
    "2024-01-01T00:00:60Z", "2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00", "2024-01-01T00:00:00Z\n", "2024-01-01T00:00:00\nZ", "\n2024-01-01T00:00:00Z",
    "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60",
    "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00,5Z", "2024-01-01T00:00Z", "24-01-01T00:00:00Z",
    "2024-1-01T00:00:00Z", "２０２４-01-01T00:00:00Z", "2024-01-01T00:00:00+1:00", "2024-01-01T00:00:00UTC",
    "2024-01-01T00:00:00.1234567890Z", "2024-01-01T00:00:00+01", " 2024-01-01T00:00:00Z", "",
]


@pytest.mark.parametrize("stamp", _BAD_STAMPS)
def test_the_date_time_pattern_rejects_bad_timestamps(stamp: str) -> None:
    if fastcheck.DATE_TIME_PATTERN.search(stamp):
        assert validate._date_time(stamp), stamp  # only where the slow path would accept it too


def _stamp_text(moment: datetime, fraction: int, zone: str, sep: str) -> str:
    text = moment.strftime("%Y-%m-%d") + sep + moment.strftime("%H:%M:%S")
    if fraction:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond:06d}"[:fraction]
    return text + zone


_ZONES = st.one_of(
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+14:00", "+0530", "+05", ""]),
    st.builds(lambda sign, h, m, colon: f"{sign}{h:02d}{':' if colon else ''}{m:02d}", st.sampled_from("+-"),
              st.integers(0, 25), st.integers(0, 61), st.booleans()),
)
_STAMPS = st.one_of(
    st.builds(_stamp_text, st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
              st.integers(0, 12), _ZONES, st.sampled_from(["T", "T", "t", " ", "x"])),
    st.builds(lambda y, mo, d, h, mi, s, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{z}",
              st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
              st.integers(0, 61), st.integers(0, 61), _ZONES),
    st.sampled_from(_BAD_STAMPS),
)


@settings(max_examples=2000, deadline=None)
@given(stamp=_STAMPS, suffix=st.sampled_from(["", "", "\n", " ", "Z", "0"]))
def test_the_date_time_pattern_admits_only_what_the_slow_path_admits(stamp: str, suffix: str) -> None:
    stamp += suffix
    if fastcheck.DATE_TIME_PATTERN.search(stamp):
        assert validate._date_time(stamp), stamp


def test_the_date_time_pattern_admits_the_usual_timestamps() -> None:
    now = datetime(2026, 11, 24, 5, 30, 25, 123456, tzinfo=UTC)
    for moment in (now, now.astimezone(timezone(timedelta(hours=-5))), now.replace(microsecond=0)):
        assert fastcheck.DATE_TIME_PATTERN.search(moment.isoformat())
    assert fastcheck.DATE_TIME_PATTERN.search("2026-11-24T05:30:25.123Z")


# --------------------------------------------------------------------------------- differential property test

_TEXT = st.characters(codec="utf-8", exclude_categories=["Cs"])
_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.just(5.0), st.just(-0.0),
    st.text(_TEXT, max_size=4), st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(string.ascii_letters, max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()), st.decimals(allow_nan=False, places=2),
)


def _sized(length: int) -> st.SearchStrategy[str]:
    """Strings of exactly ``length`` code points (a few random ones, then one repeated: maxLength may be 10000)."""
    return st.tuples(st.text(_TEXT, max_size=min(length, 5)), _TEXT).map(
        lambda parts: parts[0] + parts[1] * (length - len(parts[0])))


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[1]]
    return node


def _strategy(node: dict[str, Any], definitions: dict[str, Any], mode: int) -> st.SearchStrategy[Any]:
    """Instances of ``node``: mode 0 aims at valid ones, 1 adds values of the right type just outside the limits,
    2 adds values of the wrong type, nulls, extra and missing keys."""
    node = _resolve(node, definitions)
    good, edge = _leaf(node, definitions, mode)
    options = [good]
    if mode >= 1 and edge is not None:
        options.append(edge)
    if mode >= 2:
        options.append(_JUNK)
    return st.one_of(*options) if len(options) > 1 else good


def _leaf(node: dict[str, Any], definitions: dict[str, Any],
          mode: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any] | None]:
    kind = node.get("type")
    if "enum" in node:
        members = node["enum"]
        wrong = st.one_of(st.sampled_from([m.lower() for m in members] + [m + " " for m in members] + [""]),
                          st.text(_TEXT, max_size=8))
        return st.sampled_from(members), wrong
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength")
        if node.get("format") == "date-time":
            return st.one_of(st.just(_STAMP), _STAMPS), st.sampled_from(_BAD_STAMPS)
        size = 30 if high is None else high
        good = st.one_of(st.text(_TEXT, min_size=low, max_size=min(size, 40)),
                         _sized(size) if high is not None else st.nothing())
        edge = _sized(size + 1) if high is not None else None
        return good, edge
    if kind in ("integer", "number"):
        low = node.get("minimum", -(2**40))
        high = node.get("maximum", 2**40)
        ints = st.integers(math.ceil(low), math.floor(high))
        edge_values = [low - 1, high + 1, low - 0.5, high + 0.5, float("nan"), float("inf"), -float("inf"),
                       2**64, -(2**64), 2**63]
        if kind == "integer":
            return ints, st.one_of(st.sampled_from(edge_values), st.just(float(math.ceil(low))), st.just(True))
        floats = st.floats(low, high, allow_nan=False)
        return st.one_of(ints, floats, st.sampled_from([low, high])), st.one_of(
            # no Decimal NaN: fastjsonschema raises decimal.InvalidOperation comparing it with a bound, which
            # check does not catch (not JSON: orjson never makes a Decimal; the same with and without fastcheck)
            st.sampled_from(edge_values), st.just(False), st.decimals(allow_nan=False))
    if kind == "boolean":
        return st.booleans(), st.sampled_from([0, 1, "true"])
    if kind == "array":
        item = _strategy(node["items"], definitions, mode)
        low, high = node.get("minItems", 0), node.get("maxItems")
        good = st.lists(item, min_size=low, max_size=min(high or 3, 3))
        edge = st.one_of(st.lists(item, max_size=max(low - 1, 0)),
                         st.lists(item, min_size=high + 1, max_size=high + 2) if high is not None else st.nothing(),
                         st.lists(item, max_size=2).map(tuple))
        return good, edge
    if kind == "object" or "properties" in node:
        properties = node.get("properties", {})
        required = set(node.get("required", []))
        subs = {name: _strategy(sub, definitions, mode) for name, sub in properties.items()}
        good = st.fixed_dictionaries({name: subs[name] for name in properties if name in required},
                                     optional={name: subs[name] for name in properties if name not in required})
        extras = st.sampled_from(["f0", "f1", "__struct_fields__", "customdata", *properties, "x y", "class"])

        def mutate(payload: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
            options = [st.builds(lambda key, value: {**payload, key: value}, extras, _JUNK)]
            if payload:
                keys = sorted(payload)
                options.append(st.sampled_from(keys).map(lambda key: {k: v for k, v in payload.items() if k != key}))
                options.append(st.sampled_from(keys).map(lambda key: {**payload, key: None}))
            return st.one_of(*options)

        return good, good.flatmap(mutate)
    return _JUNK, None  # {}: anything goes


def _differential(version: Version, action: str, response: bool, payload: Any) -> bool:
    fast = _fast_accepts(version, action, response, payload)
    if fast:
        assert _slow_accepts(version, action, response, payload), (version, action, response, payload)
    before = copy.deepcopy(payload)
    answer = validate.check(version, action, payload, response=response)
    assert answer == _slow_check(version, action, payload, response=response)
    assert repr(payload) == repr(before)  # repr: nan != nan
    return fast


def _schema_strategy(version: Version, action: str, response: bool) -> st.SearchStrategy[Any]:
    schema = validate._schema(version, action, response)
    assert schema is not None
    definitions = schema.get("definitions", {})
    return st.integers(0, 2).flatmap(lambda mode: _strategy(schema, definitions, mode))


_FAST_CASES = [case for case in _cases(V16, V201, V21) if validate._fast_type(*case) is not None]


@pytest.mark.parametrize(("version", "action", "response"), _FAST_CASES,
                         ids=[f"{v.name}-{a}{'Response' if r else ''}" for v, a, r in _FAST_CASES])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_fast_accepts_only_what_the_schema_accepts(version: Version, action: str, response: bool,
                                                   data: st.DataObject) -> None:
    payload = data.draw(_schema_strategy(version, action, response))
    _differential(version, action, response, payload)


_HOT_CASES = list(dict.fromkeys((version, action, response) for version, action, response, _ in _HOT))


@pytest.mark.parametrize(("version", "action", "response"), _HOT_CASES,
                         ids=[f"{v.name}-{a}{'Response' if r else ''}" for v, a, r in _HOT_CASES])
def test_fast_accepts_only_what_the_schema_accepts_on_hot_schemas(version: Version, action: str,
                                                                   response: bool) -> None:
    accepted = 0

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(payload=_schema_strategy(version, action, response))
    def run(payload: Any) -> None:
        nonlocal accepted
        accepted += _differential(version, action, response, payload)

    run()
    assert accepted > 0  # the generated payloads do reach the fast path

