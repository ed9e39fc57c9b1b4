"""The synthesized 2.0.1 device model of one 1.6 charger: every component and variable the bridge can show.

Why this exists: a 2.0.1 CSMS expects ChargingStation, EVSE and Connector components, the standard controllers
and their required variables (2.0.1 Part 2 appendix; mapping reference §5.3). A 1.6 charger has none of them:
the bridge builds them from what it knows, as one list of :class:`Variable` values that GetBaseReport/GetReport
(translate/reports.py) and GetVariables/SetVariables (translate/config.py) share:

* the charger's configuration keys (its last GetConfiguration, cached in ChargerMeta), through the key table;
* BootNotification (model, vendor, serial numbers, firmware, modem, meter) and StatusNotification (availability
  and problems per connector; connector ``c`` of a 1.6 charger is EVSE ``c`` with connector 1);
* variables the bridge itself owns and answers (never the charger): message limits, the call timeout, the
  1.6-compatible TxStartPoint/TxStopPoint (§5.1), the clock, the identity.

Nothing here talks to anyone: it is a pure function of the charger record, the key table and a few facts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final

from .convert import epoch
from .devicemodel import (
    LIST_TYPES,
    MAX_V2_VALUE_LENGTH,
    ConfigView,
    KeyMapping,
    KeyTable,
    VariableAddress,
    connector_count,
)
from .immutable import immutable
from .state import ChargerMeta

# The bridge's own limits (DeviceDataCtrlr, §5.3). GetReport's item limit is also the page size of NotifyReport.
ITEMS_PER_MESSAGE: Final = {"GetReport": 50, "GetVariables": 50, "SetVariables": 20}
BYTES_PER_MESSAGE: Final = {"GetReport": 65_536, "GetVariables": 65_536, "SetVariables": 65_536}
TX_START_POINT: Final = "PowerPathClosed"  # 2.0.1 Part 2 §E 1.1.2: the 1.6-compatible transaction points
TX_STOP_POINT: Final = "EVConnected,Authorized"
AVAILABILITY_STATES: Final = "Available,Occupied,Reserved,Unavailable,Faulted"
# 1.6 ChargePointStatus -> 2.0.1 ConnectorStatusEnumType (mapping reference §3.2; same table as translate.status).
AVAILABILITY: Final = {"Available": "Available", "Preparing": "Occupied", "Charging": "Occupied",
                       "SuspendedEV": "Occupied", "SuspendedEVSE": "Occupied", "Finishing": "Occupied",
                       "Reserved": "Reserved", "Unavailable": "Unavailable", "Faulted": "Faulted"}
# 1.6 SupportedFeatureProfiles entry -> the controller whose Available variable it decides.
PROFILE_CONTROLLERS: Final = {"LocalAuthListManagement": "LocalAuthListCtrlr", "Reservation": "ReservationCtrlr",
                              "SmartCharging": "SmartChargingCtrlr"}
PHYSICAL: Final = frozenset({"chargingstation", "evse", "connector", "datalink", "fiscalmetering"})
# Controller variables only the bridge answers; a key-table row may not claim them (checked at load time).
OWNED_ADDRESSES: Final = frozenset(a.folded() for a in (
    *(VariableAddress("DeviceDataCtrlr", v, None, i) for v in ("ItemsPerMessage", "BytesPerMessage")
      for i in ITEMS_PER_MESSAGE),
    VariableAddress("OCPPCommCtrlr", "MessageTimeout", None, "Default"),
    VariableAddress("TxCtrlr", "TxStartPoint"), VariableAddress("TxCtrlr", "TxStopPoint"),
    VariableAddress("ClockCtrlr", "DateTime"), VariableAddress("ClockCtrlr", "TimeSource"),
    VariableAddress("SecurityCtrlr", "Identity"), VariableAddress("AuthCacheCtrlr", "Available"),
    VariableAddress("SmartChargingCtrlr", "Entries", None, "ChargingProfiles"),
    *(VariableAddress(c, "Available") for c in PROFILE_CONTROLLERS.values()),
))


@immutable
class Facts:
    """What the model needs besides the charger record and the key table."""

    identity: str
    now: float
    call_timeout: float


@immutable
class Variable:
    """One variable with its Actual attribute and characteristics (2.0.1 ReportDataType)."""

    address: VariableAddress
    data_type: str
    mutability: str
    value: str | None  # None only for WriteOnly
    unit: str | None = None
    values_list: str | None = None
    max_limit: int | None = None
    key: str | None = None  # the 1.6 key behind it; None = the bridge answers it
    persistent: bool = True
    constant: bool = False


def _ro(address: VariableAddress, data_type: str, value: str, **extra: Any) -> Variable:
    return Variable(address, data_type, "ReadOnly", value, **extra)


# --- what the bridge synthesizes ------------------------------------------------------------------------


def _state_of(status: str | None) -> str | None:
    return AVAILABILITY.get(status) if status else None


def _station_state(meta: ChargerMeta) -> str | None:
    """ChargingStation.AvailabilityState: connector 0's status; else what all connectors agree on."""
    own = _state_of(meta.connector_status.get("0"))
    if own is not None:
        return own
    states = {_state_of(s) for c, s in meta.connector_status.items() if c != "0"}
    if not states:
        return None
    return states.pop() if len(states) == 1 and states <= {"Unavailable", "Faulted"} else "Available"


