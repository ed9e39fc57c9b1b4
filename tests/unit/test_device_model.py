"""The synthesized device model of a 1.6 charger (issue 3 items 1, 2 and 4; mapping reference §5.2, §5.3, §5.5).

The charger's configuration is fetched by the bridge itself (never shown to the CSMS), cached in ChargerMeta and
kept current; the bridge answers its own variables; vendor/model override tables apply per charger; GetVariables
always asks the charger; SetVariables round-trips, also through a restart (a session rebuilt from the persisted
ChargerMeta, as the store gives it back).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import enums as v16_enums
from ocpp.v201 import enums as v201_enums

from ocpp_bridge.core import devicemodel, inventory
from ocpp_bridge.core.devicemodel import KeyTable, VariableAddress
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.core.state import ChargerMeta, ChargerState
from ocpp_bridge.core.translate import reports
from ocpp_bridge.mappings import MappingError, load_key_table
from tests.playbook import Frame, Playbook

KEYS = load_key_table()
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1", "chargePointSerialNumber": "SN-1",
        "chargeBoxSerialNumber": "CB-1", "firmwareVersion": "1.2.3", "iccid": "8931", "imsi": "2620",
        "meterType": "EM-1", "meterSerialNumber": "M-77"}
ALL_PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
# A charger with the 1.6 standard keys (Core, Local Auth List, Reservation, Smart Charging, Firmware, security).
STANDARD_CONFIG: dict[str, tuple[str | None, bool]] = {
    "AllowOfflineTxForUnknownId": ("false", False), "AuthorizationCacheEnabled": ("true", False),
    "AuthorizeRemoteTxRequests": ("true", True), "ClockAlignedDataInterval": ("900", False),
    "ConnectionTimeOut": ("90", False), "ConnectorPhaseRotation": ("0.RST,1.RST,2.RTS", False),
    "GetConfigurationMaxKeys": ("30", True), "HeartbeatInterval": ("300", False),
    "LocalAuthorizeOffline": ("true", False), "LocalPreAuthorize": ("false", False),
    "MeterValuesAlignedData": ("Energy.Active.Import.Register", False), "MeterValuesAlignedDataMaxLength": ("4", True),
    "MeterValuesSampledData": ("Energy.Active.Import.Register,Voltage.L1,Temperature", False),
    "MeterValuesSampledDataMaxLength": ("4", True), "MeterValueSampleInterval": ("60", False),
    "NumberOfConnectors": ("2", True), "ResetRetries": ("3", False),
    "StopTransactionOnEVSideDisconnect": ("true", False), "StopTransactionOnInvalidId": ("true", False),
    "StopTxnAlignedData": ("", False), "StopTxnSampledData": ("Energy.Active.Import.Register", False),
    "SupportedFeatureProfiles": (ALL_PROFILES, True), "TransactionMessageAttempts": ("3", False),
    "TransactionMessageRetryInterval": ("60", False), "UnlockConnectorOnEVSideDisconnect": ("true", False),
    "LocalAuthListEnabled": ("true", False), "LocalAuthListMaxLength": ("100", True),
    "SendLocalListMaxLength": ("20", True), "ReserveConnectorZeroSupported": ("false", True),
    "ChargeProfileMaxStackLevel": ("5", True), "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
    "ChargingScheduleMaxPeriods": ("24", True), "MaxChargingProfilesInstalled": ("8", True),
    "SupportedFileTransferProtocols": ("FTP,HTTPS", True), "AuthorizationKey": ("0123abcd", False),
    "CpoName": ("Acme CPO", False), "SecurityProfile": ("1", False), "AcmeFanMode": ("auto", False),
}


# --- helpers shared with test_reports.py ------------------------------------------------------------------


def configuration(config: dict[str, tuple[str | None, bool]], keys: list[str] | None = None) -> dict[str, Any]:
    """A 1.6 GetConfiguration answer from a key -> (value, readonly) store."""
    asked = keys or list(config)
    known = [{"key": k, "readonly": config[k][1]} | ({"value": config[k][0]} if config[k][0] is not None else {})
             for k in asked if k in config]
    unknown = [k for k in asked if k not in config]
    return {"configurationKey": known} | ({"unknownKey": unknown} if unknown else {})


def book(upstream: Version = Version.V201, state: ChargerState | None = None, keys: KeyTable = KEYS) -> Playbook:
    return Playbook.translated(upstream, settings=CoreSettings(keys=keys), state=state)


def boot(pb: Playbook, status: str = "Accepted", **fields: Any) -> None:
    uid = pb.charger_sends("BootNotification", {**BOOT, **fields})
    pb.csms_answers(pb.csms_receives("BootNotification"),
                    {"status": status, "currentTime": "2024-05-01T10:00:00Z", "interval": 300})
    pb.charger_receives_result(uid)


def fetch(pb: Playbook, config: dict[str, tuple[str | None, bool]] | None = None) -> Frame:
    """The bridge's own GetConfiguration (after the boot delay); answered from ``config``."""
    pb.advance(reports.BOOT_FETCH_DELAY)
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {}  # all keys
    pb.charger_answers(call, configuration(STANDARD_CONFIG if config is None else config))
    return call


