"""1.6 configuration keys <-> 2.0.1 device-model variables, and the value conversions between them.

Why this exists: a 2.0.1 CSMS reads and writes a station's settings as Component.Variable[instance]; a 1.6
charger has flat keys. The table itself is data (mappings/*.toml, loaded by ``ocpp_bridge.mappings``); this
module is the small engine that applies it: address lookup both ways (names are case-insensitive, 2.0.1
ComponentType/VariableType), value conversion (booleans, CSL member lists, measurands, rate units), per
vendor/model override tables, and the charger's cached configuration (the answer to the bridge's own
GetConfiguration, kept in ChargerMeta). Keys the table does not know stay reachable under one legacy component.
The synthesized components and variables built from all this live in :mod:`.inventory`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .immutable import immutable
from .state import ChargerMeta

DEFAULT_LEGACY_COMPONENT: Final = "OCPP16LegacyCtrlr"
MAX_V16_VALUE_LENGTH: Final = 500  # ChangeConfiguration.value / GetConfiguration value are CiString500
MAX_V2_VALUE_LENGTH: Final = 2500  # VariableAttributeType.value, GetVariableResult.attributeValue
MAX_VALUES_LIST: Final = 1000  # VariableCharacteristicsType.valuesList
LIST_TYPES: Final = frozenset({"OptionList", "MemberList", "SequenceList"})  # valuesList is mandatory for these
CONFIG_MAX_AGE: Final = 86_400.0  # seconds after which the cached configuration is fetched again
MAX_CACHED_KEYS: Final = 1000  # a charger listing more keys than this keeps only the first ones in the cache
MAX_CONNECTORS: Final = 128  # EVSE components the model shows at most (a charger may claim any number)


@immutable
class VariableAddress:
    """Component[instance](evse, connector).Variable[instance]; EVSE/Connector components carry evse ids."""

    component: str
    variable: str
    component_instance: str | None = None
    variable_instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    def label(self) -> str:
        comp = f"{self.component}[{self.component_instance}]" if self.component_instance else self.component
        if self.evse is not None:
            comp += f"(evse {self.evse}" + (f", connector {self.connector})" if self.connector is not None else ")")
        var = f"{self.variable}[{self.variable_instance}]" if self.variable_instance else self.variable
        return f"{comp}.{var}"

    def folded(self) -> VariableAddress:
        """The lookup form: component and variable names and instances are case-insensitive (2.0.1 §2.x types)."""
        return VariableAddress(self.component.lower(), self.variable.lower(),
                               self.component_instance.lower() if self.component_instance else None,
                               self.variable_instance.lower() if self.variable_instance else None,
                               self.evse, self.connector)

    @classmethod
    def of(cls, component: Mapping[str, Any], variable: Mapping[str, Any]) -> VariableAddress:
        """The address of a 2.x ComponentType + VariableType (a Connector without connectorId is connector 1:
        every EVSE of a 1.6 charger has exactly one)."""
        evse = component.get("evse")
        evse_id = evse["id"] if evse else None
        connector = evse.get("connectorId") if evse else None
        if evse and connector is None and component["name"].lower() == "connector":
            connector = 1
        return cls(component["name"], variable["name"], component.get("instance"), variable.get("instance"),
                   evse_id, connector)

    def component_json(self) -> dict[str, Any]:
        component: dict[str, Any] = {"name": self.component}
        if self.component_instance:
            component["instance"] = self.component_instance
        if self.evse is not None:
            component["evse"] = {"id": self.evse} | ({"connectorId": self.connector} if self.connector else {})
        return component

    def variable_json(self) -> dict[str, Any]:
        return {"name": self.variable} | ({"instance": self.variable_instance} if self.variable_instance else {})


@immutable
class KeyMapping:
    key: str  # the 1.6 configuration key
    address: VariableAddress
    data_type: str = "string"  # 2.0.1 DataEnumType
    mutability: str = "ReadWrite"  # ReadOnly | ReadWrite | WriteOnly (2.0.1 MutabilityEnumType)
    unit: str | None = None
    conversion: str = "none"  # a name from CONVERSIONS
    values_list: str | None = None  # valuesList of the 2.0.1 variable; None = implied by the conversion, if any
    max_limit_of: VariableAddress | None = None  # a *MaxLength key: the variable whose maxLimit it is
    mirrors: tuple[VariableAddress, ...] = ()  # further addresses showing the same key's value, read-only

    def values(self) -> str | None:
        return self.values_list or CONVERSION_VALUES.get(self.conversion)


# --- value conversions ----------------------------------------------------------------------------------


def _bool_to_v2(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return "true"
    if lowered in ("false", "0", "no"):
        return "false"
    return None


def _bool_to_v16(value: str) -> str | None:
    return value if value in ("true", "false") else None


def _integer(value: str) -> str | None:
    text = value.strip()
    return text if text.lstrip("-").isdigit() else None


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _csl_list(value: str) -> str | None:
    # 1.6 CSL and 2.0.1 MemberList/SequenceList are both comma-separated; normalise the spacing.
    return ",".join(_items(value))


_RATE_UNIT_TO_V2: Final = {"Current": "A", "Power": "W"}
_RATE_UNIT_TO_V16: Final = {v: k for k, v in _RATE_UNIT_TO_V2.items()}


def _rate_units(table: dict[str, str]) -> Callable[[str], str | None]:
    def convert(value: str) -> str | None:
        items = _items(value)
        if not all(item in table for item in items):
            return None
        return ",".join(table[item] for item in items)

    return convert


# Measurands both versions have: 1.6 Measurand minus Temperature and RPM, which 2.0.1 dropped (§5.2). 2.0.1's
# own additions (Energy.*.Net, Energy.Apparent.*) cannot be configured on a 1.6 charger.
MEASURANDS: Final = (
    "Current.Export", "Current.Import", "Current.Offered", "Energy.Active.Export.Register",
    "Energy.Active.Import.Register", "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval", "Frequency", "Power.Active.Export", "Power.Active.Import", "Power.Factor",
    "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import", "SoC", "Voltage",
)
_PHASE_SUFFIX: Final = re.compile(r"\.(L[123](-(N|L[123]))?|N)$")  # 1.6 allows "Voltage.L1" in these CSLs


def _measurands_to_v2(value: str) -> str | None:
    """A 1.6 measurand CSL as a 2.0.1 MemberList: phase suffixes stripped (2.0.1 has none), measurands 2.0.1
    lacks (Temperature, RPM, vendor names) left out, duplicates removed."""
    kept = dict.fromkeys(m for m in (_PHASE_SUFFIX.sub("", item) for item in _items(value)) if m in MEASURANDS)
    return ",".join(kept)


def _measurands_to_v16(value: str) -> str | None:
    items = _items(value)
    return ",".join(items) if all(item in MEASURANDS for item in items) else None


def _same(value: str) -> str | None:
    return value


# name -> (1.6 value -> 2.0.1 value, 2.0.1 value -> 1.6 value); None means "not a valid value".
CONVERSIONS: Final[dict[str, tuple[Callable[[str], str | None], Callable[[str], str | None]]]] = {
    "none": (_same, _same),
    "boolean": (_bool_to_v2, _bool_to_v16),
    "integer": (_integer, _integer),
    "list": (_csl_list, _csl_list),
    "measurands": (_measurands_to_v2, _measurands_to_v16),
    "rate_unit": (_rate_units(_RATE_UNIT_TO_V2), _rate_units(_RATE_UNIT_TO_V16)),
}
# The valuesList a conversion implies: what a 2.0.1 value may hold so that it converts to 1.6.
CONVERSION_VALUES: Final[dict[str, str]] = {"measurands": ",".join(MEASURANDS), "rate_unit": "A,W"}


# --- the table ------------------------------------------------------------------------------------------


@immutable
class VendorOverride:
    """Rows that apply to chargers whose BootNotification vendor and model match the globs (case-insensitive)."""

    source: str  # the file, for messages
    rows: tuple[KeyMapping, ...]
    vendor: str | None = None
    model: str | None = None

    def matches(self, vendor: str | None, model: str | None) -> bool:
        def one(pattern: str | None, value: str | None) -> bool:
            return pattern is None or (value is not None and fnmatch.fnmatchcase(value.lower(), pattern.lower()))

        return one(self.vendor, vendor) and one(self.model, model)


class KeyTable:
    """Lookup in both directions over a validated set of :class:`KeyMapping` rows.

    Keys are matched case-insensitively (1.6 keys are CiString50); addresses by their folded form.
    """

    def __init__(self, rows: Iterable[KeyMapping], legacy_component: str = DEFAULT_LEGACY_COMPONENT,
                 overrides: Iterable[VendorOverride] = ()) -> None:
        self.legacy_component = legacy_component
        self.overrides = tuple(overrides)
        self.by_key: dict[str, KeyMapping] = {}
        self.by_lower: dict[str, KeyMapping] = {}
        self.by_address: dict[VariableAddress, KeyMapping] = {}  # folded address -> row
        self.mirrors: dict[VariableAddress, KeyMapping] = {}  # folded mirror address -> row
        for row in rows:
            self.by_key[row.key] = row
            self.by_lower[row.key.lower()] = row
            self.by_address[row.address.folded()] = row
            for mirror in row.mirrors:
                self.mirrors[mirror.folded()] = row
        self._components = {a.component for a in self.by_address} | {a.component for a in self.mirrors}
        self._stations: dict[tuple[str | None, str | None], KeyTable] = {}

    @classmethod
    def empty(cls) -> KeyTable:
        return cls(())

    def for_station(self, vendor: str | None, model: str | None) -> KeyTable:
        """This table with the vendor/model overrides that match a charger applied (in file-name order, so a
        later file wins a key both set). A row displaced from its address by a later one moves to the legacy
        component, so no address ever names two keys."""
        matching = [o for o in self.overrides if o.matches(vendor, model)]
        if not matching:
            return self
        cache_key = (vendor, model)
        found = self._stations.get(cache_key)
        if found is None:
            rows = dict(self.by_lower)
            for override in matching:
                for row in override.rows:  # re-inserted, so that iteration order is precedence order
                    rows.pop(row.key.lower(), None)
                    rows[row.key.lower()] = row
            owners = {row.address.folded(): row.key for row in rows.values()}
            resolved = [row if owners[row.address.folded()] == row.key
                        else KeyMapping(row.key, VariableAddress(self.legacy_component, row.key), row.data_type,
                                        row.mutability, row.unit, row.conversion, row.values_list)
                        for row in rows.values()]
            found = KeyTable(resolved, self.legacy_component)
            if len(self._stations) >= 256:  # bounded: vendor/model strings come from chargers
                self._stations.clear()
            self._stations[cache_key] = found
        return found

    def for_address(self, address: VariableAddress) -> KeyMapping | None:
        """The mapping for a 2.0.1 address; unknown keys live under the legacy component (variable = key)."""
        folded = address.folded()
        found = self.by_address.get(folded)
        if found is not None:
            return found
        legacy = (folded.component == self.legacy_component.lower() and address.component_instance is None
                  and address.variable_instance is None and address.evse is None)
        # A key with its own row is reachable at that row's address only, so its mutability always holds.
        if legacy and folded.variable not in self.by_lower:
            return KeyMapping(address.variable, VariableAddress(self.legacy_component, address.variable))
        return None

    def mirror(self, address: VariableAddress) -> KeyMapping | None:
        """The key whose value a read-only mirror address shows (e.g. SampledDataCtrlr.TxEndedInterval)."""
        return self.mirrors.get(address.folded())

    def for_key(self, key: str) -> KeyMapping:
        return self.by_lower.get(key.lower()) or KeyMapping(key, VariableAddress(self.legacy_component, key))

    def knows_component(self, component: str) -> bool:
        return component.lower() == self.legacy_component.lower() or any(
            c.lower() == component.lower() for c in self._components)

    @staticmethod
    def to_v2(mapping: KeyMapping, value: str) -> str | None:
        return CONVERSIONS[mapping.conversion][0](value)

    @staticmethod
    def to_v16(mapping: KeyMapping, value: str) -> str | None:
        converted = CONVERSIONS[mapping.conversion][1](value)
        if converted is None or len(converted) > MAX_V16_VALUE_LENGTH:
            return None
        return converted


def station_keys(keys: KeyTable, meta: ChargerMeta) -> KeyTable:
    """The key table for one charger: the base table plus the overrides matching its BootNotification."""
    return keys.for_station(meta.station.get("vendor"), meta.station.get("model"))


# --- the charger's cached configuration (ChargerMeta.config_keys) ---------------------------------------


@immutable
class CachedKey:
    key: str  # as the charger spells it
    value: str | None
    readonly: bool


@dataclass(slots=True)
class ConfigView:
    """Case-insensitive read access to ``meta.config_keys``."""

    meta: ChargerMeta
    _index: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {key.lower(): key for key in self.meta.config_keys}

    def get(self, key: str) -> CachedKey | None:
        spelled = self._index.get(key.lower())
        if spelled is None:
            return None
        entry = self.meta.config_keys[spelled]
        return CachedKey(spelled, entry.get("value"), bool(entry.get("readonly")))

    def all(self) -> list[CachedKey]:
        return [c for c in (self.get(k) for k in self.meta.config_keys) if c is not None]

    @property
    def complete(self) -> bool:
        """The cache holds a whole GetConfiguration answer: a key missing from it is one the charger lacks."""
        return self.meta.config_fetched_at is not None


def is_fresh(meta: ChargerMeta, now: float) -> bool:
    return meta.config_fetched_at is not None and now - meta.config_fetched_at < CONFIG_MAX_AGE


def _no_secrets(_key: str) -> bool:
    return False


def _entry(entry: dict[str, Any], secret: Callable[[str], bool]) -> dict[str, Any]:
    """A cache entry; the value of a write-only key (AuthorizationKey) is never kept, even if a charger shows it."""
    return {"value": None if secret(entry["key"]) else entry.get("value"), "readonly": bool(entry["readonly"])}


def store_configuration(meta: ChargerMeta, answer: dict[str, Any], now: float,
                        secret: Callable[[str], bool] = _no_secrets) -> bool:
    """Replace the cache with a GetConfiguration (all keys) answer; ``False`` if it had to be cut short."""
    entries = answer.get("configurationKey", [])
    meta.config_keys = {e["key"]: _entry(e, secret) for e in entries[:MAX_CACHED_KEYS]}
    meta.config_fetched_at = now
    return len(entries) <= MAX_CACHED_KEYS


def _spelling(meta: ChargerMeta, key: str) -> str:
    return next((k for k in meta.config_keys if k.lower() == key.lower()), key)


def remember_values(meta: ChargerMeta, answer: dict[str, Any], asked: Iterable[str],
                    secret: Callable[[str], bool] = _no_secrets) -> bool:
    """Update the cache from a GetConfiguration for some keys (a GetVariables); ``True`` if anything changed.
    A key the charger calls unknown leaves the cache; new keys are added while the cache has room."""
    changed = False
    for entry in answer.get("configurationKey", []):
        key = _spelling(meta, entry["key"])
        new = _entry(entry, secret)
        if meta.config_keys.get(key) != new and (key in meta.config_keys or len(meta.config_keys) < MAX_CACHED_KEYS):
            meta.config_keys[key] = new
            changed = True
    unknown = {k.lower() for k in answer.get("unknownKey", [])} & {k.lower() for k in asked}
    for key in [k for k in meta.config_keys if k.lower() in unknown]:
        del meta.config_keys[key]
        changed = True
    return changed


def remember_write(meta: ChargerMeta, key: str, value: str | None, status: str) -> None:
    """A ChangeConfiguration the charger answered: Accepted -> the cache holds the new value (``None`` for a
    write-only key); RebootRequired -> the value changes at the next boot, so the cache is stale until fetched
    again."""
    if status == "Accepted":
        spelled = _spelling(meta, key)
        if spelled in meta.config_keys or len(meta.config_keys) < MAX_CACHED_KEYS:
            meta.config_keys[spelled] = {"value": value, "readonly": False}
    elif status == "RebootRequired":
        meta.config_fetched_at = None


def connector_count(meta: ChargerMeta) -> int:
    """EVSEs of the charger: NumberOfConnectors, or the highest connectorId seen in a StatusNotification."""
    seen = [int(c) for c in meta.connector_status if c.isdigit()]
    declared = ConfigView(meta).get("NumberOfConnectors")
    number = declared.value.strip() if declared and declared.value else ""
    counted = int(number) if number.isdigit() and len(number) < 6 else 0
    return min(MAX_CONNECTORS, max([counted, *seen]))
