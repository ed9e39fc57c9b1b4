"""Loads the 1.6 configuration-key <-> 2.0.1 variable tables (``mappings/*.toml``) into a frozen KeyTable.

Why this exists: the key table is data an operator may extend per charger model (DESIGN.md convention 4), so
it must be checked as strictly as code: a typo in a data type, a conversion that does not exist, two keys
claiming one address, or a row claiming a variable the bridge answers itself must stop the bridge at start-up
with a message that names the file, the line and the field, not surface later as a wrong GetVariables answer.
The core only ever sees the validated :class:`~ocpp_bridge.core.devicemodel.KeyTable`.

The packaged table (``ocpp_bridge/mappings/config_keys.toml``) is always read first. An override directory
holds two kinds of file (see mappings/README.md):

* ``DIR/*.toml`` without a ``[match]`` table: rows for every charger; a row for a key the packaged table already
  has replaces it;
* ``DIR/vendors/*.toml`` (or ``DIR/*.toml`` with a ``[match]`` table): rows for the chargers whose
  BootNotification vendor/model match the ``[match]`` globs, applied per charger once it has booted.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .core.devicemodel import (
    CONVERSION_VALUES,
    CONVERSIONS,
    DEFAULT_LEGACY_COMPONENT,
    LIST_TYPES,
    KeyMapping,
    KeyTable,
    VariableAddress,
    VendorOverride,
)
from .core.inventory import OWNED_ADDRESSES, PHYSICAL

PACKAGED_TABLE = "config_keys.toml"
VENDORS = "vendors"

DataType = Literal["string", "decimal", "integer", "dateTime", "boolean", "OptionList", "SequenceList",
                   "MemberList", "passwordString"]  # 2.0.1 DataEnumType
Mutability = Literal["ReadOnly", "ReadWrite", "WriteOnly"]  # 2.0.1 MutabilityEnumType
# Names and instances are 2.0.1 string[50]; 1.6 keys are CiString50.

# A conversion only makes sense for values of a matching 2.0.1 data type.
_CONVERSION_TYPES: dict[str, frozenset[str]] = {
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer"}),
    "list": frozenset({"MemberList", "SequenceList", "OptionList", "string"}),
    "measurands": frozenset({"MemberList", "SequenceList"}),
    "rate_unit": frozenset({"MemberList", "OptionList"}),
}


_M = TypeVar("_M", bound=BaseModel)


class MappingError(ValueError):
    """A mapping file is malformed; the message names the file, the line (when known) and the field."""


_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class AddressRow(BaseModel):
    """Another 2.0.1 address a row refers to (``max_limit_of``, ``mirrors``); no component = the legacy one."""

    model_config = _STRICT

    component: str | None = Field(default=None, min_length=1, max_length=50)
    variable: str = Field(min_length=1, max_length=50)
    component_instance: str | None = Field(default=None, min_length=1, max_length=50)
    variable_instance: str | None = Field(default=None, min_length=1, max_length=50)

    def address(self, legacy: str) -> VariableAddress:
        return VariableAddress(self.component or legacy, self.variable, self.component_instance,
                               self.variable_instance)


class KeyRow(BaseModel):
    """One ``[[key]]`` table."""

    model_config = _STRICT

    key: str = Field(min_length=1, max_length=50)
    component: str | None = Field(default=None, min_length=1, max_length=50)
    variable: str | None = Field(default=None, min_length=1, max_length=50)
    component_instance: str | None = Field(default=None, min_length=1, max_length=50)
    variable_instance: str | None = Field(default=None, min_length=1, max_length=50)
    data_type: DataType
    mutability: Mutability
    unit: str | None = Field(default=None, min_length=1, max_length=16)  # VariableCharacteristicsType.unit
    conversion: str = "none"
    values_list: str | None = Field(default=None, min_length=1, max_length=1000)  # valuesList is string[1000]
    max_limit_of: AddressRow | None = None
    mirrors: list[AddressRow] = Field(default_factory=list, max_length=8)

    @field_validator("conversion")
    @classmethod
    def _known_conversion(cls, value: str) -> str:
        if value not in CONVERSIONS:
            raise ValueError(f"unknown conversion {value!r}; known: {', '.join(sorted(CONVERSIONS))}")
        return value

    def problem(self) -> tuple[str, str] | None:
        """(field, why) for a combination of fields that cannot work."""
        allowed = _CONVERSION_TYPES.get(self.conversion)
        if allowed is not None and self.data_type not in allowed:
            return "conversion", f"conversion {self.conversion!r} does not fit data_type {self.data_type!r}"
        if self.data_type in LIST_TYPES and not (self.values_list or self.conversion in CONVERSION_VALUES):
            return "values_list", f"data_type {self.data_type!r} needs a values_list (2.0.1 valuesList)"
        return None


class MatchRow(BaseModel):
    """The ``[match]`` table of a vendor/model override: shell-style globs, case-insensitive."""

    model_config = _STRICT

    vendor: str | None = Field(default=None, min_length=1, max_length=100)
    model: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.vendor is None and self.model is None:
            raise ValueError("needs vendor, model or both")
        return self


class KeyFile(BaseModel):
    """A whole mapping file."""

    model_config = _STRICT

    legacy_component: str | None = Field(default=None, min_length=1, max_length=50)
    key: list[KeyRow] = Field(default_factory=list)


class VendorFile(BaseModel):
    """A vendor/model override file: rows for the chargers its ``[match]`` selects."""

    model_config = _STRICT

    match: MatchRow
    key: list[KeyRow] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a row came from, for error messages."""

    name: str
    text: str
    index: int | None = None  # position of the row among the file's [[key]] tables
    table: str | None = None  # "key" (with index), "match", or None for the top level

    def where(self, field: str | None = None) -> str:
        line = _line_of(self.text, "key" if self.index is not None else self.table, self.index, field)
        return f"{self.name}:{line}" if line is not None else self.name