def booted(upstream: Version = Version.V201, config: dict[str, tuple[str | None, bool]] | None = None,
           keys: KeyTable = KEYS) -> Playbook:
    """A charger that booted, had its configuration fetched, and reported both connectors Available."""
    pb = book(upstream, keys=keys)
    boot(pb)
    fetch(pb, config)
    for connector in (0, 1, 2):
        uid = pb.charger_sends("StatusNotification", {"connectorId": connector, "errorCode": "NoError",
                                                      "status": "Available"})
        pb.charger_receives_result(uid)
    answer_csms(pb)
    pb.nothing_pending()
    return pb


def answer_csms(pb: Playbook) -> list[Frame]:
    """The CSMS accepts every queued message the bridge sends it (StatusNotification, NotifyReport, ...)."""
    seen = []
    while any(f.type_id == 2 for f in pb.to_csms):
        frame = next(f for f in pb.to_csms if f.type_id == 2)
        pb.to_csms.remove(frame)
        seen.append(frame)
        pb.csms_answers(frame, {})
    return seen


def last_meta(pb: Playbook) -> ChargerMeta:
    return next(r for r in reversed(pb.persisted) if isinstance(r, ChargerMeta))


def restarted(pb: Playbook, upstream: Version = Version.V201, keys: KeyTable = KEYS) -> Playbook:
    """A new session for the same charger from what the store holds (a bridge restart), at the same time."""
    stored = ChargerMeta.from_dict(last_meta(pb).to_dict())
    again = book(upstream, state=ChargerState(stored), keys=keys)
    again.now = pb.now
    return again


def var(component: str, variable: str, instance: str | None = None, evse: int | None = None,
        connector: int | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}, **extra}
    if instance is not None:
        item["variable"]["instance"] = instance
    if evse is not None:
        item["component"]["evse"] = {"id": evse} | ({"connectorId": connector} if connector is not None else {})
    return item


def results(pb: Playbook, uid: str, name: str = "getVariableResult") -> list[tuple[str, str | None]]:
    return [(r["attributeStatus"], r.get("attributeValue")) for r in pb.csms_receives_result(uid)[name]]


def serve_charger(pb: Playbook, config: dict[str, tuple[str | None, bool]]) -> None:
    """Answer every call the bridge sent the charger, as a 1.6 charger with configuration ``config`` would."""
    while any(f.type_id == 2 for f in pb.to_charger):
        call = next(f for f in pb.to_charger if f.type_id == 2)
        pb.to_charger.remove(call)
        if call.action == "GetConfiguration":
            pb.charger_answers(call, configuration(config, call.payload.get("key")))
        elif call.action == "ChangeConfiguration":
            key, value = call.payload["key"], call.payload["value"]
            status = "NotSupported" if key not in config else "Rejected" if config[key][1] else "Accepted"
            if status == "Accepted":
                config[key] = (value, False)
            pb.charger_answers(call, {"status": status})
        else:
            raise AssertionError(f"unexpected {call.action}")


# --- the mapping data -------------------------------------------------------------------------------------


def test_measurand_lists_are_what_both_versions_have() -> None:
    v16 = {m.value for m in v16_enums.Measurand}
    v201 = {m.value for m in v201_enums.MeasurandEnumType}
    assert set(devicemodel.MEASURANDS) == (v16 & v201) == v16 - {"Temperature", "RPM"}


def test_measurand_conversion() -> None:
    row = KEYS.by_key["MeterValuesSampledData"]
    assert KeyTable.to_v2(row, "Energy.Active.Import.Register, Voltage.L1,Voltage.L2-N,Temperature,RPM,Acme.X") == \
        "Energy.Active.Import.Register,Voltage"
    assert KeyTable.to_v16(row, "Voltage,SoC") == "Voltage,SoC"
    assert KeyTable.to_v16(row, "Energy.Active.Net") is None  # 2.0.1 only: a 1.6 charger cannot sample it
    assert row.values() == ",".join(devicemodel.MEASURANDS)


