"""GetVariables / SetVariables -> GetConfiguration / ChangeConfiguration (2.0.1 B05, B06; 1.6 §5.4, §5.8).

Why this exists: a 2.0.1 CSMS addresses settings as Component.Variable and expects one result per item, in
order, echoing what it asked; a 1.6 charger has flat keys, reads many in one GetConfiguration and writes one per
ChangeConfiguration. The key table (``settings.keys``) says which key an address means and how its value is
spelled; this module decides per item what the bridge can answer itself (unknown address, attribute types 1.6
does not have, read-only or write-only variables, values 1.6 cannot hold) and asks the charger for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..devicemodel import KeyMapping, KeyTable, VariableAddress
from ..lanes import Outcome, Step, sequence
from . import from_csms

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# 1.6 ConfigurationStatus -> 2.0.1 SetVariableStatusEnumType (mapping reference §3.6).
SET_STATUS: Final = {
    "Accepted": "Accepted",
    "Rejected": "Rejected",
    "RebootRequired": "RebootRequired",
    "NotSupported": "UnknownVariable",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An item the bridge answers without the charger."""

    status: str  # attributeStatus
    reason: str | None = None  # attributeStatusInfo.reasonCode


def _result(item: dict[str, Any], attribute_status: str, reason: str | None = None,
            info: str | None = None) -> dict[str, Any]:
    """One result echoing the item's component, variable and attributeType (B05.FR.01-03, B06.FR.01-03);
    an absent attributeType means Actual and is answered as such (B05.FR.12)."""
    result: dict[str, Any] = {"attributeStatus": attribute_status, "attributeType": item.get("attributeType", "Actual"),
                              "component": item["component"], "variable": item["variable"]}
    if reason is not None:
        result["attributeStatusInfo"] = {"reasonCode": reason[:20]} | ({"additionalInfo": info[:512]} if info else {})
    return result


def _lookup(keys: KeyTable, item: dict[str, Any]) -> KeyMapping | Refusal:
    """The 1.6 key an item addresses, or why there is none."""
    component, variable = item["component"], item["variable"]
    if "evse" in component or not keys.knows_component(component["name"]):  # B06.FR.06 / B05.FR.04
        return Refusal("UnknownComponent")
    address = VariableAddress(component["name"], variable["name"], component.get("instance"),
                              variable.get("instance"))
    mapping = keys.for_address(address)
    # A key with a standard home is reachable there only (so its mutability holds); a legacy address with a
    # variable instance names no 1.6 key.
    if mapping is None or keys.for_key(mapping.key).address != address:
        return Refusal("UnknownVariable")  # B06.FR.07 / B05.FR.05
    if item.get("attributeType", "Actual") != "Actual":  # B06.FR.08 / B05.FR.06: 1.6 has actual values only
        return Refusal("NotSupportedAttributeType")
    return mapping


# --- GetVariables -------------------------------------------------------------------------------------------


def _read(mapping: KeyMapping | Refusal) -> KeyMapping | Refusal:
    if isinstance(mapping, KeyMapping) and mapping.mutability == "WriteOnly":
        return Refusal("Rejected", "WriteOnly")  # B06.FR.09
    return mapping


