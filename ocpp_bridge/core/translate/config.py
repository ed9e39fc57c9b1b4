"""GetVariables / SetVariables -> GetConfiguration / ChangeConfiguration (2.0.1 B05, B06; 1.6 §5.4, §5.8).

Why this exists: a 2.0.1 CSMS addresses settings as Component.Variable and expects one result per item, in
order, echoing what it asked; a 1.6 charger has flat keys, reads many in one GetConfiguration and writes one per
ChangeConfiguration. The key table (``settings.keys`` with the charger's vendor/model overrides) says which key
an address means and how its value is spelled; the synthesized model (``core/inventory.py``) holds the variables
the bridge answers itself. This module decides per item what the bridge can answer alone (its own variables,
unknown addresses, attribute types 1.6 does not have, read-only or write-only variables, values 1.6 cannot hold)
and asks the charger for the rest: a value read through GetVariables always comes from the charger, never from
the bridge's copy. What the charger answers keeps that copy (ChargerMeta.config_keys) current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .. import inventory
from ..devicemodel import (
    ConfigView,
    KeyMapping,
    KeyTable,
    VariableAddress,
    remember_values,
    remember_write,
    station_keys,
)
from ..lanes import Outcome, Step, sequence
from . import from_csms, reports

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


@dataclass(frozen=True, slots=True)
class Keyed:
    """An item a 1.6 key answers; ``mirror``: an address that shows the key's value read-only."""

    mapping: KeyMapping
    mirror: bool = False


Found = Keyed | inventory.Variable | Refusal


def _result(item: dict[str, Any], attribute_status: str, reason: str | None = None,
            info: str | None = None) -> dict[str, Any]:
    """One result echoing the item's component, variable and attributeType (B05.FR.01-03, B06.FR.01-03);
    an absent attributeType means Actual and is answered as such (B05.FR.12)."""
    result: dict[str, Any] = {"attributeStatus": attribute_status, "attributeType": item.get("attributeType", "Actual"),
                              "component": item["component"], "variable": item["variable"]}
    if reason is not None:
        result["attributeStatusInfo"] = {"reasonCode": reason[:20]} | ({"additionalInfo": info[:512]} if info else {})
    return result


class _Model:
    """What one Get/SetVariables request is resolved against: the charger's key table and the bridge's model."""

    def __init__(self, session: TranslatingSession) -> None:
        self.keys = station_keys(session.settings.keys, session.meta)
        variables, rest = reports.index(session)
        self.owned = {address: v for address, v in variables.items() if v.key is None}
        self.components = inventory.components([*variables.values(), *rest])
        self.cache = ConfigView(session.meta)

    def lookup(self, item: dict[str, Any]) -> Found:
        address = VariableAddress.of(item["component"], item["variable"])
        known = (address.component.lower(), address.evse, address.connector) in self.components or (
            address.evse is None and self.keys.knows_component(address.component))
        if not known:
            return Refusal("UnknownComponent")  # B06.FR.06 / B05.FR.04
        found = self._find(address)
        if isinstance(found, Refusal):
            return found
        if item.get("attributeType", "Actual") != "Actual":  # B06.FR.08 / B05.FR.06: 1.6 has actual values only
            return Refusal("NotSupportedAttributeType")
        return found

    def _find(self, address: VariableAddress) -> Found:
        folded = address.folded()
        owned = self.owned.get(folded)
        if owned is not None:
            return owned
        if folded in inventory.OWNED_ADDRESSES or folded.component in inventory.PHYSICAL:
            return Refusal("UnknownVariable")  # the bridge's own, but it has no value for this charger
        mirrored = self.keys.mirror(address)
        if mirrored is not None:
            return Keyed(mirrored, mirror=True)
        mapping = self.keys.for_address(address)
        # a key with a standard home is reachable there only (so its mutability holds); a legacy address with
        # an instance names no 1.6 key
        return Refusal("UnknownVariable") if mapping is None else Keyed(mapping)  # B06.FR.07 / B05.FR.05


# --- GetVariables -------------------------------------------------------------------------------------------


def _read(found: Found) -> Found:
    if isinstance(found, Keyed) and found.mapping.mutability == "WriteOnly":
        return Refusal("Rejected", "WriteOnly")  # B06.FR.09: never read back (AuthorizationKey)
    return found


def _local(item: dict[str, Any], variable: inventory.Variable) -> dict[str, Any]:
    return _result(item, "Accepted") | {"attributeValue": variable.value or ""}


def _got(item: dict[str, Any], keyed: Keyed, entry: dict[str, Any] | None) -> dict[str, Any]:
    if entry is None:
        fallback = inventory.FALLBACKS.get(keyed.mapping.address.folded())
        if fallback is not None and not keyed.mirror:
            return _local(item, fallback)  # e.g. TxStartedMeasurands without StartTxnSampledData (§5.3)
        return _result(item, "UnknownVariable", "NotFound", "the charger does not have this key")
    return _result(item, "Accepted") | {"attributeValue": inventory.v2_value(keyed.mapping, entry.get("value"))}


def _chunks(session: TranslatingSession, keys: list[str]) -> list[list[str]]:
    """Keys per GetConfiguration: at most the charger's GetConfigurationMaxKeys (when the bridge knows it)."""
    limit = ConfigView(session.meta).get("GetConfigurationMaxKeys")
    text = (limit.value or "").strip() if limit else ""
    size = int(text) if text.isdigit() and 0 < int(text) < len(keys) else len(keys)
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def _secret(session: TranslatingSession) -> Callable[[str], bool]:
    keys = station_keys(session.settings.keys, session.meta)
    return lambda key: keys.for_key(key).mutability == "WriteOnly"