def _real(component: str, variable: str) -> bool:
    """A standardized 2.0.1 component/variable (from the ocpp package's enums; ``Name[Instance]`` spellings)."""
    names = {str(m.value) for m in v201_enums.StandardizedVariableName}
    specific = getattr(v201_enums, f"{component}VariableName", None)
    if specific is not None:
        names |= {str(m.value).split("[")[0] for m in specific}
    return variable in names


def test_the_bridges_own_variables_are_real_2_0_1_variables() -> None:
    pb = booted()
    model = reports.model(pb.session)
    for variable in model:
        if variable.key is None:
            assert _real(variable.address.component, variable.address.variable), variable.address.label()


def test_mirrors_and_limits_name_real_variables() -> None:
    for row in KEYS.by_key.values():
        for address in (*row.mirrors, *([row.max_limit_of] if row.max_limit_of else [])):
            if address.component != KEYS.legacy_component:
                assert _real(address.component, address.variable), (row.key, address)


def test_profile_and_security_keys_have_rows() -> None:
    for key in ("SeccLeafSubjectCommonName", "SeccLeafSubjectCountry", "SeccLeafSubjectOrganization",
                "StartTxnSampledData", "PublicKeyWithSignedMeterValue", "SampledDataSignReadings"):
        assert key in KEYS.by_key
    assert KEYS.by_key["PublicKeyWithSignedMeterValue"].values() == "Never,OncePerTransaction,EveryMeterValue"
    # the bridge answers ItemsPerMessage[GetVariables] itself (it splits GetConfigurations per this key)
    assert KEYS.by_key["GetConfigurationMaxKeys"].address.component == KEYS.legacy_component


def test_lookups_are_case_insensitive() -> None:
    assert KEYS.for_address(VariableAddress("ocppcommctrlr", "heartbeatinterval")) is KEYS.by_key["HeartbeatInterval"]
    assert KEYS.for_key("heartbeatINTERVAL") is KEYS.by_key["HeartbeatInterval"]
    mirror = KEYS.mirror(VariableAddress("SampledDataCtrlr", "TxEndedInterval"))
    assert mirror is KEYS.by_key["MeterValueSampleInterval"]


# --- vendor/model overrides -------------------------------------------------------------------------------

VENDOR = """
[match]
vendor = "acme*"
model = "X?"

[[key]]
key = "AcmeFanMode"
component = "AcmeCtrlr"
variable = "FanMode"
data_type = "OptionList"
mutability = "ReadWrite"
values_list = "auto,on,off"

[[key]]
key = "HeartbeatInterval"
data_type = "integer"
mutability = "ReadOnly"
conversion = "integer"
"""


def _vendor_table(tmp_path: Path, text: str = VENDOR, name: str = "acme.toml") -> KeyTable:
    (tmp_path / "vendors").mkdir(exist_ok=True)
    (tmp_path / "vendors" / name).write_text(text, encoding="utf-8")
    return load_key_table(tmp_path)


def test_vendor_overrides_apply_to_matching_chargers_only(tmp_path: Path) -> None:
    table = _vendor_table(tmp_path)
    assert table.by_key["HeartbeatInterval"].address.component == "OCPPCommCtrlr"  # the base table is unchanged
    acme = table.for_station("ACME Corp", "X1")
    assert acme.for_address(VariableAddress("AcmeCtrlr", "FanMode")).key == "AcmeFanMode"  # type: ignore[union-attr]
    assert acme.by_key["HeartbeatInterval"].address == VariableAddress("OCPP16LegacyCtrlr", "HeartbeatInterval")
    assert acme.by_key["HeartbeatInterval"].mutability == "ReadOnly"
    assert table.for_station("ACME Corp", "X10") is table  # "X?" does not match X10
    assert table.for_station("Other", "X1") is table
    assert table.for_station(None, None) is table
    assert table.for_station("acme", "x1") is table.for_station("acme", "x1")  # cached


def test_a_later_vendor_file_wins_and_displaced_rows_go_legacy(tmp_path: Path) -> None:
    _vendor_table(tmp_path)
    table = _vendor_table(tmp_path, '[match]\nvendor = "Acme*"\n\n[[key]]\nkey = "AcmeOther"\ncomponent = '
                                    '"AcmeCtrlr"\nvariable = "FanMode"\ndata_type = "string"\nmutability = '
                                    '"ReadOnly"\n', name="b.toml")
    acme = table.for_station("Acme", "X1")
    assert acme.by_key["AcmeOther"].address == VariableAddress("AcmeCtrlr", "FanMode")
    assert acme.by_key["AcmeFanMode"].address == VariableAddress("OCPP16LegacyCtrlr", "AcmeFanMode")