def _got(item: dict[str, Any], mapping: KeyMapping, entry: dict[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        return _result(item, "UnknownVariable", "NotFound", "the charger does not have this key")
    raw = entry.get("value", "")
    result = _result(item, "Accepted")
    result["attributeValue"] = KeyTable.to_v2(mapping, raw) if raw else raw
    if result["attributeValue"] is None:  # a value the conversion does not understand: show it as it is
        result["attributeValue"] = raw
    return result


@from_csms("GetVariables", becomes=("GetConfiguration",),
           note="one GetConfiguration for all mapped keys; unknown addresses, non-Actual attribute types and "
                "write-only variables answered by the bridge; values converted per the key table")
def get_variables(session: TranslatingSession, call: Call) -> None:
    items = call.payload["getVariableData"]
    lookups = [_read(_lookup(session.settings.keys, item)) for item in items]
    keys = list(dict.fromkeys(m.key for m in lookups if isinstance(m, KeyMapping)))

    def results(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [_got(item, m, found.get(m.key.lower())) if isinstance(m, KeyMapping)
                else _result(item, m.status, m.reason) for item, m in zip(items, lookups, strict=True)]

    if not keys:
        session.reply_csms(call, {"getVariableResult": results({})})
        return

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        # 1.6 keys are case-insensitive (CiString50): match the charger's spelling whatever it is.
        found = {entry["key"].lower(): entry for entry in outcome.result.get("configurationKey", [])}
        session.reply_csms(call, {"getVariableResult": results(found)})

    session.call_charger("GetConfiguration", {"key": keys}, answered)


# --- SetVariables -------------------------------------------------------------------------------------------


def _write(keys: KeyTable, item: dict[str, Any]) -> tuple[str, str] | Refusal:
    """The (key, 1.6 value) an item writes, or why the bridge refuses it."""
    mapping = _lookup(keys, item)
    if not isinstance(mapping, KeyMapping):
        return mapping
    if mapping.mutability == "ReadOnly":  # B05.FR.08
        return Refusal("Rejected", "ReadOnly")
    value = KeyTable.to_v16(mapping, item["attributeValue"])
    if value is None:  # B05.FR.07: badly formatted, or longer than a 1.6 value can be
        return Refusal("Rejected", "InvalidValue")
    return mapping.key, value


class _Writer:
    """Runs the ChangeConfigurations of one SetVariables in order; each item's failure stays its own."""

    def __init__(self, session: TranslatingSession, call: Call) -> None:
        self.session = session
        self.call = call
        self.items: list[dict[str, Any]] = call.payload["setVariableData"]
        self.results: list[dict[str, Any] | None] = [None] * len(self.items)
        self.abandoned = False  # the charger stopped answering: do not wait a timeout per remaining item

    def step(self, index: int, key: str, value: str) -> Step:
        def run(then: Callable[[Outcome], None]) -> None:
            if self.abandoned:
                self.results[index] = _result(self.items[index], "Rejected", "NoAnswer",
                                              "the charger stopped answering")
                then(Outcome(payload={}))
                return
            started = self.session.now

            def answered(outcome: Outcome) -> None:
                self.results[index] = self._item_result(index, outcome, started)
                then(Outcome(payload={}))  # never end the sequence: every item gets its own result

            self.session.call_charger("ChangeConfiguration", {"key": key, "value": value}, answered)

        return run

    def _item_result(self, index: int, outcome: Outcome, started: float) -> dict[str, Any]:
        item = self.items[index]
        if outcome.ok:
            return _result(item, SET_STATUS[outcome.result["status"]])
        assert outcome.error is not None
        if outcome.timed_out:
            # The charger is not answering: the remaining items are refused at once instead of each waiting out
            # its own timeout.
            self.abandoned = True
        code = outcome.error.code.value  # reasonCode is string[20]: a longer code goes into the info
        reason = code if len(code) <= 20 else "CallError"
        return _result(item, "Rejected", reason, f"{code}: {outcome.error.description}")

    def finish(self, _outcomes: list[Outcome]) -> None:
        self.session.reply_csms(self.call, {"setVariableResult": self.results})


@from_csms("SetVariables", becomes=("ChangeConfiguration",),
           note="one ChangeConfiguration per item, in order; NotSupported -> UnknownVariable; read-only, "
                "unknown and unconvertible items answered by the bridge; a failed item is Rejected, the rest go on")
def set_variables(session: TranslatingSession, call: Call) -> None:
    writer = _Writer(session, call)
    steps: list[Step] = []
    for index, item in enumerate(writer.items):
        write = _write(session.settings.keys, item)
        if isinstance(write, Refusal):
            writer.results[index] = _result(item, write.status, write.reason)
        else:
            steps.append(writer.step(index, *write))
    sequence(steps, writer.finish)
