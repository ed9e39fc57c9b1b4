"""Signed meter values (mapping reference §3.5; OCA application note "Signed Meter Values in OCPP" §5.2): a 1.6
SignedData sample becomes the signedMeterValue of the plain reading it signs; a reading is never invented."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from ocpp_bridge.core import validate
from ocpp_bridge.core.convert import meter_values
from ocpp_bridge.core.rpc import Version
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
STAMP = "2024-05-01T10:15:00Z"
SMV = {"signedMeterData": "T0NNRnx7fQ==", "signingMethod": "ECDSA-secp256r1-SHA256", "encodingMethod": "OCMF",
       "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}


def _signed(value: Any, **fields: str) -> dict[str, Any]:
    return {"value": value if isinstance(value, str) else orjson.dumps(value).decode(), "format": "SignedData",
            **fields}


def _convert(upstream: Version, samples: list[dict[str, Any]],
             readings: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], Playbook]:
    pb = Playbook.translated(upstream)
    values = meter_values(pb.session, [{"timestamp": STAMP, "sampledValue": samples}], readings)
    if values:  # what the bridge would send is valid for the upstream version
        assert validate.check(upstream, "MeterValues", {"evseId": 1, "meterValue": values}, response=False) is None
    return values, pb


@BOTH
def test_the_app_note_json_is_attached_to_its_reading(upstream: Version) -> None:
    values, _ = _convert(upstream, [{"value": "1500", "context": "Sample.Clock", "unit": "Wh"},
                                    _signed(SMV, context="Sample.Clock", unit="Wh")])
    assert values == [{"timestamp": "2024-05-01T10:15:00.000Z", "sampledValue": [
        {"value": 1500, "context": "Sample.Clock", "unitOfMeasure": {"unit": "Wh"}, "signedMeterValue": SMV}]}]


@BOTH
def test_a_bare_ocmf_string_is_carried_base64_encoded(upstream: Version) -> None:
    ocmf = 'OCMF|{"FV":"1.0","RD":[{"RV":1.5,"RU":"kWh"}]}|{"SD":"3045"}'
    values, _ = _convert(upstream, [{"value": "1500"}, _signed(ocmf)])
    signed = values[0]["sampledValue"][0]["signedMeterValue"]
    assert base64.b64decode(signed["signedMeterData"]).decode() == ocmf
    assert signed["encodingMethod"] == "OCMF"
    if upstream is Version.V201:  # required in 2.0.1, carried inside the OCMF string
        assert (signed["signingMethod"], signed["publicKey"]) == ("", "")
    else:  # optional in 2.1: left out rather than empty
        assert set(signed) == {"signedMeterData", "encodingMethod"}


def test_hex_sml_is_recognised_as_edl() -> None:
    values, _ = _convert(Version.V201, [{"value": "12"}, _signed("1B1B1B1B01010101AABB")])
    signed = values[0]["sampledValue"][0]["signedMeterValue"]
    assert signed["encodingMethod"] == "EDL"
    assert base64.b64decode(signed["signedMeterData"]) == bytes.fromhex("1B1B1B1B01010101AABB")


def test_the_widespread_signed_meter_value_spelling_is_understood() -> None:
    variant = {"signedMeterValue": "b2NtZg==", "encodingMethod": "OCMF", "publicKey": ""}
    values, _ = _convert(Version.V201, [{"value": "3"}, _signed(variant)])
    assert values[0]["sampledValue"][0]["signedMeterValue"]["signedMeterData"] == "b2NtZg=="


def test_signatures_go_to_the_reading_with_the_same_measurand_phase_location_and_context() -> None:
    values, _ = _convert(Version.V201, [
        {"value": "230", "measurand": "Voltage", "phase": "L1-N"},
        {"value": "231", "measurand": "Voltage", "phase": "L2-N"},
        {"value": "9000", "location": "Outlet"},
        _signed(SMV, measurand="Voltage", phase="L2-N"),
        _signed({**SMV, "publicKey": "other"}, location="Outlet"),
    ])
    samples = values[0]["sampledValue"]
    assert ["signedMeterValue" in s for s in samples] == [False, True, True]
    assert samples[2]["signedMeterValue"]["publicKey"] == "other"


@pytest.mark.parametrize(("samples", "reason"), [
    ([_signed(SMV)], "signed value without a plain reading"),  # never a made-up reading
    ([{"value": "1", "measurand": "Power.Active.Import"}, _signed(SMV)], "signed value without a plain reading"),
    ([{"value": "1"}, _signed("gibberish")], "unrecognised or oversized signed data"),
    ([{"value": "1"}, _signed({"encodingMethod": "OCMF"})], "unrecognised or oversized signed data"),
    ([{"value": "1"}, _signed({**SMV, "signedMeterData": "A" * 2501})], "unrecognised or oversized signed data"),
    ([{"value": "1"}, _signed(SMV), _signed(SMV)], "signed value without a plain reading"),  # one per reading
])
def test_signatures_with_nothing_to_sign_are_left_out_with_a_trace(samples: list[dict[str, Any]],
                                                                  reason: str) -> None:
    _, pb = _convert(Version.V201, samples)
    pb.advance(0)
    traces = [e.fields for e in pb.emitted if e.kind == "meter.unmapped"]
    assert traces and traces[-1]["reason"] == reason


def test_2_1_takes_longer_signed_data() -> None:
    long_data = {**SMV, "signedMeterData": "A" * 5000}
    values, _ = _convert(Version.V21, [{"value": "1"}, _signed(long_data)])
    assert values[0]["sampledValue"][0]["signedMeterValue"]["signedMeterData"] == "A" * 5000


def test_a_known_register_reading_takes_a_lone_signature() -> None:
    values, _ = _convert(Version.V201, [_signed(SMV, context="Transaction.End", location="Outlet")],
                         readings={"Transaction.End": 12345})
    assert values[0]["sampledValue"] == [{"value": 12345, "context": "Transaction.End",
                                          "measurand": "Energy.Active.Import.Register",
                                          "unitOfMeasure": {"unit": "Wh"}, "location": "Outlet",
                                          "signedMeterValue": SMV}]


@BOTH
def test_signed_values_reach_the_csms_in_a_transaction_event(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    local_id, _ = pb.start()
    pb.charger_sends("MeterValues", {"connectorId": 1, "transactionId": local_id, "meterValue": [{
        "timestamp": STAMP, "sampledValue": [{"value": "1500", "unit": "Wh"}, _signed(SMV, unit="Wh")]}]})
    event = pb.csms_receives("TransactionEvent").payload  # the playbook validated it against the schema
    assert event["meterValue"][0]["sampledValue"][0]["signedMeterValue"] == SMV