def test_a_top_level_file_with_match_is_a_vendor_override(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text(VENDOR, encoding="utf-8")
    table = load_key_table(tmp_path)
    assert "AcmeFanMode" not in table.by_key
    assert "AcmeFanMode" in table.for_station("Acme", "X1").by_key


def test_the_override_applies_once_the_charger_has_booted(tmp_path: Path) -> None:
    table = _vendor_table(tmp_path)
    pb = book(keys=table)
    item = var("AcmeCtrlr", "FanMode")
    uid = pb.csms_sends("GetVariables", {"getVariableData": [item]})
    assert results(pb, uid) == [("UnknownComponent", None)]  # vendor and model not known yet
    boot(pb)
    uid = pb.csms_sends("GetVariables", {"getVariableData": [item, var("OCPPCommCtrlr", "HeartbeatInterval")]})
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["AcmeFanMode"]}
    pb.charger_answers(call, configuration({"AcmeFanMode": ("auto", False)}))
    assert results(pb, uid) == [("Accepted", "auto"), ("UnknownVariable", None)]
    # after a restart the stored BootNotification facts still select the override
    again = restarted(pb, keys=table)
    uid = again.csms_sends("SetVariables", {"setVariableData": [
        var("OCPP16LegacyCtrlr", "HeartbeatInterval", attributeValue="60")]})
    assert results(again, uid, "setVariableResult") == [("Rejected", None)]  # read-only for this model


@pytest.mark.parametrize(("text", "field", "why"), [
    (VENDOR.replace('vendor = "acme*"', "vendor = 7"), "vendor", "[match]: field 'vendor': Input should be a valid"),
    (VENDOR.replace('model = "X?"', 'modle = "X?"'), "modle", "[match]: field 'modle': Extra inputs"),
    (VENDOR.replace('data_type = "OptionList"', 'data_type = "enum"'), "data_type",
     "[[key]] #1 (key 'AcmeFanMode'): field 'data_type': Input should be"),
    (VENDOR.replace('values_list = "auto,on,off"\n', ""), "data_type",
     "key 'AcmeFanMode': field 'values_list': data_type 'OptionList' needs a values_list"),  # at its [[key]]
    (VENDOR.replace('variable = "FanMode"', 'variable = "FanMode"\nmirrors = [{ variable = 3 }]'), "mirrors",
     "field 'mirrors': Input should be a valid string"),
])
def test_a_malformed_vendor_override_names_file_line_and_field(tmp_path: Path, text: str, field: str,
                                                               why: str) -> None:
    with pytest.raises(MappingError) as caught:
        _vendor_table(tmp_path, text)
    path = tmp_path / "vendors" / "acme.toml"
    lines = text.splitlines()
    line = next(n for n, t in enumerate(lines, 1) if t.startswith((f"{field} =", f"{field}=")))
    if "values_list" in why:  # a field the row does not write is reported at the row's [[key]] line
        line = next(n for n, t in enumerate(lines, 1) if t.startswith("[[key]]"))
    assert str(caught.value).startswith(f"{path}:{line}: "), caught.value
    assert why in str(caught.value)


def test_a_vendor_file_without_match(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"acme.toml: field 'match': Field required"):
        _vendor_table(tmp_path, VENDOR.replace('[match]\nvendor = "acme*"\nmodel = "X?"\n', ""))
    with pytest.raises(MappingError, match=r"acme.toml:2: \[match\]: Value error, needs vendor, model or both"):
        _vendor_table(tmp_path, '\n[match]\n')


@pytest.mark.parametrize(("component", "variable", "instance"), [
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"), ("TxCtrlr", "TxStartPoint", None),
    ("OCPPCommCtrlr", "MessageTimeout", "Default"), ("ChargingStation", "Model", None),
])
def test_a_row_may_not_claim_a_variable_the_bridge_answers(tmp_path: Path, component: str, variable: str,
                                                           instance: str | None) -> None:
    text = VENDOR.replace('component = "AcmeCtrlr"\nvariable = "FanMode"',
                          f'component = "{component}"\nvariable = "{variable}"' +
                          (f'\nvariable_instance = "{instance}"' if instance else ""))
    with pytest.raises(MappingError) as caught:
        _vendor_table(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'vendors' / 'acme.toml'}:8: key 'AcmeFanMode': field "
                                        "'component': ")
    assert "is answered by the bridge itself" in str(caught.value)