def _problem(meta: ChargerMeta, connector: str | None) -> str:
    """Problem = the connector (or, for None, anything) is Faulted or has an active 1.6 error code."""
    if connector is None:
        bad = "Faulted" in meta.connector_status.values() or bool(meta.connector_errors)
    else:
        bad = meta.connector_status.get(connector) == "Faulted" or connector in meta.connector_errors
    return "true" if bad else "false"


def _availability(component: VariableAddress, state: str | None, problem: str) -> list[Variable]:
    made = [_ro(replace(component, variable="Available"), "boolean", "true", constant=True)]
    if state is not None:
        made.append(_ro(replace(component, variable="AvailabilityState"), "OptionList", state,
                        values_list=AVAILABILITY_STATES, persistent=False))
    made.append(_ro(replace(component, variable="Problem"), "boolean", problem, persistent=False))
    return made


def _station(meta: ChargerMeta) -> list[Variable]:
    made = _availability(VariableAddress("ChargingStation", ""), _station_state(meta), _problem(meta, None))
    facts = meta.station
    for component, variable, instance, field in (
            ("ChargingStation", "Model", None, "model"), ("ChargingStation", "VendorName", None, "vendor"),
            ("ChargingStation", "SerialNumber", None, "serialNumber"),
            ("ChargingStation", "FirmwareVersion", None, "firmwareVersion"),
            ("DataLink", "ICCID", None, "iccid"), ("DataLink", "IMSI", None, "imsi"),
            ("FiscalMetering", "Model", "Meter", "meterType"),
            ("FiscalMetering", "SerialNumber", "Meter", "meterSerialNumber")):
        if facts.get(field):
            made.append(_ro(VariableAddress(component, variable, None, instance), "string", facts[field],
                            constant=field != "firmwareVersion"))
    return made


def _evses(meta: ChargerMeta) -> list[Variable]:
    made = []
    for evse in range(1, connector_count(meta) + 1):
        status, problem = meta.connector_status.get(str(evse)), _problem(meta, str(evse))
        made += _availability(VariableAddress("EVSE", "", evse=evse), _state_of(status), problem)
        made.append(_ro(VariableAddress("EVSE", "AllowReset", evse=evse), "boolean", "false", constant=True))
        made += _availability(VariableAddress("Connector", "", evse=evse, connector=1), _state_of(status), problem)
    return made


def _controllers(meta: ChargerMeta, facts: Facts) -> list[Variable]:
    made = [_ro(VariableAddress("DeviceDataCtrlr", "ItemsPerMessage", None, name), "integer", str(value),
                constant=True) for name, value in ITEMS_PER_MESSAGE.items()]
    made += [_ro(VariableAddress("DeviceDataCtrlr", "BytesPerMessage", None, name), "integer", str(value),
                 constant=True) for name, value in BYTES_PER_MESSAGE.items()]
    made += [
        _ro(VariableAddress("OCPPCommCtrlr", "MessageTimeout", None, "Default"), "integer",
            str(math.ceil(facts.call_timeout)), unit="s"),
        _ro(VariableAddress("TxCtrlr", "TxStartPoint"), "MemberList", TX_START_POINT, values_list=TX_START_POINT,
            constant=True),
        _ro(VariableAddress("TxCtrlr", "TxStopPoint"), "MemberList", TX_STOP_POINT, values_list=TX_STOP_POINT,
            constant=True),
        _ro(VariableAddress("ClockCtrlr", "DateTime"), "dateTime", epoch(facts.now), persistent=False),
        _ro(VariableAddress("ClockCtrlr", "TimeSource"), "SequenceList", "Heartbeat", values_list="Heartbeat"),
        _ro(VariableAddress("SecurityCtrlr", "Identity"), "string", facts.identity, constant=True),
    ]
    return made + _features(meta)


