"""1.6 configuration keys <-> 2.0.1 device-model variables, and the value conversions between them.

Why this exists: a 2.0.1 CSMS reads and writes a station's settings as Component.Variable[instance]; a 1.6
charger has flat keys. The table itself is data (mappings/*.toml, loaded by ``ocpp_bridge.mappings``); this
module is the small engine that applies it: address lookup both ways and value conversion (booleans, CSL
member lists, rate units). Keys the table does not know stay reachable under one legacy component.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_LEGACY_COMPONENT: Final = "OCPP16LegacyCtrlr"
MAX_V16_VALUE_LENGTH: Final = 500  # ChangeConfiguration.value / GetConfiguration value are CiString500


@dataclass(frozen=True, slots=True)
class VariableAddress:
    component: str
    variable: str
    component_instance: str | None = None
    variable_instance: str | None = None

    def label(self) -> str:
        comp = f"{self.component}[{self.component_instance}]" if self.component_instance else self.component
        var = f"{self.variable}[{self.variable_instance}]" if self.variable_instance else self.variable
        return f"{comp}.{var}"


@dataclass(frozen=True, slots=True)
class KeyMapping:
    key: str  # the 1.6 configuration key
    address: VariableAddress
    data_type: str = "string"  # 2.0.1 DataEnumType
    mutability: str = "ReadWrite"  # ReadOnly | ReadWrite | WriteOnly (2.0.1 MutabilityEnumType)
    unit: str | None = None
    conversion: str = "none"  # a name from CONVERSIONS


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


def _csl_list(value: str) -> str | None:
    # 1.6 CSL and 2.0.1 MemberList/SequenceList are both comma-separated; normalise the spacing.
    return ",".join(item.strip() for item in value.split(",") if item.strip())


_RATE_UNIT_TO_V2: Final = {"Current": "A", "Power": "W"}
_RATE_UNIT_TO_V16: Final = {v: k for k, v in _RATE_UNIT_TO_V2.items()}


def _rate_units(table: dict[str, str]) -> Callable[[str], str | None]:
    def convert(value: str) -> str | None:
        items = [item.strip() for item in value.split(",") if item.strip()]
        if not all(item in table for item in items):
            return None
        return ",".join(table[item] for item in items)

    return convert


def _same(value: str) -> str | None:
    return value


# name -> (1.6 value -> 2.0.1 value, 2.0.1 value -> 1.6 value); None means "not a valid value".
CONVERSIONS: Final[dict[str, tuple[Callable[[str], str | None], Callable[[str], str | None]]]] = {
    "none": (_same, _same),
    "boolean": (_bool_to_v2, _bool_to_v16),
    "integer": (_integer, _integer),
    "list": (_csl_list, _csl_list),
    "rate_unit": (_rate_units(_RATE_UNIT_TO_V2), _rate_units(_RATE_UNIT_TO_V16)),
}


class KeyTable:
    """Lookup in both directions over a validated set of :class:`KeyMapping` rows."""

    def __init__(self, rows: Iterable[KeyMapping], legacy_component: str = DEFAULT_LEGACY_COMPONENT) -> None:
        self.legacy_component = legacy_component
        self.by_key: dict[str, KeyMapping] = {}
        self.by_address: dict[VariableAddress, KeyMapping] = {}
        for row in rows:
            self.by_key[row.key] = row
            self.by_address[row.address] = row

    @classmethod
    def empty(cls) -> KeyTable:
        return cls(())

    def for_address(self, address: VariableAddress) -> KeyMapping | None:
        """The mapping for a 2.0.1 address; unknown keys live under the legacy component (variable = key)."""
        found = self.by_address.get(address)
        if found is not None:
            return found
        legacy = (address.component == self.legacy_component and address.component_instance is None
                  and address.variable_instance is None)
        # A key with its own row is reachable at that row's address only, so its mutability always holds.
        if legacy and address.variable not in self.by_key:
            return KeyMapping(address.variable, address)
        return None

    def for_key(self, key: str) -> KeyMapping:
        return self.by_key.get(key) or KeyMapping(key, VariableAddress(self.legacy_component, key))

    def knows_component(self, component: str) -> bool:
        return component == self.legacy_component or any(
            a.component == component for a in self.by_address
        )

    @staticmethod
    def to_v2(mapping: KeyMapping, value: str) -> str | None:
        return CONVERSIONS[mapping.conversion][0](value)

    @staticmethod
    def to_v16(mapping: KeyMapping, value: str) -> str | None:
        converted = CONVERSIONS[mapping.conversion][1](value)
        if converted is None or len(converted) > MAX_V16_VALUE_LENGTH:
            return None
        return converted