def test_a_vendor_row_colliding_with_the_base_table(tmp_path: Path) -> None:
    text = VENDOR.replace('component = "AcmeCtrlr"\nvariable = "FanMode"',
                          'component = "TxCtrlr"\nvariable = "EVConnectionTimeOut"')
    with pytest.raises(MappingError, match=r"acme.toml:8: key 'AcmeFanMode': field 'component': address "
                                           r"TxCtrlr.EVConnectionTimeOut is already used by key 'ConnectionTimeOut'"):
        _vendor_table(tmp_path, text)


def test_check_config_refuses_a_malformed_override(tmp_path: Path) -> None:
    """The operator's view: ``ocpp-bridge check-config`` with ``mappings = DIR`` exits 2 naming file/line/field."""
    mappings = tmp_path / "mappings"
    (mappings / "vendors").mkdir(parents=True)
    (mappings / "vendors" / "acme.toml").write_text(VENDOR.replace('mutability = "ReadWrite"', 'mutability = "RW"'),
                                                    encoding="utf-8")
    config = tmp_path / "bridge.toml"
    config.write_text(f'upstream = "ws://csms/ocpp"\nmappings = "{mappings}"\n', encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "ocpp_bridge.cli", "check-config", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run
    assert f"{mappings / 'vendors' / 'acme.toml'}:11: [[key]] #1 (key 'AcmeFanMode'): field 'mutability': " \
           in run.stderr
    (mappings / "vendors" / "acme.toml").write_text(VENDOR, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "ocpp_bridge.cli", "check-config", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr


# --- the bridge's own GetConfiguration --------------------------------------------------------------------


def test_configuration_is_fetched_after_an_accepted_boot_and_never_reaches_the_csms() -> None:
    pb = book()
    boot(pb)
    meta = last_meta(pb)
    assert meta.station == {"vendor": "Acme", "model": "X1", "serialNumber": "SN-1", "chargeBoxSerialNumber": "CB-1",
                            "firmwareVersion": "1.2.3", "iccid": "8931", "imsi": "2620", "meterType": "EM-1",
                            "meterSerialNumber": "M-77"}
    pb.advance(reports.BOOT_FETCH_DELAY - 1)
    pb.nothing_pending()  # the charger's StatusNotifications and the CSMS's own calls go first
    fetch(pb)
    pb.nothing_pending()  # the answer is the bridge's: nothing reaches the CSMS
    assert "GetConfiguration" not in [f.action for f in pb.to_csms if f.type_id == 2]
    meta = last_meta(pb)
    assert meta.config_fetched_at == pb.now
    assert meta.config_keys["HeartbeatInterval"] == {"value": "300", "readonly": False}
    assert meta.config_keys["AuthorizationKey"] == {"value": None, "readonly": False}  # a secret is never kept
    assert "devicemodel.fetched" in pb.emitted_kinds()


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
def test_no_fetch_before_the_csms_accepts_the_charger(status: str) -> None:
    pb = book()
    boot(pb, status=status)
    pb.advance(reports.BOOT_FETCH_DELAY * 10)
    pb.nothing_pending()


def test_a_fresh_copy_is_not_fetched_again_at_boot_but_refreshed_when_stale() -> None:
    pb = booted()
    boot(pb)
    pb.advance(reports.BOOT_FETCH_DELAY * 2)
    pb.nothing_pending()  # fetched a minute ago
    pb.advance(devicemodel.CONFIG_MAX_AGE)
    pb.charger_answers(pb.charger_receives("GetConfiguration"), configuration(STANDARD_CONFIG))  # once a day
    boot(pb, firmwareVersion="1.2.4")  # a new firmware may have changed the keys
    fetch(pb)
    pb.nothing_pending()


def test_a_restarted_session_refreshes_a_stale_copy() -> None:
    pb = booted()
    meta = last_meta(pb)
    meta.config_fetched_at = pb.now - devicemodel.CONFIG_MAX_AGE - 1
    again = book(state=ChargerState(meta))  # a new connection, a day later
    again.advance(reports.BOOT_FETCH_DELAY)
    again.charger_receives("GetConfiguration")


def test_a_failed_fetch_is_retried_later_and_says_why() -> None:
    pb = book()
    boot(pb)
    pb.advance(reports.BOOT_FETCH_DELAY)
    pb.charger_fails(pb.charger_receives("GetConfiguration"), "InternalError", "busy")
    assert "devicemodel.fetch_failed" in pb.emitted_kinds()
    pb.advance(reports.FETCH_RETRY - 1)
    pb.nothing_pending()
    pb.advance(1)
    pb.charger_receives("GetConfiguration")


def test_the_fetch_shares_the_lane_with_the_csmss_calls() -> None:
    pb = book()
    boot(pb)
    pb.advance(reports.BOOT_FETCH_DELAY)
    own = pb.charger_receives("GetConfiguration")
    uid = pb.csms_sends("GetVariables", {"getVariableData": [var("OCPPCommCtrlr", "HeartbeatInterval")]})
    pb.nothing_pending()  # one outstanding call per direction: the CSMS's waits
    pb.charger_answers(own, configuration(STANDARD_CONFIG))
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["HeartbeatInterval"]}
    pb.charger_answers(call, configuration(STANDARD_CONFIG, ["HeartbeatInterval"]))
    assert results(pb, uid) == [("Accepted", "300")]
    pb.nothing_pending()


def test_a_huge_configuration_is_cut_short() -> None:
    meta = ChargerMeta("CP-1")
    answer = {"configurationKey": [{"key": f"K{n}", "readonly": False, "value": "x"}
                                   for n in range(devicemodel.MAX_CACHED_KEYS + 5)]}
    assert devicemodel.store_configuration(meta, answer, 1.0) is False
    assert len(meta.config_keys) == devicemodel.MAX_CACHED_KEYS


def test_connector_count() -> None:
    meta = ChargerMeta("CP-1")
    assert devicemodel.connector_count(meta) == 0
    meta.connector_status = {"0": "Available", "3": "Available"}
    assert devicemodel.connector_count(meta) == 3
    meta.config_keys = {"numberofconnectors": {"value": "4", "readonly": True}}
    assert devicemodel.connector_count(meta) == 4
    meta.config_keys = {"NumberOfConnectors": {"value": "999999999", "readonly": True}}
    assert devicemodel.connector_count(meta) == 3  # nonsense is ignored
    meta.connector_status = {str(n): "Available" for n in range(500)}
    assert devicemodel.connector_count(meta) == devicemodel.MAX_CONNECTORS


# --- GetVariables: the bridge's own variables answered locally --------------------------------------------


@pytest.mark.parametrize("upstream", [Version.V201, Version.V21])
def test_the_bridges_own_variables_are_answered_without_the_charger(upstream: Version) -> None:
    pb = booted(upstream)
    uid = pb.charger_sends("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Charging"})
    pb.charger_receives_result(uid)
    answer_csms(pb)
    items = [
        var("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
        var("DeviceDataCtrlr", "BytesPerMessage", "GetReport"),
        var("TxCtrlr", "TxStartPoint"), var("TxCtrlr", "TxStopPoint"),
        var("OCPPCommCtrlr", "MessageTimeout", "Default"), var("ChargingStation", "Model"),
        var("ChargingStation", "VendorName"), var("ChargingStation", "SerialNumber"),
        var("ChargingStation", "FirmwareVersion"), var("ChargingStation", "Available"),
        var("ChargingStation", "AvailabilityState"), var("EVSE", "AvailabilityState", evse=2),
        var("Connector", "AvailabilityState", evse=2, connector=1), var("Connector", "Available", evse=1),
        var("SecurityCtrlr", "Identity"), var("ReservationCtrlr", "Available"), var("DataLink", "ICCID"),
        var("FiscalMetering", "SerialNumber", "Meter"), var("chargingstation", "model"),
    ]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    assert results(pb, uid) == [
        ("Accepted", "50"), ("Accepted", "65536"), ("Accepted", "PowerPathClosed"),
        ("Accepted", "EVConnected,Authorized"), ("Accepted", "20"), ("Accepted", "X1"), ("Accepted", "Acme"),
        ("Accepted", "SN-1"), ("Accepted", "1.2.3"), ("Accepted", "true"), ("Accepted", "Available"),
        ("Accepted", "Occupied"), ("Accepted", "Occupied"), ("Accepted", "true"), ("Accepted", "CP-1"),
        ("Accepted", "true"), ("Accepted", "8931"), ("Accepted", "M-77"), ("Accepted", "X1")]
    pb.nothing_pending()  # the charger was not asked


def test_clock_and_components_the_charger_does_not_have() -> None:
    pb = booted()
    items = [var("ClockCtrlr", "DateTime"), var("EVSE", "Available", evse=3), var("EVSE", "Available"),
             var("Connector", "Available", evse=1, connector=2), var("ChargingStation", "Nope"),
             var("TxCtrlr", "TxStartPoint", attributeType="Target"),
             var("DeviceDataCtrlr", "ItemsPerMessage", "GetMonitoringReport")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    assert results(pb, uid) == [
        ("Accepted", "2023-11-14T22:13:50.000Z"), ("UnknownComponent", None), ("UnknownComponent", None),
        ("UnknownComponent", None), ("UnknownVariable", None), ("NotSupportedAttributeType", None),
        ("UnknownVariable", None)]


def test_get_variables_asks_the_charger_and_keeps_the_copy_current() -> None:
    pb = booted()
    items = [var("OCPPCommCtrlr", "HeartbeatInterval"), var("SampledDataCtrlr", "TxEndedInterval"),
             var("OCPP16LegacyCtrlr", "AcmeFanMode"), var("TxCtrlr", "TxStartPoint")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    call = pb.charger_receives("GetConfiguration")
    assert call.payload == {"key": ["HeartbeatInterval", "MeterValueSampleInterval", "AcmeFanMode"]}
    pb.charger_answers(call, {"configurationKey": [
        {"key": "HeartbeatInterval", "readonly": False, "value": "120"},  # changed on the charger meanwhile
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}], "unknownKey": ["AcmeFanMode"]})
    assert results(pb, uid) == [("Accepted", "120"), ("Accepted", "60"), ("UnknownVariable", None),
                                ("Accepted", "PowerPathClosed")]
    meta = last_meta(pb)
    assert meta.config_keys["HeartbeatInterval"]["value"] == "120"
    assert "AcmeFanMode" not in meta.config_keys


def test_get_configuration_is_split_per_get_configuration_max_keys() -> None:
    pb = booted(config={**STANDARD_CONFIG, "GetConfigurationMaxKeys": ("2", True)})
    items = [var("OCPPCommCtrlr", "HeartbeatInterval"), var("TxCtrlr", "EVConnectionTimeOut"),
             var("OCPPCommCtrlr", "ResetRetries")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    first = pb.charger_receives("GetConfiguration")
    assert first.payload == {"key": ["HeartbeatInterval", "ConnectionTimeOut"]}
    pb.charger_answers(first, configuration(STANDARD_CONFIG, first.payload["key"]))
    second = pb.charger_receives("GetConfiguration")
    assert second.payload == {"key": ["ResetRetries"]}
    pb.charger_answers(second, configuration(STANDARD_CONFIG, second.payload["key"]))
    assert results(pb, uid) == [("Accepted", "300"), ("Accepted", "90"), ("Accepted", "3")]


def test_tx_started_measurands_without_its_key() -> None:
    pb = booted()  # this charger has no StartTxnSampledData: the bridge's read-only value shows
    items = [var("SampledDataCtrlr", "TxStartedMeasurands")]
    uid = pb.csms_sends("GetVariables", {"getVariableData": items})
    assert results(pb, uid) == [("Accepted", "Energy.Active.Import.Register")]
    uid = pb.csms_sends("SetVariables", {"setVariableData": [{**items[0], "attributeValue": "Voltage"}]})
    assert results(pb, uid, "setVariableResult") == [("Rejected", None)]
    pb.nothing_pending()
    fresh = book()  # nothing cached: the charger is asked; without the key, the same value shows
    uid = fresh.csms_sends("GetVariables", {"getVariableData": items})
    fresh.charger_answers(fresh.charger_receives("GetConfiguration"), {"unknownKey": ["StartTxnSampledData"]})
    assert results(fresh, uid) == [("Accepted", "Energy.Active.Import.Register")]


def test_too_many_or_too_large_requests_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pb = booted()
    many = [var("OCPPCommCtrlr", "HeartbeatInterval")] * (inventory.ITEMS_PER_MESSAGE["GetVariables"] + 1)
    uid = pb.csms_sends("GetVariables", {"getVariableData": many})
    pb.csms_receives_error("OccurrenceConstraintViolation", uid)
    monkeypatch.setitem(inventory.BYTES_PER_MESSAGE, "SetVariables", 5000)
    writes = [var("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="x" * 1000)] * 5
    uid = pb.csms_sends("SetVariables", {"setVariableData": writes})
    pb.csms_receives_error("FormatViolation", uid)
    pb.nothing_pending()


# --- SetVariables -----------------------------------------------------------------------------------------


def test_set_variables_the_bridge_refuses_from_its_model() -> None:
    pb = booted()
    items = [var("DeviceDataCtrlr", "ItemsPerMessage", "GetReport", attributeValue="10"),
             var("ChargingStation", "Model", attributeValue="X2"),
             var("SampledDataCtrlr", "TxEndedInterval", attributeValue="30"),  # a read-only mirror
             var("AuthCtrlr", "AuthorizeRemoteStart", attributeValue="false"),  # read-only on this charger
             var("OCPP16LegacyCtrlr", "NumberOfConnectors", attributeValue="4")]
    uid = pb.csms_sends("SetVariables", {"setVariableData": items})
    answer = pb.csms_receives_result(uid)["setVariableResult"]
    assert [(r["attributeStatus"], r["attributeStatusInfo"]["reasonCode"]) for r in answer] == \
        [("Rejected", "ReadOnly")] * 5
    pb.nothing_pending()  # no ChangeConfiguration: the bridge knew


def test_set_then_get_round_trip_and_the_copy_follows() -> None:
    charger = dict(STANDARD_CONFIG)
    pb = booted(config=charger)
    uid = pb.csms_sends("SetVariables", {"setVariableData": [
        var("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="120"),
        var("SampledDataCtrlr", "TxUpdatedMeasurands", attributeValue="Energy.Active.Import.Register,SoC"),
        var("OCPP16LegacyCtrlr", "AuthorizationKey", attributeValue="00112233445566778899aabbccddeeff00112233")]})
    serve_charger(pb, charger)
    assert results(pb, uid, "setVariableResult") == [("Accepted", None)] * 3
    meta = last_meta(pb)
    assert meta.config_keys["HeartbeatInterval"] == {"value": "120", "readonly": False}
    assert meta.config_keys["MeterValuesSampledData"]["value"] == "Energy.Active.Import.Register,SoC"
    assert meta.config_keys["AuthorizationKey"]["value"] is None  # written, never kept
    uid = pb.csms_sends("GetVariables", {"getVariableData": [
        var("OCPPCommCtrlr", "HeartbeatInterval"), var("SampledDataCtrlr", "TxUpdatedMeasurands"),
        var("OCPP16LegacyCtrlr", "AuthorizationKey")]})
    serve_charger(pb, charger)
    assert results(pb, uid) == [("Accepted", "120"), ("Accepted", "Energy.Active.Import.Register,SoC"),
                                ("Rejected", None)]  # write-only: never read back (B06.FR.09)


def test_the_round_trip_survives_a_restart() -> None:
    charger = dict(STANDARD_CONFIG)
    pb = booted(config=charger)
    uid = pb.csms_sends("SetVariables", {"setVariableData": [
        var("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="90"),
        var("TxCtrlr", "TxStopPoint", attributeValue="EVConnected")]})
    serve_charger(pb, charger)
    assert results(pb, uid, "setVariableResult") == [("Accepted", None), ("Rejected", None)]

    again = restarted(pb)  # the store gives the persisted ChargerMeta back
    assert again.session.meta.config_keys["HeartbeatInterval"]["value"] == "90"
    uid = again.csms_sends("GetVariables", {"getVariableData": [var("OCPPCommCtrlr", "HeartbeatInterval"),
                                                                var("ChargingStation", "Model")]})
    serve_charger(again, charger)
    assert results(again, uid) == [("Accepted", "90"), ("Accepted", "X1")]
    uid = again.csms_sends("SetVariables", {"setVariableData": [
        var("TxCtrlr", "TxStopPoint", attributeValue="EVConnected"),
        var("OCPP16LegacyCtrlr", "NumberOfConnectors", attributeValue="1")]})
    assert results(again, uid, "setVariableResult") == [("Rejected", None), ("Rejected", None)]
    again.nothing_pending()  # read-only per the stored copy: the charger is not asked
    # a report after the restart comes from the stored copy (fresh): no GetConfiguration
    uid = again.csms_sends("GetReport", {"requestId": 4, "componentVariable": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert again.csms_receives_result(uid) == {"status": "Accepted"}
    (report,) = answer_csms(again)
    assert report.payload["reportData"][0]["variableAttribute"][0]["value"] == "90"
    again.nothing_pending()


def test_reboot_required_makes_the_copy_stale() -> None:
    charger = dict(STANDARD_CONFIG)
    pb = booted(config=charger)
    uid = pb.csms_sends("SetVariables", {"setVariableData": [
        var("OCPP16LegacyCtrlr", "SecurityProfile", attributeValue="2")]})
    pb.charger_answers(pb.charger_receives("ChangeConfiguration"), {"status": "RebootRequired"})
    assert results(pb, uid, "setVariableResult") == [("RebootRequired", None)]
    assert last_meta(pb).config_fetched_at is None
    boot(pb)  # the charger reboots: the bridge fetches the configuration again
    fetch(pb)
