"""Payload validation against the official OCA JSON schemas shipped in the ``ocpp`` package.

Why this exists: every frame in either direction is checked before it is translated or forwarded, and the
answer to a bad one is a CALLERROR whose code says *what kind* of violation it was (OCPP-J §4.2.3). The
``ocpp`` package validates with jsonschema at 0.4-1 ms per MeterValues frame; here each schema is compiled once
with fastjsonschema (~15 us per frame) and cached per (version, action, direction). Most schemas also compile to a
msgspec type (:mod:`.fastcheck`, ~1-2 us per frame) that accepts only payloads the schema accepts: it is tried
first, and the fastjsonschema validator runs only when it rejects, to decide and to word the violation.

Only the schema *files* of the ``ocpp`` package are used: they are read as data, not imported as code.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import fastjsonschema
import msgspec
import orjson
from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06
from fastjsonschema.draft07 import CodeGeneratorDraft07
from fastjsonschema.ref_resolver import RefResolver

from . import fastcheck
from .rpc import ErrorCode, Version

Validator = Callable[[Any], Any]

_SCHEMA_DIRS: Final = {Version.V16: "v16", Version.V201: "v201", Version.V21: "v21"}

# fastjsonschema rule name -> the OCPP-J error category (2.0.1 Part 4 §4.3 definitions):
#   Occurrence: a required field is missing or there are too many/few items;
#   Type: a field has the wrong JSON type; Format: the payload does not have the PDU's structure;
#   Property: a field is syntactically right but its value is not allowed.
_RULE_CODES: Final = {
    "required": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "additionalProperties": ErrorCode.FORMAT_VIOLATION,
}


# RFC 3339 date-time (OCPP-J: all dateTime fields). The shape is checked here and the value by datetime, so a
# timestamp the schema accepts is one the bridge can convert (convert.timestamp): fastjsonschema's own regex lets
# through leap seconds, year 0 and instants that overflow when moved to UTC, which then broke the handler.
_DATE_TIME: Final = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:?\d\d)")


def _date_time(value: str) -> bool:
    if not _DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z")).astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True


_FORMATS: Final = {"date-time": _date_time}


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a payload failed its schema, ready to become a CALLERROR."""

    code: ErrorCode
    message: str


def _schema_file(version: Version, action: str, response: bool) -> str | None:
    if version is Version.V16 or action in _send_only(version):
        # 1.6 names requests Action.json; 2.1 SEND-only messages (21P4 §4.2.4) have one schema and no answer
        if response:
            return None if version.is_2x else f"{action}Response.json"
        return f"{action}.json"
    return f"{action}Response.json" if response else f"{action}Request.json"


@functools.cache
def _send_only(version: Version) -> frozenset[str]:
    """2.x messages with a single schema file (no Request/Response suffix), e.g. NotifyPeriodicEventStream."""
    if version is Version.V16:
        return frozenset()
    names = (entry.name for entry in _schema_root(version).iterdir())
    return frozenset(name[:-5] for name in names
                     if name.endswith(".json") and not name.endswith(("Request.json", "Response.json")))


@functools.cache
def _schema_root(version: Version) -> importlib.resources.abc.Traversable:
    return importlib.resources.files("ocpp") / _SCHEMA_DIRS[version] / "schemas"


@functools.cache
def actions(version: Version) -> frozenset[str]:
    """Every action that has a request schema in ``version`` (the set of actions that version knows)."""
    suffix = ".json" if version is Version.V16 else "Request.json"
    names = (entry.name for entry in _schema_root(version).iterdir())
    return frozenset(
        name[: -len(suffix)]
        for name in names
        if name.endswith(suffix) and not (version is Version.V16 and name.endswith("Response.json"))
    ) | _send_only(version)


def _schema(version: Version, action: str, response: bool) -> dict[str, Any] | None:
    """A fresh copy of the schema of ``action`` (``None`` if there is none)."""
    filename = _schema_file(version, action, response) if action in actions(version) else None
    if filename is None:
        return None
    schema: dict[str, Any] = orjson.loads((_schema_root(version) / filename).read_bytes())
    return schema