@from_csms("GetVariables", becomes=("GetConfiguration",),
           note="the bridge's own variables (DeviceDataCtrlr, TxStart/StopPoint, ChargingStation/EVSE/Connector, "
                "...) answered from its device model; the rest in one GetConfiguration (split per the charger's "
                "GetConfigurationMaxKeys), values converted per the key table; unknown addresses, non-Actual "
                "attribute types and write-only variables answered by the bridge")
def get_variables(session: TranslatingSession, call: Call) -> None:
    items = call.payload["getVariableData"]
    if reports.too_big(session, call, "GetVariables", len(items)):
        return
    model = _Model(session)
    lookups = [_read(model.lookup(item)) for item in items]
    keys = list(dict.fromkeys(m.mapping.key for m in lookups if isinstance(m, Keyed)))

    def results(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        def one(item: dict[str, Any], lookup: Found) -> dict[str, Any]:
            if isinstance(lookup, Keyed):
                return _got(item, lookup, found.get(lookup.mapping.key.lower()))
            if isinstance(lookup, inventory.Variable):
                return _local(item, lookup)
            return _result(item, lookup.status, lookup.reason)

        return [one(item, lookup) for item, lookup in zip(items, lookups, strict=True)]

    if not keys:
        session.reply_csms(call, {"getVariableResult": results({})})
        return

    def step(chunk: list[str]) -> Step:
        return lambda then: session.call_charger("GetConfiguration", {"key": chunk}, then)

    def answered(outcomes: list[Outcome]) -> None:
        if not outcomes[-1].ok:
            session.relay_failure(call, outcomes[-1], to="csms")
            return
        answer: dict[str, list[Any]] = {"configurationKey": [], "unknownKey": []}
        for outcome in outcomes:
            for name in answer:
                answer[name] += outcome.result.get(name, [])
        if remember_values(session.meta, answer, keys, _secret(session)):
            session.persist(session.meta)
        # 1.6 keys are case-insensitive (CiString50): match the charger's spelling whatever it is.
        found = {entry["key"].lower(): entry for entry in answer["configurationKey"]}
        session.reply_csms(call, {"getVariableResult": results(found)})

    sequence([step(chunk) for chunk in _chunks(session, keys)], answered)


# --- SetVariables -------------------------------------------------------------------------------------------


def _write(model: _Model, item: dict[str, Any]) -> tuple[KeyMapping, str] | Refusal:
    """The (key, 1.6 value) an item writes, or why the bridge refuses it."""
    found = model.lookup(item)
    if isinstance(found, Refusal):
        return found
    if isinstance(found, inventory.Variable) or found.mirror:
        return Refusal("Rejected", "ReadOnly")  # B05.FR.08: the bridge's own variables are all read-only
    mapping = found.mapping
    cached = model.cache.get(mapping.key)
    # B05.FR.08; §5.5: the charger said so in its last GetConfiguration, no need to ask it again
    if mapping.mutability == "ReadOnly" or (cached is not None and cached.readonly):
        return Refusal("Rejected", "ReadOnly")
    if cached is None and model.cache.complete and mapping.address.folded() in inventory.FALLBACKS:
        return Refusal("Rejected", "ReadOnly")  # the charger lacks the key: the bridge's read-only value shows
    value = KeyTable.to_v16(mapping, item["attributeValue"])
    if value is None:  # B05.FR.07: badly formatted, or longer than a 1.6 value can be
        return Refusal("Rejected", "InvalidValue")
    return mapping, value


class _Writer:
    """Runs the ChangeConfigurations of one SetVariables in order; each item's failure stays its own."""

    def __init__(self, session: TranslatingSession, call: Call) -> None:
        self.session = session
        self.call = call
        self.items: list[dict[str, Any]] = call.payload["setVariableData"]
        self.results: list[dict[str, Any] | None] = [None] * len(self.items)
        self.abandoned = False  # the charger stopped answering: do not wait a timeout per remaining item

    def step(self, index: int, mapping: KeyMapping, value: str) -> Step:
        def run(then: Callable[[Outcome], None]) -> None:
            if self.abandoned:
                self.results[index] = _result(self.items[index], "Rejected", "NoAnswer",
                                              "the charger stopped answering")
                then(Outcome(payload={}))
                return

            def answered(outcome: Outcome) -> None:
                self.results[index] = self._item_result(index, outcome)
                if outcome.ok:
                    self._remember(mapping, value, outcome.result["status"])
                then(Outcome(payload={}))  # never end the sequence: every item gets its own result

            self.session.call_charger("ChangeConfiguration", {"key": mapping.key, "value": value}, answered)

        return run

    def _remember(self, mapping: KeyMapping, value: str, status: str) -> None:
        """Keep the bridge's copy current (before the CSMS hears the result): a later report shows the value."""
        if status in ("Accepted", "RebootRequired"):
            remember_write(self.session.meta, mapping.key, None if mapping.mutability == "WriteOnly" else value,
                           status)
            self.session.persist(self.session.meta)

    def _item_result(self, index: int, outcome: Outcome) -> dict[str, Any]:
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
           note="one ChangeConfiguration per item, in order; NotSupported -> UnknownVariable; the bridge's own "
                "variables, read-only (per the table or the charger's last GetConfiguration), unknown and "
                "unconvertible items answered by the bridge; a failed item is Rejected, the rest go on")
def set_variables(session: TranslatingSession, call: Call) -> None:
    writer = _Writer(session, call)
    if reports.too_big(session, call, "SetVariables", len(writer.items)):
        return
    model = _Model(session)
    steps: list[Step] = []
    for index, item in enumerate(writer.items):
        write = _write(model, item)
        if isinstance(write, Refusal):
            writer.results[index] = _result(item, write.status, write.reason)
        else:
            steps.append(writer.step(index, *write))
    sequence(steps, writer.finish)
