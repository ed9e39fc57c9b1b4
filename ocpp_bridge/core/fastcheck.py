"""A fast, sound pre-check of payloads: an OCA JSON schema compiled into a msgspec type.

Why this exists: schema validation is about a fifth of the core's time. fastjsonschema spends ~11 us on a 1.6
MeterValues with 10 sampled values; ``msgspec.convert(payload, T, strict=True)`` checks the same dict against an
equivalent type in ~2 us. :mod:`.validate` tries the type first and, only when it rejects the payload, runs the
fastjsonschema validator, which decides and words the error exactly as before.

So the one property that matters is soundness: whatever the type accepts, the schema accepts. The compiler is
therefore deliberately narrow. It understands the keywords the OCA 1.6, 2.0.1 and 2.1 schemas use in the forms
they use them (objects with ``properties``, ``required``, ``additionalProperties: false``; local ``$ref``; string
enums; ``maxLength``/``minLength``; integer and number bounds; arrays with an item schema and
``minItems``/``maxItems``; ``format: date-time``) and returns ``None`` -- no fast path, the schema alone decides --
for a schema with anything else anywhere in it (``multipleOf``, ``format: uri``, ``anyOf``, type lists, ...).

Where the type is stricter than the schema it costs only time (the slow path runs and may still accept):
``date-time`` is checked with a conservative pattern (years 1900-2999, days that exist in every year, no leap
seconds, upper-case ``T``/``Z``), integers must be Python ints (not ``5.0``), and so on.

The payloads are JSON documents as ``orjson`` parses them or as the translators build them (dict, list, str, int,
float, bool, None). msgspec also takes a set for an array and any Mapping for an object, which fastjsonschema does
not; such values are not JSON, and no translator builds them (a set would not serialize either).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

# Keywords that do not constrain the instance (or, for ``default``, only would with use_default, which the
# validator does not use).
_ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "title", "description", "comment", "$comment", "javaType", "default", "definitions"}
)

# RFC 3339 timestamps that validate._date_time surely accepts: its shape regex matches them and
# datetime.fromisoformat(...).astimezone(UTC) parses them without overflow. Every day here exists in every year
# (29 February falls back to the slow path), seconds stop at 59, years stay far from datetime's limits.
_DATE_TIME: Final = (
    r"\A(?:19[0-9]{2}|2[0-9]{3})-"
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])\Z"
)
DATE_TIME_PATTERN: Final = re.compile(_DATE_TIME)

_FLOAT_EXACT: Final = 2**53  # a number bound beyond this could compare differently once an int became a float


class _Unsupported(Exception):
    """The schema uses something the compiler does not fully understand."""


def compile_schema(schema: dict[str, Any], name: str = "Payload") -> Any | None:
    """The msgspec type equivalent to (or stricter than) ``schema``, or ``None`` when there is none."""
    try:
        return _Compiler(schema, name).root()
    except _Unsupported:
        return None


class _Compiler:
    def __init__(self, schema: dict[str, Any], name: str) -> None:
        self.schema = schema
        self.name = name
        definitions = schema.get("definitions", {})
        if not isinstance(definitions, dict):
            raise _Unsupported("definitions")
        self.definitions: dict[str, Any] = definitions
        self.resolved: dict[str, Any] = {}
        self.resolving: set[str] = set()
        self.structs = 0

    def root(self) -> Any:
        if not isinstance(self.schema, dict) or self.schema.get("type") != "object":
            raise _Unsupported("root")
        return self.node(self.schema)

    def node(self, node: Any) -> Any:
        if not isinstance(node, dict):
            raise _Unsupported("node")
        keys = set(node.keys() - _ANNOTATIONS)
        if "$ref" in keys:
            if keys != {"$ref"}:
                raise _Unsupported("$ref siblings")
            return self.ref(node["$ref"])
        if not keys:  # no constraint at all, e.g. DataTransfer's data: any value
            return Any
        if node.get("type") != "object":  # an object keyword only constrains objects; this node cannot be one
            keys.discard("additionalProperties")
        if "enum" in node:
            return self.enum(node, keys)
        kind = node.get("type")
        if kind == "object":
            return self.object(node, keys)
        if kind == "array":
            return self.array(node, keys)
        if kind == "string":
            return self.string(node, keys)
        if kind == "integer":
            return self.integer(node, keys)
        if kind == "number":
            return self.number(node, keys)
        if kind == "boolean":
            if keys != {"type"}:
                raise _Unsupported("boolean")
            return bool
        raise _Unsupported(f"type {kind!r}")

    def ref(self, ref: Any) -> Any:
        prefix = "#/definitions/"
        if not isinstance(ref, str) or not ref.startswith(prefix) or "/" in ref[len(prefix):] or "~" in ref:
            raise _Unsupported("ref")
        target = ref[len(prefix):]
        if target in self.resolved:
            return self.resolved[target]
        if target in self.resolving or target not in self.definitions:
            raise _Unsupported("recursive or missing ref")
        self.resolving.add(target)
        compiled = self.node(self.definitions[target])
        self.resolving.discard(target)
        self.resolved[target] = compiled
        return compiled

    def enum(self, node: dict[str, Any], keys: set[str]) -> Any:
        members = node["enum"]
        if keys - {"enum", "type", "maxLength", "minLength"} or node.get("type", "string") != "string":
            raise _Unsupported("enum")
        if not isinstance(members, list) or not all(type(member) is str for member in members):
            raise _Unsupported("enum members")
        bounds = self.length(node, "minLength", "maxLength")
        low, high = bounds.get("min_length", 0), bounds.get("max_length")
        allowed = tuple(dict.fromkeys(
            member for member in members if len(member) >= low and (high is None or len(member) <= high)))
        if not allowed:
            raise _Unsupported("empty enum")
        return Literal[allowed]

    def string(self, node: dict[str, Any], keys: set[str]) -> Any:
        if keys - {"type", "maxLength", "minLength", "format"}:
            raise _Unsupported("string")
        constraints: dict[str, Any] = self.length(node, "minLength", "maxLength")
        if "format" in node:
            if node["format"] != "date-time":
                raise _Unsupported("format")
            constraints["pattern"] = _DATE_TIME
        return Annotated[str, Meta(**constraints)] if constraints else str

    def integer(self, node: dict[str, Any], keys: set[str]) -> Any:
        return self.bounded(node, keys, int, (int,))

    def number(self, node: dict[str, Any], keys: set[str]) -> Any:
        return self.bounded(node, keys, float, (int, float))

    def bounded(self, node: dict[str, Any], keys: set[str], base: type, bound_types: tuple[type, ...]) -> Any:
        names = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
        if keys - {"type", *names}:
            raise _Unsupported("number keywords")
        constraints: dict[str, Any] = {}
        for keyword_, meta in names.items():
            if keyword_ not in node:
                continue
            bound = node[keyword_]
            # draft-04's boolean exclusiveMinimum/Maximum is not supported (no OCA schema uses either form)
            if type(bound) is float and base is int and bound.is_integer():
                bound = int(bound)  # "minimum": 0.0 on an integer: the same as 0 for every int
            if type(bound) not in bound_types or not math.isfinite(bound) or abs(bound) >= _FLOAT_EXACT:
                raise _Unsupported("bound")
            constraints[meta] = bound
        return Annotated[base, Meta(**constraints)] if constraints else base

    def array(self, node: dict[str, Any], keys: set[str]) -> Any:
        if keys - {"type", "items", "additionalItems", "minItems", "maxItems"}:
            raise _Unsupported("array")
        if not isinstance(node.get("items"), dict):  # a list of item schemas (tuple form) is not supported
            raise _Unsupported("items")
        item = self.node(node["items"])  # with one item schema, additionalItems has no effect
        constraints = self.length(node, "minItems", "maxItems")
        return Annotated[list[item], Meta(**constraints)] if constraints else list[item]  # type: ignore[valid-type]

    def object(self, node: dict[str, Any], keys: set[str]) -> Any:
        if keys - {"type", "properties", "required", "additionalProperties"}:
            raise _Unsupported("object")
        properties = node.get("properties", {})
        required = node.get("required", [])
        closed = node.get("additionalProperties", True)
        if not isinstance(properties, dict) or not isinstance(required, list) or type(closed) is not bool:
            raise _Unsupported("object shape")
        if not all(isinstance(name, str) for name in required) or not set(required) <= properties.keys():
            raise _Unsupported("required")
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for index, (prop, subschema) in enumerate(properties.items()):
            field = f"f{index}"  # JSON names need not be identifiers ("class", "x-y"): each field is renamed
            rename[field] = prop
            kind = self.node(subschema)
            if prop in required:
                fields.append((field, kind))
            else:  # absent is fine; an explicit null is not (the schema says nothing allows null)
                fields.append((field, kind | msgspec.UnsetType, msgspec.UNSET))
        self.structs += 1
        return msgspec.defstruct(
            f"{self.name}_{self.structs}", fields, kw_only=True, rename=rename, forbid_unknown_fields=not closed
        )

    @staticmethod
    def length(node: dict[str, Any], low_key: str, high_key: str) -> dict[str, Any]:
        """msgspec's min_length/max_length for a string's or an array's lower and upper bound keywords."""
        constraints: dict[str, Any] = {}
        for key, meta in ((low_key, "min_length"), (high_key, "max_length")):
            value = node.get(key)
            if value is None:
                continue
            if type(value) is not int or value < 0:
                raise _Unsupported(key)
            constraints[meta] = value
        return constraints