@functools.cache
def _validator(version: Version, action: str, response: bool) -> Validator | None:
    schema = _schema(version, action, response)
    if schema is None:
        return None
    schema.pop("$id", None)  # urn ids confuse $ref resolution and are not needed: all refs are local
    return _compile(schema)


@functools.cache
def _fast_type(version: Version, action: str, response: bool) -> Any | None:
    """The msgspec type that accepts only payloads the schema accepts (:mod:`.fastcheck`), or ``None``."""
    schema = _schema(version, action, response)
    if schema is None:
        return None
    return fastcheck.compile_schema(schema, f"{version.name}_{action}{'Response' if response else ''}")


def _compile(schema: dict[str, Any]) -> Validator:
    """``fastjsonschema.compile`` with the generator of :func:`_set_enums`; use_default=False: validation must never
    change a payload (fastjsonschema fills defaults otherwise)."""
    draft = str(schema.get("$schema", ""))
    base = CodeGeneratorDraft04 if "draft-04" in draft else CodeGeneratorDraft06 if "draft-06" in draft \
        else CodeGeneratorDraft07
    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    generator = _set_enums(base)(schema, resolver=resolver, formats=_FORMATS, use_default=False)
    namespace = generator.global_state
    exec(generator.func_code, namespace)  # what fastjsonschema.compile does with the code it generated
    return functools.partial(namespace[resolver.get_scope_name()], custom_formats=_FORMATS)


@functools.cache
def _set_enums(base: type[CodeGeneratorDraft04]) -> type[CodeGeneratorDraft04]:
    """fastjsonschema checks an enum value against each member in turn (``isinstance(x, str) and x == 'A' or
    isinstance(x, str) and x == 'B' ...``): 22 measurands cost up to 44 calls per sampled value. A string enum is
    checked here with one set lookup instead; it accepts exactly the same values and raises the same error."""

    class Generator(base):  # type: ignore[valid-type, misc]
        def generate_enum(self) -> None:
            enum = self._definition["enum"]
            if not (isinstance(enum, list) and enum and all(type(member) is str for member in enum)):
                super().generate_enum()
                return
            members = "{" + ", ".join(repr(member) for member in enum) + "}"  # a constant frozenset once compiled
            with self.l("if not (isinstance({variable}, str) and {variable} in " + members.replace("{", "{{")
                        .replace("}", "}}") + "):"):
                self.exc("{name} must be one of {}", self.e(enum), rule="enum")

    return Generator


def knows(version: Version, action: str) -> bool:
    return action in actions(version)


def check(version: Version, action: str, payload: dict[str, Any], *, response: bool) -> Violation | None:
    """Validate ``payload`` of ``action``; ``None`` when valid. Unknown actions are the caller's business."""
    fast = _fast_type(version, action, response)
    if fast is not None:
        try:
            msgspec.convert(payload, fast, strict=True)  # builds a new object (discarded); payload is untouched
        except Exception:  # ValidationError, or e.g. ValueError for Decimal("sNaN"): not proven valid
            pass  # maybe only stricter than the schema: the validator decides, and words the violation
        else:
            return None
    validator = _validator(version, action, response)
    if validator is None:
        return Violation(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action!r}")
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = exc.message.replace("data.", "", 1).replace("data ", "payload ", 1)
        code = _RULE_CODES.get(exc.rule or "", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION)
        return Violation(code, f"{action}{'Response' if response else ''}: {where}"[:255])
    except (RecursionError, ValueError, TypeError) as exc:  # pathological input must not escape (CVE-2025-59399)
        return Violation(ErrorCode.FORMAT_VIOLATION, f"{action}: payload cannot be validated ({type(exc).__name__})")
    return None


def warm(version: Version) -> None:
    """Compile every schema of ``version`` now, so the first frames do not pay for it."""
    for action in actions(version):
        _validator(version, action, False)
        _validator(version, action, True)
        _fast_type(version, action, False)
        _fast_type(version, action, True)
