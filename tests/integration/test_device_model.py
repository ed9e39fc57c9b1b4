"""The synthesized device model through the bridge process (issue 3 acceptance): GetBaseReport on a 1.6 charger
with the standard keys, the Set/GetVariables round trip, read-only variables, and all of it across a restart.

>> CSMS calls 2.0.1/2.1 (ocpp ChargePoint, validating)  --  bridge  --  << 1.6 charger with a configuration store
"""

from __future__ import annotations

from typing import Any

from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from .peers import TIMEOUT, charger, within

ALL_PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
# A two-connector charger with the 1.6 standard keys of every profile (key -> (value, readonly)).
STANDARD_KEYS: dict[str, tuple[str, bool]] = {
    "AllowOfflineTxForUnknownId": ("false", False), "AuthorizationCacheEnabled": ("true", False),
    "AuthorizeRemoteTxRequests": ("true", False), "ClockAlignedDataInterval": ("900", False),
    "ConnectionTimeOut": ("90", False), "GetConfigurationMaxKeys": ("40", True), "HeartbeatInterval": ("300", False),
    "LocalAuthorizeOffline": ("true", False), "LocalPreAuthorize": ("false", False),
    "MeterValuesAlignedData": ("Energy.Active.Import.Register", False),
    "MeterValuesSampledData": ("Energy.Active.Import.Register,Voltage.L1", False),
    "MeterValuesSampledDataMaxLength": ("4", True), "MeterValueSampleInterval": ("60", False),
    "NumberOfConnectors": ("2", True), "ResetRetries": ("3", False), "StopTransactionOnInvalidId": ("true", False),
    "StopTxnAlignedData": ("", False), "StopTxnSampledData": ("Energy.Active.Import.Register", False),
    "SupportedFeatureProfiles": (ALL_PROFILES, True), "TransactionMessageAttempts": ("3", False),
    "TransactionMessageRetryInterval": ("60", False), "UnlockConnectorOnEVSideDisconnect": ("true", False),
    "LocalAuthListEnabled": ("true", False), "LocalAuthListMaxLength": ("100", True),
    "SendLocalListMaxLength": ("20", True), "ReserveConnectorZeroSupported": ("false", True),
    "ChargeProfileMaxStackLevel": ("5", True), "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
    "ChargingScheduleMaxPeriods": ("24", True), "MaxChargingProfilesInstalled": ("8", True),
    "SupportedFileTransferProtocols": ("FTP,HTTPS", True), "CpoName": ("Acme CPO", False),
}
CONTROLLERS = {"AlignedDataCtrlr", "AuthCacheCtrlr", "AuthCtrlr", "ClockCtrlr", "DeviceDataCtrlr",
               "LocalAuthListCtrlr", "OCPPCommCtrlr", "ReservationCtrlr", "SampledDataCtrlr", "SecurityCtrlr",
               "SmartChargingCtrlr", "TxCtrlr", "OCPP16LegacyCtrlr"}


def variable(component: str, name: str, evse: int | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"component": {"name": component}, "variable": {"name": name}, **extra}
    if evse is not None:
        found["component"]["evse"] = {"id": evse}
    return found


async def csms_call(station: Any, payload: Any) -> Any:
    return await within(station.call(payload, suppress=False))


async def boot_with_connectors(link: Any) -> None:
    answer = await link.call(c16.BootNotification(charge_point_model="DM-Model", charge_point_vendor="DM-Vendor",
                                                  charge_point_serial_number="DM-SN-1", firmware_version="4.2"))
    assert answer.status == "Accepted"
    for connector in (1, 2):
        await link.call(c16.StatusNotification(connector_id=connector, error_code="NoError", status="Available"))


async def full_report(csms: Any, station: Any, identity: str, request_id: int, base: str = "FullInventory",
                      ) -> list[dict[str, Any]]:
    """GetBaseReport; every NotifyReport part of it once the last one (tbc false) has arrived."""
    answer = await csms_call(station, c201.GetBaseReport(request_id=request_id, report_base=base))
    assert answer.status == "Accepted"
    await csms.expect(identity, "NotifyReport", lambda p: p["requestId"] == request_id and not p.get("tbc"),
                      timeout=TIMEOUT * 2)
    return [p for p in csms.received(identity, "NotifyReport") if p["requestId"] == request_id]


def check_full_inventory(parts: list[dict[str, Any]]) -> set[tuple[str, int | None, str]]:
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [bool(p.get("tbc")) for p in parts] == [True] * (len(parts) - 1) + [False]
    where = {(d["component"]["name"], d["component"].get("evse", {}).get("id"), d["variable"]["name"])
             for p in parts for d in p.get("reportData", [])}
    assert {"ChargingStation", "EVSE", "Connector"} | CONTROLLERS <= {w[0] for w in where}
    for evse in (1, 2):
        assert {("EVSE", evse, "AvailabilityState"), ("Connector", evse, "AvailabilityState")} <= where
    return where


def values(parts: list[dict[str, Any]]) -> dict[tuple[str, str], str | None]:
    return {(d["component"]["name"], d["variable"]["name"]): d["variableAttribute"][0].get("value")
            for p in parts for d in p.get("reportData", []) if "evse" not in d["component"]}


