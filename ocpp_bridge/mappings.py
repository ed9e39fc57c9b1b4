"""Loads the 1.6 configuration-key <-> 2.0.1 variable tables (``mappings/*.toml``) into a frozen KeyTable.

Why this exists: the key table is data an operator may extend per charger model (DESIGN.md convention 4), so
it must be checked as strictly as code: a typo in a data type, a conversion that does not exist, or two keys
claiming one address must stop the bridge at start-up with a message that names the file, the line and the
field, not surface later as a wrong GetVariables answer. The core only ever sees the validated
:class:`~ocpp_bridge.core.devicemodel.KeyTable`.

The packaged table (``ocpp_bridge/mappings/config_keys.toml``) is always read first; an override directory adds
rows, and a row for a key the packaged table already has replaces it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .core.devicemodel import (
    CONVERSIONS,
    DEFAULT_LEGACY_COMPONENT,
    KeyMapping,
    KeyTable,
    VariableAddress,
)

PACKAGED_TABLE = "config_keys.toml"

DataType = Literal["string", "decimal", "integer", "dateTime", "boolean", "OptionList", "SequenceList",
                   "MemberList", "passwordString"]  # 2.0.1 DataEnumType
Mutability = Literal["ReadOnly", "ReadWrite", "WriteOnly"]  # 2.0.1 MutabilityEnumType
# Names and instances are 2.0.1 string[50]; 1.6 keys are CiString50.

# A conversion only makes sense for values of a matching 2.0.1 data type.
_CONVERSION_TYPES: dict[str, frozenset[str]] = {
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer"}),
    "list": frozenset({"MemberList", "SequenceList", "OptionList", "string"}),
    "rate_unit": frozenset({"MemberList", "OptionList"}),
}


class MappingError(ValueError):
    """A mapping file is malformed; the message names the file, the line (when known) and the field."""


class KeyRow(BaseModel):
    """One ``[[key]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    key: str = Field(min_length=1, max_length=50)
    component: str | None = Field(default=None, min_length=1, max_length=50)
    variable: str | None = Field(default=None, min_length=1, max_length=50)
    component_instance: str | None = Field(default=None, min_length=1, max_length=50)
    variable_instance: str | None = Field(default=None, min_length=1, max_length=50)
    data_type: DataType
    mutability: Mutability
    unit: str | None = Field(default=None, min_length=1, max_length=16)  # VariableCharacteristicsType.unit
    conversion: str = "none"

    @field_validator("conversion")
    @classmethod
    def _known_conversion(cls, value: str) -> str:
        if value not in CONVERSIONS:
            raise ValueError(f"unknown conversion {value!r}; known: {', '.join(sorted(CONVERSIONS))}")
        return value

    def conversion_problem(self) -> str | None:
        allowed = _CONVERSION_TYPES.get(self.conversion)
        if allowed is not None and self.data_type not in allowed:
            return f"conversion {self.conversion!r} does not fit data_type {self.data_type!r}"
        return None


class KeyFile(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    legacy_component: str | None = Field(default=None, min_length=1, max_length=50)
    key: list[KeyRow] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a row came from, for error messages."""

    name: str
    text: str
    index: int | None = None  # position of the row among the file's [[key]] tables

    def where(self, field: str | None = None) -> str:
        line = _line_of(self.text, self.index, field)
        return f"{self.name}:{line}" if line is not None else self.name


_HEADER = re.compile(r"^\s*\[\[\s*key\s*\]\]")
_ANY_HEADER = re.compile(r"^\s*\[")


def _line_of(text: str, index: int | None, field: str | None) -> int | None:
    """1-based line of ``field`` in the ``index``-th ``[[key]]`` table (or at the top level when ``None``)."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if _HEADER.match(line)]
    if index is None:
        start = 0
        end = next((n for n, line in enumerate(lines) if _ANY_HEADER.match(line)), len(lines))
    elif index < len(headers):
        start = headers[index]
        end = headers[index + 1] if index + 1 < len(headers) else len(lines)
    else:
        return None
    if field is not None:
        pattern = re.compile(rf"^\s*{re.escape(field)}\s*=")
        for number in range(start, end):
            if pattern.match(lines[number]):
                return number + 1
    return start + 1 if index is not None else None


def _describe(errors: list[Any], source: _Source, data: dict[str, Any]) -> str:
    """The first pydantic error as 'file:line: [[key]] #n (key 'X'): field 'f': why'."""
    error = errors[0]
    loc = list(error["loc"])
    index: int | None = None
    if len(loc) >= 2 and loc[0] == "key" and isinstance(loc[1], int):
        index = loc[1]
        loc = loc[2:]
    field = str(loc[0]) if loc else None
    where = _Source(source.name, source.text, index).where(field)
    prefix = ""
    if index is not None:
        rows = data.get("key")
        row = rows[index] if isinstance(rows, list) and index < len(rows) else None
        name = row.get("key") if isinstance(row, dict) else None
        prefix = f"[[key]] #{index + 1}" + (f" (key {name!r})" if isinstance(name, str) else "") + ": "
    what = f"field {field!r}: " if field else ""
    return f"{where}: {prefix}{what}{error['msg']}"


def _parse(name: str, text: str) -> KeyFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{name}: not valid TOML: {exc}") from None
    try:
        return KeyFile.model_validate(data)
    except ValidationError as exc:
        raise MappingError(_describe(exc.errors(), _Source(name, text), data)) from None


def _rows(name: str, text: str) -> tuple[KeyFile, dict[str, tuple[KeyRow, _Source]]]:
    """Parse one file and index its rows by key; a key twice in one file is an error."""
    parsed = _parse(name, text)
    rows: dict[str, tuple[KeyRow, _Source]] = {}
    for index, row in enumerate(parsed.key):
        source = _Source(name, text, index)
        problem = row.conversion_problem()
        if problem is not None:
            raise MappingError(f"{source.where('conversion')}: key {row.key!r}: field 'conversion': {problem}")
        if row.key in rows:
            first = rows[row.key][1].where("key")
            raise MappingError(f"{source.where('key')}: field 'key': {row.key!r} is already mapped at {first}")
        rows[row.key] = (row, source)
    return parsed, rows


def _resolve(rows: dict[str, tuple[KeyRow, _Source]], legacy: str) -> KeyTable:
    """Build the table; two keys at one address, or a legacy row whose variable is not its key, are errors."""
    seen: dict[VariableAddress, tuple[str, _Source]] = {}
    mappings = []
    for key, (row, source) in rows.items():
        address = VariableAddress(row.component or legacy, row.variable or key, row.component_instance,
                                  row.variable_instance)
        if address.component == legacy and (address.variable != key or address.component_instance):
            raise MappingError(f"{source.where('variable')}: key {key!r}: field 'variable': rows under the legacy "
                               f"component {legacy!r} must use variable = key and no component_instance")
        if address in seen:
            other, other_source = seen[address]
            raise MappingError(f"{source.where('component')}: key {key!r}: field 'component': address "
                               f"{address.label()} is already used by key {other!r} at {other_source.where('key')}")
        seen[address] = (key, source)
        mappings.append(KeyMapping(key, address, row.data_type, row.mutability, row.unit, row.conversion))
    return KeyTable(mappings, legacy)


def _packaged() -> tuple[str, str]:
    resource = importlib.resources.files("ocpp_bridge") / "mappings" / PACKAGED_TABLE
    return str(resource), resource.read_text(encoding="utf-8")


@dataclass(slots=True)
class _Merge:
    """The rows gathered so far, and which override file set what."""

    rows: dict[str, tuple[KeyRow, _Source]]
    legacy: str
    legacy_from: _Source | None = None  # the override file that set the legacy component, if any
    overridden: dict[str, _Source] = dataclasses.field(default_factory=dict)

    def add(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        parsed, extra = _rows(str(path), text)
        if parsed.legacy_component and parsed.legacy_component != self.legacy:
            if self.legacy_from is not None:
                raise MappingError(f"{_Source(str(path), text).where('legacy_component')}: field "
                                   f"'legacy_component': {parsed.legacy_component!r} conflicts with "
                                   f"{self.legacy!r} from {self.legacy_from.where('legacy_component')}")
            self.legacy, self.legacy_from = parsed.legacy_component, _Source(str(path), text)
        for key, (row, source) in extra.items():
            if key in self.overridden:
                raise MappingError(f"{source.where('key')}: field 'key': {key!r} is also overridden at "
                                   f"{self.overridden[key].where('key')}")
            self.overridden[key] = source
            self.rows[key] = (row, source)


def load_key_table(directory: Path | None = None) -> KeyTable:
    """The packaged key table, plus every ``*.toml`` in ``directory`` (same key: the override wins).

    Raises :class:`MappingError` for a malformed file, a key defined in two override files, two keys at one
    2.0.1 address, or two override files naming different legacy components.
    """
    name, text = _packaged()
    packaged, rows = _rows(name, text)
    merge = _Merge(rows, packaged.legacy_component or DEFAULT_LEGACY_COMPONENT)
    if directory is not None:
        if not directory.is_dir():
            raise MappingError(f"{directory}: not a directory")
        for path in sorted(directory.glob("*.toml")):
            merge.add(path)
    return _resolve(merge.rows, merge.legacy)
