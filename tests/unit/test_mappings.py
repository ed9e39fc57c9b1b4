"""The key-table loader: the packaged table is complete and sound, overrides apply, and a malformed file is
reported by file, line and field."""

from __future__ import annotations

import enum
import inspect
from pathlib import Path

import pytest
from ocpp.v201 import enums as v201_enums

from ocpp_bridge.core.devicemodel import VariableAddress
from ocpp_bridge.mappings import MappingError, load_key_table

# 1.6 edition 2 §9.1-9.4 plus errata 3.80/3.83/3.91, security whitepaper §7, PnC whitepaper, signed meter values.
CORE_KEYS = [
    "AllowOfflineTxForUnknownId", "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests", "BlinkRepeat",
    "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation", "ConnectorPhaseRotationMaxLength",
    "GetConfigurationMaxKeys", "HeartbeatInterval", "LightIntensity", "LocalAuthorizeOffline",
    "LocalPreAuthorize", "MaxEnergyOnInvalidId", "MessageTimeout", "MeterValuesAlignedData",
    "MeterValuesAlignedDataMaxLength", "MeterValuesSampledData", "MeterValuesSampledDataMaxLength",
    "MeterValueSampleInterval", "MinimumStatusDuration", "NumberOfConnectors", "ResetRetries",
    "StopTransactionMaxMeterValues", "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId",
    "StopTxnAlignedData", "StopTxnAlignedDataMaxLength", "StopTxnSampledData", "StopTxnSampledDataMaxLength",
    "SupportedFeatureProfiles", "SupportedFeatureProfilesMaxLength", "TransactionMessageAttempts",
    "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect", "WebSocketPingInterval",
]
PROFILE_KEYS = [
    "LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength",  # Local Auth List
    "ReserveConnectorZeroSupported",  # Reservation
    "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
    "ConnectorSwitch3to1PhaseSupported", "MaxChargingProfilesInstalled",  # Smart Charging
    "SupportedFileTransferProtocols",  # Firmware Management
    "AdditionalRootCertificateCheck", "AuthorizationKey", "CertificateSignedMaxChainSize",
    "CertificateStoreMaxLength", "CpoName", "SecurityProfile",  # security whitepaper
]