def _features(meta: ChargerMeta) -> list[Variable]:
    """*Ctrlr.Available from SupportedFeatureProfiles; AuthCacheCtrlr.Available from its key (§5.3)."""
    view = ConfigView(meta)
    made = []
    profiles = view.get("SupportedFeatureProfiles")
    listed = {p.strip() for p in (profiles.value or "").split(",")} if profiles else set()
    if profiles is not None:
        made += [_ro(VariableAddress(controller, "Available"), "boolean", "true" if profile in listed else "false")
                 for profile, controller in PROFILE_CONTROLLERS.items()]
    if view.complete:
        cached = view.get("AuthorizationCacheEnabled") is not None
        made.append(_ro(VariableAddress("AuthCacheCtrlr", "Available"), "boolean", "true" if cached else "false"))
    if "SmartCharging" in listed or view.get("MaxChargingProfilesInstalled") is not None:
        # the profiles the charger accepted through the bridge (what GetChargingProfiles reports, K09)
        made.append(_ro(VariableAddress("SmartChargingCtrlr", "Entries", None, "ChargingProfiles"), "integer",
                        str(len(meta.charging_profiles)), persistent=False))
    return made


# What a key-backed variable shows when the charger does not have its key (§5.3).
FALLBACKS: Final = {v.address.folded(): v for v in (
    _ro(VariableAddress("SampledDataCtrlr", "TxStartedMeasurands"), "MemberList", "Energy.Active.Import.Register",
        values_list="Energy.Active.Import.Register", constant=True),  # 1.6 meterStart
)}


# --- what the charger's keys say ------------------------------------------------------------------------


def v2_value(mapping: KeyMapping, raw: str | None) -> str:
    """A cached 1.6 value as the 2.0.1 variable shows it (unconvertible values pass as they are)."""
    if not raw:
        return ""  # 1.6: a key the charger knows but has no value for
    converted = KeyTable.to_v2(mapping, raw)
    return (raw if converted is None else converted)[:MAX_V2_VALUE_LENGTH]


def mutability(mapping: KeyMapping, readonly: bool) -> str:
    """The table's mutability, unless the charger says the key is read-only (it has the last word)."""
    return "ReadOnly" if readonly and mapping.mutability == "ReadWrite" else mapping.mutability


def _keyed(meta: ChargerMeta, keys: KeyTable) -> tuple[list[Variable], list[tuple[Variable, KeyMapping]]]:
    """Variables of the cached keys, and separately the *MaxLength keys (they become maxLimits if they can)."""
    made, limits = [], []
    view = ConfigView(meta)
    for cached in view.all():
        mapping = keys.for_key(cached.key)
        value = None if mapping.mutability == "WriteOnly" else v2_value(mapping, cached.value)
        variable = Variable(mapping.address, mapping.data_type, mutability(mapping, cached.readonly), value,
                            mapping.unit, mapping.values(), key=cached.key)
        if mapping.max_limit_of is not None:
            limits.append((variable, mapping))
            continue
        made.append(variable)
        made += [replace(variable, address=mirror, mutability="ReadOnly") for mirror in mapping.mirrors]
    if view.complete:
        present = {v.address.folded() for v in made}
        made += [v for address, v in FALLBACKS.items() if address not in present]
    return made, limits


def _apply_limits(variables: dict[VariableAddress, Variable],
                  limits: list[tuple[Variable, KeyMapping]]) -> list[Variable]:
    """Put each *MaxLength value on its variable as maxLimit; a limit without its variable stays a variable."""
    left = []
    for own, mapping in limits:
        assert mapping.max_limit_of is not None
        target = variables.get(mapping.max_limit_of.folded())
        number = (own.value or "").strip()
        if target is not None and number.isdigit():
            variables[target.address.folded()] = replace(target, max_limit=int(number))
        else:
            left.append(own)
    return left


def index(meta: ChargerMeta, keys: KeyTable, facts: Facts) -> tuple[dict[VariableAddress, Variable], list[Variable]]:
    """The whole model by folded address, plus the *MaxLength keys that found no variable to limit (they are
    variables of their own): what a lookup (Get/SetVariables) needs, without the report order."""
    keyed, limits = _keyed(meta, keys)
    variables: dict[VariableAddress, Variable] = {}
    for variable in (*_station(meta), *_evses(meta), *_controllers(meta, facts), *keyed):
        variables.setdefault(variable.address.folded(), variable)  # the bridge's own variables come first
    return variables, _apply_limits(variables, limits)