async def test_full_inventory_of_a_charger_with_the_standard_keys(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity, config=STANDARD_KEYS) as link:
        await boot_with_connectors(link)
        station = await csms.station(identity)
        parts = await full_report(csms, station, identity, 7)
        check_full_inventory(parts)  # the CSMS (ocpp, validating) accepted every part
        shown = values(parts)
        assert shown[("OCPPCommCtrlr", "HeartbeatInterval")] == "300"
        assert shown[("SampledDataCtrlr", "TxUpdatedMeasurands")] == "Energy.Active.Import.Register,Voltage"
        assert shown[("TxCtrlr", "TxStopPoint")] == "EVConnected,Authorized"
        assert shown[("ChargingStation", "Model")] == "DM-Model"
        # the bridge's own GetConfiguration went to the charger, and nothing of it to the CSMS
        assert link.cp.received("GetConfiguration") == [{}]
        assert set(station.actions()) <= {"BootNotification", "StatusNotification", "NotifyReport"}


async def test_full_inventory_on_a_2_1_csms(bridge_factory, csms_factory, identity):
    csms = await csms_factory(subprotocols=["ocpp2.1"])
    process = bridge_factory(args=["--upstream-protocols", "ocpp2.1"])
    async with charger(process.ws_url(identity), identity, config=STANDARD_KEYS) as link:
        await boot_with_connectors(link)
        parts = await full_report(csms, await csms.station(identity), identity, 8)
        check_full_inventory(parts)
        limits = next(d["variableCharacteristics"] for p in parts for d in p["reportData"]
                      if d["variable"]["name"] == "TxUpdatedMeasurands")
        assert limits["maxElements"] == 4  # 2.1: MeterValuesSampledDataMaxLength counts list elements


async def test_set_then_get_round_trip_and_read_only_variables(bridge, csms, identity):
    async with charger(bridge.ws_url(identity), identity, config=STANDARD_KEYS) as link:
        await boot_with_connectors(link)
        station = await csms.station(identity)
        answer = await csms_call(station, c201.SetVariables(set_variable_data=[
            variable("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="120"),
            variable("SampledDataCtrlr", "TxUpdatedMeasurands", attribute_value="Energy.Active.Import.Register,SoC"),
            variable("OCPP16LegacyCtrlr", "NumberOfConnectors", attribute_value="4"),  # read-only key
            variable("TxCtrlr", "TxStartPoint", attribute_value="EVConnected"),  # the bridge's, read-only
            variable("ChargingStation", "Model", attribute_value="Other"),
            variable("SmartChargingCtrlr", "RateUnit", attribute_value="A"),
        ]))
        assert [r["attribute_status"] for r in answer.set_variable_result] == [
            "Accepted", "Accepted", "Rejected", "Rejected", "Rejected", "Rejected"]
        assert link.cp.config["HeartbeatInterval"] == ("120", False)
        answer = await csms_call(station, c201.GetVariables(get_variable_data=[
            variable("OCPPCommCtrlr", "HeartbeatInterval"), variable("SampledDataCtrlr", "TxUpdatedMeasurands"),
            variable("TxCtrlr", "TxStartPoint"), variable("EVSE", "AvailabilityState", evse=2),
            {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage",
                                                                    "instance": "GetVariables"}},
        ]))
        assert [(r["attribute_status"], r.get("attribute_value")) for r in answer.get_variable_result] == [
            ("Accepted", "120"), ("Accepted", "Energy.Active.Import.Register,SoC"), ("Accepted", "PowerPathClosed"),
            ("Accepted", "Available"), ("Accepted", "50")]
        # GetVariables asked the charger for the key-backed ones only
        assert link.cp.received("GetConfiguration")[-1] == {"key": ["HeartbeatInterval", "MeterValuesSampledData"]}


async def test_the_device_model_survives_a_bridge_restart(bridge_factory, csms, identity, tmp_path):
    state = tmp_path / "device-model.db"
    first = bridge_factory(state=state)
    async with charger(first.ws_url(identity), identity, config=STANDARD_KEYS) as link:
        await boot_with_connectors(link)
        station = await csms.station(identity)
        check_full_inventory(await full_report(csms, station, identity, 1))  # fetches the configuration
        answer = await csms_call(station, c201.SetVariables(set_variable_data=[
            variable("OCPPCommCtrlr", "HeartbeatInterval", attribute_value="45")]))
        assert answer.set_variable_result[0]["attribute_status"] == "Accepted"
        kept = dict(link.cp.config)  # the charger keeps its configuration across the reconnect
        assert await first.aterminate() == 0
        assert await link.closed() == 1001

    second = bridge_factory(state=state, port=first.port)
    async with charger(second.ws_url(identity), identity, config=kept) as link:
        await link.call(c16.Heartbeat())  # the charger only reconnects; it does not boot again
        station = await csms.station(identity)
        answer = await csms_call(station, c201.GetVariables(get_variable_data=[
            variable("OCPPCommCtrlr", "HeartbeatInterval"), variable("ChargingStation", "SerialNumber")]))
        assert [(r["attribute_status"], r.get("attribute_value")) for r in answer.get_variable_result] == [
            ("Accepted", "45"), ("Accepted", "DM-SN-1")]  # from the charger; and from the stored BootNotification
        answer = await csms_call(station, c201.SetVariables(set_variable_data=[
            variable("OCPP16LegacyCtrlr", "NumberOfConnectors", attribute_value="1"),
            variable("TxCtrlr", "TxStopPoint", attribute_value="EVConnected")]))
        assert [r["attribute_status"] for r in answer.set_variable_result] == ["Rejected", "Rejected"]
        # the stored copy is fresh: the report needs no GetConfiguration and shows the value written before
        parts = await full_report(csms, station, identity, 2)
        check_full_inventory(parts)
        assert values(parts)[("OCPPCommCtrlr", "HeartbeatInterval")] == "45"
        assert link.cp.received("GetConfiguration") == [{"key": ["HeartbeatInterval"]}]