ROW = """
[[key]]
key = "{key}"
component = "{component}"
variable = "{variable}"
data_type = "integer"
mutability = "ReadWrite"
conversion = "integer"
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _controller_variables() -> dict[str, set[str]]:
    """2.0.1 controller component -> its standard variable names (from the ocpp package's enums)."""
    found: dict[str, set[str]] = {}
    for name, cls in inspect.getmembers(v201_enums, inspect.isclass):
        if name.endswith("CtrlrVariableName") and issubclass(cls, enum.Enum):
            found[name.removesuffix("VariableName")] = {str(member.value) for member in cls}
    return found


# --- the packaged table ---------------------------------------------------------------------------------------


def test_every_core_and_profile_key_is_mapped() -> None:
    table = load_key_table()
    missing = [key for key in CORE_KEYS + PROFILE_KEYS if key not in table.by_key]
    assert missing == []


def test_standard_addresses_name_real_2_0_1_variables() -> None:
    table = load_key_table()
    controllers = _controller_variables()
    for mapping in table.by_key.values():
        address = mapping.address
        if address.component == table.legacy_component:
            assert address.variable == mapping.key
            continue
        assert address.variable in controllers[address.component], mapping


@pytest.mark.parametrize(("key", "address", "data_type", "mutability", "conversion"), [
    ("HeartbeatInterval", VariableAddress("OCPPCommCtrlr", "HeartbeatInterval"), "integer", "ReadWrite", "integer"),
    ("TransactionMessageAttempts", VariableAddress("OCPPCommCtrlr", "MessageAttempts", None, "TransactionEvent"),
     "integer", "ReadWrite", "integer"),
    ("ChargingScheduleAllowedChargingRateUnit", VariableAddress("SmartChargingCtrlr", "RateUnit"), "MemberList",
     "ReadOnly", "rate_unit"),
    ("AuthorizeRemoteTxRequests", VariableAddress("AuthCtrlr", "AuthorizeRemoteStart"), "boolean", "ReadWrite",
     "boolean"),
    ("BlinkRepeat", VariableAddress("OCPP16LegacyCtrlr", "BlinkRepeat"), "integer", "ReadWrite", "integer"),
    ("AuthorizationKey", VariableAddress("OCPP16LegacyCtrlr", "AuthorizationKey"), "passwordString", "WriteOnly",
     "none"),
])
def test_packaged_rows(key: str, address: VariableAddress, data_type: str, mutability: str,
                       conversion: str) -> None:
    mapping = load_key_table().by_key[key]
    assert (mapping.address, mapping.data_type, mapping.mutability, mapping.conversion) == (
        address, data_type, mutability, conversion)


def test_conversions_round_trip() -> None:
    table = load_key_table()
    rate = table.by_key["ChargingScheduleAllowedChargingRateUnit"]
    assert table.to_v2(rate, "Current,Power") == "A,W"
    assert table.to_v16(rate, "W") == "Power"
    flag = table.by_key["LocalPreAuthorize"]
    assert (table.to_v2(flag, "TRUE"), table.to_v16(flag, "false"), table.to_v16(flag, "1")) == (
        "true", "false", None)


# --- overrides ------------------------------------------------------------------------------------------------


def test_an_override_directory_replaces_and_adds_rows(tmp_path: Path) -> None:
    _write(tmp_path, "vendor.toml", ROW.format(key="HeartbeatInterval", component="OCPP16LegacyCtrlr",
                                               variable="HeartbeatInterval")
           + ROW.format(key="AcmeFanSpeed", component="AcmeCtrlr", variable="FanSpeed"))
    _write(tmp_path, "notes.txt", "not a table")  # only *.toml files are read
    table = load_key_table(tmp_path)
    assert table.by_key["HeartbeatInterval"].address == VariableAddress("OCPP16LegacyCtrlr", "HeartbeatInterval")
    assert table.for_address(VariableAddress("OCPPCommCtrlr", "HeartbeatInterval")) is None
    assert table.for_address(VariableAddress("AcmeCtrlr", "FanSpeed")).key == "AcmeFanSpeed"  # type: ignore[union-attr]
    assert table.knows_component("AcmeCtrlr")
    assert len(table.by_key) == len(load_key_table().by_key) + 1


def test_an_override_can_rename_the_legacy_component(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", 'legacy_component = "AcmeLegacy"\n')
    table = load_key_table(tmp_path)
    assert table.legacy_component == "AcmeLegacy"
    assert table.by_key["BlinkRepeat"].address == VariableAddress("AcmeLegacy", "BlinkRepeat")


def test_an_empty_override_directory_changes_nothing(tmp_path: Path) -> None:
    assert load_key_table(tmp_path).by_key == load_key_table().by_key


# --- malformed files ------------------------------------------------------------------------------------------


def _error(tmp_path: Path, *files: tuple[str, str]) -> str:
    for name, text in files:
        _write(tmp_path, name, text)
    with pytest.raises(MappingError) as caught:
        load_key_table(tmp_path)
    return str(caught.value)


GOOD = ROW.format(key="AcmeA", component="AcmeCtrlr", variable="A")


@pytest.mark.parametrize(("row", "field", "why"), [
    ('data_type = "int"', "data_type", "Input should be 'string'"),
    ('mutability = "Writable"', "mutability", "Input should be 'ReadOnly'"),
    ('conversion = "celsius"', "conversion", "unknown conversion 'celsius'"),
    ('colour = "blue"', "colour", "Extra inputs are not permitted"),
    ("variable_instance = 3", "variable_instance", "Input should be a valid string"),
    ('unit = "kilowatt-hours-per-day"', "unit", "at most 16 characters"),
])
def test_a_bad_field_is_reported_by_file_line_and_field(tmp_path: Path, row: str, field: str, why: str) -> None:
    fields = {"data_type": 'data_type = "integer"', "mutability": 'mutability = "ReadWrite"'}
    fields[field] = row
    text = GOOD + '\n[[key]]\nkey = "AcmeB"\ncomponent = "AcmeCtrlr"\nvariable = "B"\n' + "\n".join(fields.values())
    message = _error(tmp_path, ("acme.toml", text))
    line = next(n for n, text_line in enumerate(text.splitlines(), 1) if text_line == row)
    assert message.startswith(f"{tmp_path / 'acme.toml'}:{line}: [[key]] #2 (key 'AcmeB'): field {field!r}: ")
    assert why in message


def test_a_missing_field_points_at_its_table(tmp_path: Path) -> None:
    text = GOOD + '\n[[key]]\nkey = "AcmeB"\ncomponent = "AcmeCtrlr"\nvariable = "B"\nmutability = "ReadOnly"\n'
    message = _error(tmp_path, ("acme.toml", text))
    header = [n for n, line in enumerate(text.splitlines(), 1) if line == "[[key]]"][1]
    assert message.startswith(f"{tmp_path / 'acme.toml'}:{header}: [[key]] #2 (key 'AcmeB'): field 'data_type': ")
    assert "Field required" in message


def test_a_bad_top_level_field(tmp_path: Path) -> None:
    message = _error(tmp_path, ("acme.toml", '# vendor table\nlegacy = "X"\n' + GOOD))
    assert message.startswith(f"{tmp_path / 'acme.toml'}:2: field 'legacy': Extra inputs are not permitted")


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    message = _error(tmp_path, ("broken.toml", GOOD + "\n[[key]\n"))
    assert message.startswith(f"{tmp_path / 'broken.toml'}: not valid TOML")
    assert "line 10" in message


def test_a_key_twice_in_one_file(tmp_path: Path) -> None:
    message = _error(tmp_path, ("acme.toml", GOOD + ROW.format(key="AcmeA", component="AcmeCtrlr", variable="C")))
    assert message == (f"{tmp_path / 'acme.toml'}:11: field 'key': 'AcmeA' is already mapped at "
                       f"{tmp_path / 'acme.toml'}:3")


def test_a_key_in_two_override_files(tmp_path: Path) -> None:
    message = _error(tmp_path, ("a.toml", GOOD), ("b.toml", GOOD))
    assert message == f"{tmp_path / 'b.toml'}:3: field 'key': 'AcmeA' is also overridden at {tmp_path / 'a.toml'}:3"


def test_two_keys_at_one_address(tmp_path: Path) -> None:
    message = _error(tmp_path, ("a.toml", ROW.format(key="AcmeInterval", component="OCPPCommCtrlr",
                                                     variable="HeartbeatInterval")))
    assert message.startswith(f"{tmp_path / 'a.toml'}:4: key 'AcmeInterval': field 'component': address "
                              "OCPPCommCtrlr.HeartbeatInterval is already used by key 'HeartbeatInterval' at ")
    assert "config_keys.toml:" in message


def test_a_legacy_row_must_use_its_key_as_variable(tmp_path: Path) -> None:
    message = _error(tmp_path, ("a.toml", ROW.format(key="AcmeA", component="OCPP16LegacyCtrlr", variable="B")))
    assert message.startswith(f"{tmp_path / 'a.toml'}:5: key 'AcmeA': field 'variable': rows under the legacy")


def test_a_conversion_must_fit_the_data_type(tmp_path: Path) -> None:
    text = GOOD.replace('conversion = "integer"', 'conversion = "boolean"')
    message = _error(tmp_path, ("a.toml", text))
    assert message == (f"{tmp_path / 'a.toml'}:8: key 'AcmeA': field 'conversion': conversion 'boolean' does not "
                       "fit data_type 'integer'")


def test_conflicting_legacy_components(tmp_path: Path) -> None:
    message = _error(tmp_path, ("a.toml", 'legacy_component = "A"\n'), ("b.toml", 'legacy_component = "B"\n'))
    assert message.startswith(f"{tmp_path / 'b.toml'}:1: field 'legacy_component': 'B' conflicts with 'A' from "
                              f"{tmp_path / 'a.toml'}:1")


def test_a_key_longer_than_1_6_allows(tmp_path: Path) -> None:
    message = _error(tmp_path, ("a.toml", ROW.format(key="K" * 51, component="AcmeCtrlr", variable="A")))
    assert f"{tmp_path / 'a.toml'}:3: [[key]] #1" in message
    assert "field 'key': String should have at most 50 characters" in message


def test_a_missing_override_directory(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not a directory"):
        load_key_table(tmp_path / "nope")