_ANY_HEADER = re.compile(r"^\s*\[")


def _line_of(text: str, table: str | None, index: int | None, field: str | None) -> int | None:
    """1-based line of ``field`` in the ``index``-th ``[[key]]`` table, the ``[match]`` table, or the top level
    (``table`` None); the table's header line when the field is not written there."""
    lines = text.splitlines()
    if table is None:
        start, end = 0, next((n for n, line in enumerate(lines) if _ANY_HEADER.match(line)), len(lines))
    else:
        header = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]" if table == "key" else rf"^\s*\[\s*{table}\s*\]")
        starts = [n for n, line in enumerate(lines) if header.match(line)]
        position = index or 0
        if position >= len(starts):
            return None
        start = starts[position]
        end = next((n for n in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[n])), len(lines))
    if field is not None:
        pattern = re.compile(rf"^\s*{re.escape(field)}\s*=")
        for number in range(start, end):
            if pattern.match(lines[number]):
                return number + 1
    return start + 1 if table is not None else None


def _describe(errors: list[Any], source: _Source, data: dict[str, Any]) -> str:
    """The first pydantic error as 'file:line: [[key]] #n (key 'X'): field 'f': why'."""
    error = errors[0]
    loc = list(error["loc"])
    index: int | None = None
    table: str | None = None
    prefix = ""
    if len(loc) >= 2 and loc[0] == "key" and isinstance(loc[1], int):
        index, table, loc = loc[1], "key", loc[2:]
        rows = data.get("key")
        row = rows[index] if isinstance(rows, list) and index < len(rows) else None
        name = row.get("key") if isinstance(row, dict) else None
        prefix = f"[[key]] #{index + 1}" + (f" (key {name!r})" if isinstance(name, str) else "") + ": "
    elif loc and loc[0] == "match" and isinstance(data.get("match"), dict):
        table, loc, prefix = "match", loc[1:], "[match]: "
    field = str(loc[0]) if loc else None
    where = _Source(source.name, source.text, index, table).where(field)
    what = f"field {field!r}: " if field else ""
    return f"{where}: {prefix}{what}{error['msg']}"