def build(meta: ChargerMeta, keys: KeyTable, facts: Facts) -> list[Variable]:
    """The whole model, in report order: ChargingStation, EVSEs and Connectors, controllers, legacy keys."""
    variables, rest = index(meta, keys, facts)
    ordered = list(variables.values()) + rest
    physical = [v for v in ordered if v.address.component.lower() in PHYSICAL]
    legacy = keys.legacy_component.lower()
    others = sorted((v for v in ordered if v.address.component.lower() not in PHYSICAL),
                    key=lambda v: (v.address.component.lower() == legacy, v.address.component.lower(),
                                   v.address.variable.lower(), v.address.variable_instance or ""))
    return physical + others


def components(variables: Iterable[Variable]) -> set[tuple[str, int | None, int | None]]:
    """(folded name, evse, connector) of every component the model has."""
    return {(v.address.component.lower(), v.address.evse, v.address.connector) for v in variables}


# --- choosing what a report contains (2.0.1 B07, B08) -----------------------------------------------------


def base_report(variables: list[Variable], base: str) -> list[Variable]:
    """ConfigurationInventory: what an operator can set (B07.FR.07); FullInventory: everything (B07.FR.08);
    SummaryInventory: availability and problems of ChargingStation, EVSEs and Connectors (B07.FR.09)."""
    if base == "ConfigurationInventory":
        return [v for v in variables if v.mutability in ("ReadWrite", "WriteOnly")]
    if base == "SummaryInventory":
        return [v for v in variables if v.address.component.lower() in ("chargingstation", "evse", "connector")
                and v.address.variable in ("Available", "AvailabilityState", "Problem")]
    return list(variables)


def _wanted(selector: dict[str, Any], variable: Variable) -> bool:
    """One ComponentVariableType of a GetReport: absent instance/evse/variable match any (B08.FR.20)."""
    address, component = variable.address, selector["component"]
    if component["name"].lower() != address.component.lower():
        return False
    if "instance" in component and component["instance"].lower() != (address.component_instance or "").lower():
        return False
    evse = component.get("evse")
    if evse is not None and (evse["id"] != address.evse or
                             ("connectorId" in evse and evse["connectorId"] != address.connector)):
        return False
    wanted = selector.get("variable")
    if wanted is None:
        return True
    return wanted["name"].lower() == address.variable.lower() and (
        "instance" not in wanted or wanted["instance"].lower() == (address.variable_instance or "").lower())


def custom_report(variables: list[Variable], selectors: list[dict[str, Any]] | None,
                  criteria: list[str] | None) -> list[Variable]:
    """GetReport: the variables the componentVariables name, of the components meeting any criterion
    (Active/Available/Enabled/Problem = true; the criteria are OR'ed, B08.FR.13)."""
    chosen = [v for v in variables if any(_wanted(s, v) for s in selectors)] if selectors else list(variables)
    if criteria:
        names = {c.lower() for c in criteria}

        def component(v: Variable) -> tuple[str, str, int | None, int | None]:
            a = v.address
            return a.component.lower(), (a.component_instance or "").lower(), a.evse, a.connector

        meeting = {component(v) for v in variables if v.address.variable.lower() in names and v.value == "true"}
        chosen = [v for v in chosen if component(v) in meeting]
    return chosen


def report_data(variable: Variable, max_elements: bool) -> dict[str, Any]:
    """A NotifyReport reportData item; ``max_elements``: a 2.1 list limit goes into maxElements."""
    attribute: dict[str, Any] = {"type": "Actual", "mutability": variable.mutability,
                                 "persistent": variable.persistent, "constant": variable.constant}
    if variable.value is not None and variable.mutability != "WriteOnly":
        attribute["value"] = variable.value[:MAX_V2_VALUE_LENGTH]
    # the appendix's passwordString is not in the schemas' DataEnumType: a password is a string there
    data_type = "string" if variable.data_type == "passwordString" else variable.data_type
    characteristics: dict[str, Any] = {"dataType": data_type, "supportsMonitoring": False}
    if variable.unit:
        characteristics["unit"] = variable.unit
    if variable.values_list:
        characteristics["valuesList"] = variable.values_list
    if variable.max_limit is not None:
        if max_elements and variable.data_type in LIST_TYPES:
            if variable.max_limit >= 1:
                characteristics["maxElements"] = variable.max_limit
        else:
            characteristics["maxLimit"] = variable.max_limit
    return {"component": variable.address.component_json(), "variable": variable.address.variable_json(),
            "variableAttribute": [attribute], "variableCharacteristics": characteristics}