def _load(name: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{name}: not valid TOML: {exc}") from None


def _validate(model: type[_M], name: str, text: str, data: dict[str, Any]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MappingError(_describe(exc.errors(), _Source(name, text), data)) from None


Rows = dict[str, tuple[KeyRow, _Source]]  # lower-cased 1.6 key -> (row, where it was written)


def _rows(name: str, text: str, keys: Iterable[KeyRow]) -> Rows:
    """Index one file's rows by key (case-insensitive, as 1.6 keys are); a key twice in one file is an error."""
    rows: Rows = {}
    for index, row in enumerate(keys):
        source = _Source(name, text, index)
        problem = row.problem()
        if problem is not None:
            raise MappingError(f"{source.where(problem[0])}: key {row.key!r}: field {problem[0]!r}: {problem[1]}")
        if row.key.lower() in rows:
            first = rows[row.key.lower()][1].where("key")
            raise MappingError(f"{source.where('key')}: field 'key': {row.key!r} is already mapped at {first}")
        rows[row.key.lower()] = (row, source)
    return rows


def _resolve(rows: Rows, legacy: str) -> list[KeyMapping]:
    """The rows as mappings. Errors: two keys (or a key and a mirror) at one address; a legacy row whose variable
    is not its key; a row at an address the bridge answers itself."""
    seen: dict[VariableAddress, tuple[str, _Source]] = {}
    mappings = []
    for row, source in rows.values():
        key = row.key
        address = VariableAddress(row.component or legacy, row.variable or key, row.component_instance,
                                  row.variable_instance)
        if address.component == legacy and (address.variable != key or address.component_instance):
            raise MappingError(f"{source.where('variable')}: key {key!r}: field 'variable': rows under the legacy "
                               f"component {legacy!r} must use variable = key and no component_instance")
        mirrors = tuple(m.address(legacy) for m in row.mirrors)
        for field, claimed in (("component", address), *(("mirrors", m) for m in mirrors)):
            folded = claimed.folded()
            if folded in OWNED_ADDRESSES or folded.component in PHYSICAL:
                raise MappingError(f"{source.where(field)}: key {key!r}: field {field!r}: {claimed.label()} is "
                                   "answered by the bridge itself, not by a configuration key")
            if folded in seen:
                other, other_source = seen[folded]
                raise MappingError(f"{source.where(field)}: key {key!r}: field {field!r}: address "
                                   f"{claimed.label()} is already used by key {other!r} at {other_source.where('key')}")
            seen[folded] = (key, source)
        limit = row.max_limit_of.address(legacy) if row.max_limit_of else None
        mappings.append(KeyMapping(key, address, row.data_type, row.mutability, row.unit, row.conversion,
                                   row.values_list, limit, mirrors))
    return mappings


@dataclass(frozen=True, slots=True)
class _Vendor:
    name: str
    match: MatchRow
    rows: Rows


@dataclass(slots=True)
class _Merge:
    """The rows gathered so far, which override file set what, and the vendor/model files found."""

    rows: Rows
    legacy: str
    legacy_from: _Source | None = None  # the override file that set the legacy component, if any
    overridden: dict[str, _Source] = dataclasses.field(default_factory=dict)
    vendors: list[_Vendor] = dataclasses.field(default_factory=list)

    def add(self, name: str, text: str, vendor_only: bool = False) -> None:
        data = _load(name, text)
        if vendor_only or "match" in data:
            parsed_vendor = _validate(VendorFile, name, text, data)
            self.vendors.append(_Vendor(name, parsed_vendor.match, _rows(name, text, parsed_vendor.key)))
            return
        parsed = _validate(KeyFile, name, text, data)
        extra = _rows(name, text, parsed.key)
        if parsed.legacy_component and parsed.legacy_component != self.legacy:
            if self.legacy_from is not None:
                raise MappingError(f"{_Source(name, text).where('legacy_component')}: field "
                                   f"'legacy_component': {parsed.legacy_component!r} conflicts with "
                                   f"{self.legacy!r} from {self.legacy_from.where('legacy_component')}")
            self.legacy, self.legacy_from = parsed.legacy_component, _Source(name, text)
        for key, (row, source) in extra.items():
            if key in self.overridden:
                raise MappingError(f"{source.where('key')}: field 'key': {row.key!r} is also overridden at "
                                   f"{self.overridden[key].where('key')}")
            self.overridden[key] = source
            self.rows[key] = (row, source)

    def vendor_overrides(self) -> list[VendorOverride]:
        """Each vendor file checked against the base table it changes (its own rows win)."""
        made = []
        for vendor in self.vendors:
            merged = {k: v for k, v in self.rows.items() if k not in vendor.rows} | vendor.rows
            resolved = {m.key.lower(): m for m in _resolve(merged, self.legacy)}
            made.append(VendorOverride(vendor.name, tuple(resolved[k] for k in vendor.rows), vendor.match.vendor,
                                       vendor.match.model))
        return made


def _packaged() -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """The packaged table, and the packaged vendor/model files (if any ship)."""
    root = importlib.resources.files("ocpp_bridge") / "mappings"
    table = root / PACKAGED_TABLE
    vendors = root / VENDORS
    files = sorted((str(f), f.read_text(encoding="utf-8")) for f in vendors.iterdir()
                   if f.name.endswith(".toml")) if vendors.is_dir() else []
    return (str(table), table.read_text(encoding="utf-8")), files


def load_key_table(directory: Path | None = None) -> KeyTable:
    """The packaged key table plus the overrides in ``directory``: every ``*.toml`` there (same key: the
    override wins; a file with ``[match]`` is a vendor/model override) and every ``vendors/*.toml``.

    Raises :class:`MappingError` for a malformed file, a key defined in two override files, two keys at one
    2.0.1 address, a row at a variable the bridge answers itself, or two files naming different legacy
    components.
    """
    (name, text), packaged_vendors = _packaged()
    packaged = _validate(KeyFile, name, text, _load(name, text))
    merge = _Merge(_rows(name, text, packaged.key), packaged.legacy_component or DEFAULT_LEGACY_COMPONENT)
    for vendor_name, vendor_text in packaged_vendors:
        merge.add(vendor_name, vendor_text, vendor_only=True)
    if directory is not None:
        if not directory.is_dir():
            raise MappingError(f"{directory}: not a directory")
        for path in sorted(directory.glob("*.toml")):
            merge.add(str(path), path.read_text(encoding="utf-8"))
        for path in sorted((directory / VENDORS).glob("*.toml")):
            merge.add(str(path), path.read_text(encoding="utf-8"), vendor_only=True)
    base = _resolve(merge.rows, merge.legacy)
    return KeyTable(base, merge.legacy, merge.vendor_overrides())
