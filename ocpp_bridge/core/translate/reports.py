"""GetBaseReport / GetReport -> NotifyReport, synthesized from the charger's device model (2.0.1 B07, B08).

Why this exists: 1.6 has no reports; a 2.0.1 CSMS learns what a station is and can do from them (mapping
reference §5.4). The bridge answers the request itself and then sends the report as NotifyReport messages built
from :mod:`..inventory`, paged per its own DeviceDataCtrlr.ItemsPerMessage[GetReport], through the durable
outbox (ordered after the answer, delivered even across a restart).

The model needs the charger's configuration. The bridge fetches it with its own GetConfiguration (all keys): a
while after an Accepted BootNotification when its copy is missing or stale, when a report finds it stale, and
once a day. That call shares the one-call-at-a-time lane with the CSMS's calls, and its answer is the bridge's:
it is never forwarded to the CSMS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from weakref import WeakKeyDictionary

import orjson

from .. import inventory, validate
from ..convert import epoch
from ..devicemodel import CONFIG_MAX_AGE, VariableAddress, is_fresh, station_keys, store_configuration
from ..lanes import Outcome
from ..rpc import ErrorCode, Version
from . import Handling, from_csms, on_session_start
from .common import status_answer

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

SYNTHESIZES: Final = {"NotifyReport": "after GetBaseReport/GetReport, paged per DeviceDataCtrlr.ItemsPerMessage"
                                      "[GetReport] (seqNo from 0, tbc on all but the last), from the synthesized "
                                      "device model (B07.FR.04/10, B08.FR.14)"}
REPORT_BASES: Final = frozenset({"ConfigurationInventory", "FullInventory", "SummaryInventory"})
FETCH_TIMER: Final = "devicemodel.fetch"
BOOT_FETCH_DELAY: Final = 30.0  # after a boot, let the charger's StatusNotifications and the CSMS's calls go first
FETCH_RETRY: Final = 600.0  # after a GetConfiguration that failed

# Who waits for the GetConfiguration in flight, per session (in memory: a fetch does not outlive its connection).
_FETCHES: WeakKeyDictionary[TranslatingSession, list[Callable[[], None]]] = WeakKeyDictionary()
_STATION_FIELDS: Final = {"chargePointVendor": "vendor", "chargePointModel": "model",
                          "chargePointSerialNumber": "serialNumber", "chargeBoxSerialNumber": "chargeBoxSerialNumber",
                          "firmwareVersion": "firmwareVersion", "iccid": "iccid", "imsi": "imsi",
                          "meterType": "meterType", "meterSerialNumber": "meterSerialNumber"}


def _facts(session: TranslatingSession) -> inventory.Facts:
    return inventory.Facts(session.identity, session.now, session.settings.call_timeout)


def model(session: TranslatingSession) -> list[inventory.Variable]:
    return inventory.build(session.meta, station_keys(session.settings.keys, session.meta), _facts(session))


def index(session: TranslatingSession) -> tuple[dict[VariableAddress, inventory.Variable], list[inventory.Variable]]:
    """:func:`inventory.index` of this charger's model (lookups need no report order)."""
    return inventory.index(session.meta, station_keys(session.settings.keys, session.meta), _facts(session))


# --- the charger's configuration ------------------------------------------------------------------------


def refresh(session: TranslatingSession, then: Callable[[], None] | None = None) -> None:
    """Fetch the charger's whole configuration into the cache (one fetch at a time); ``then`` runs after it,
    whether it worked or not (a report then shows what the bridge has)."""
    waiting = _FETCHES.get(session)
    if waiting is not None:
        if then is not None:
            waiting.append(then)
        return
    _FETCHES[session] = [then] if then is not None else []
    session.cancel_timer(FETCH_TIMER)

    def answered(outcome: Outcome) -> None:
        waiters = _FETCHES.pop(session, [])
        if outcome.ok:
            keys = station_keys(session.settings.keys, session.meta)
            complete = store_configuration(session.meta, outcome.result, session.now,
                                           secret=lambda key: keys.for_key(key).mutability == "WriteOnly")
            session.persist(session.meta)
            session.emit("devicemodel.fetched", keys=len(session.meta.config_keys), complete=complete)
        else:
            error = outcome.error
            session.emit("devicemodel.fetch_failed", error=f"{error.code.value}: {error.description}" if error else "")
        _arm(session, failed=not outcome.ok)
        for waiter in waiters:
            waiter()

    session.call_charger("GetConfiguration", {}, answered)  # the bridge's own call: answered here, never relayed


def _arm(session: TranslatingSession, failed: bool = False) -> None:
    """Schedule the next fetch: soon when the copy is missing or stale, else when it turns stale."""
    if not session.meta.boot_accepted:
        return
    fetched = session.meta.config_fetched_at
    if failed:
        at = session.now + FETCH_RETRY
    elif fetched is None or not is_fresh(session.meta, session.now):
        at = session.now + BOOT_FETCH_DELAY
    else:
        at = fetched + CONFIG_MAX_AGE
    session.set_timer(FETCH_TIMER, at, lambda: refresh(session))


def with_configuration(session: TranslatingSession, then: Callable[[], None]) -> None:
    """Run ``then`` with a fresh configuration cache (fetching it first if it is missing or stale)."""
    if is_fresh(session.meta, session.now):
        then()
    else:
        refresh(session, then)


def booted(session: TranslatingSession, payload: dict[str, Any], accepted: bool) -> None:
    """A BootNotification the CSMS answered: remember what it says about the station (the caller persists);
    after an Accepted one, fetch the configuration if it is missing, stale or may have changed (other
    vendor, model or firmware)."""
    station = {ours: str(payload[theirs]) for theirs, ours in _STATION_FIELDS.items() if payload.get(theirs)}
    if "serialNumber" not in station and "chargeBoxSerialNumber" in station:  # as the BootNotification says
        station["serialNumber"] = station["chargeBoxSerialNumber"]
    previous, session.meta.station = session.meta.station, station
    if any(previous.get(f) != station.get(f) for f in ("vendor", "model", "firmwareVersion")):
        session.meta.config_fetched_at = None
    if accepted:
        _arm(session)


@on_session_start
def _resume(session: TranslatingSession) -> None:
    _arm(session)


# --- reports --------------------------------------------------------------------------------------------


def _send(session: TranslatingSession, request_id: int, variables: list[inventory.Variable]) -> None:
    """The report as NotifyReport messages: same requestId and generatedAt, seqNo from 0, tbc on all but the
    last (B07.FR.04/10, B08.FR.14), queued for ordered, retried delivery."""
    size = inventory.ITEMS_PER_MESSAGE["GetReport"]
    pages = [variables[i:i + size] for i in range(0, len(variables), size)] or [[]]
    generated = epoch(session.now)
    max_elements = session.upstream is Version.V21  # 2.1 has variableCharacteristics.maxElements for lists
    for seq_no, page in enumerate(pages):
        payload: dict[str, Any] = {"requestId": request_id, "generatedAt": generated, "seqNo": seq_no,
                                   "tbc": seq_no < len(pages) - 1}
        if page:
            payload["reportData"] = [inventory.report_data(v, max_elements) for v in page]
        violation = validate.check(session.upstream, "NotifyReport", payload, response=False)
        if violation is not None:  # never queue what the CSMS cannot take: it would block the queue
            session.emit("bug", detail=f"invalid NotifyReport: {violation.message}"[:300])
            continue
        session.outbox.enqueue("NotifyReport", payload)


def too_big(session: TranslatingSession, call: Call, limit: str, items: int) -> bool:
    """DeviceDataCtrlr.ItemsPerMessage / BytesPerMessage[limit] exceeded: answered with a CALLERROR
    (OccurrenceConstraintViolation / FormatViolation, B08.FR.17/18 and their B05/B06 analogues)."""
    if items > inventory.ITEMS_PER_MESSAGE[limit]:
        session.fail_csms(call, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
                          f"more than ItemsPerMessage[{limit}] = {inventory.ITEMS_PER_MESSAGE[limit]} items")
        return True
    if len(orjson.dumps(call.payload)) > inventory.BYTES_PER_MESSAGE[limit]:
        session.fail_csms(call, ErrorCode.FORMAT_VIOLATION,
                          f"larger than BytesPerMessage[{limit}] = {inventory.BYTES_PER_MESSAGE[limit]} bytes")
        return True
    return False


@from_csms("GetBaseReport", Handling.SYNTHESIZED, becomes=("GetConfiguration",),
           note="Accepted at once, then NotifyReport from the synthesized device model (the charger's keys via "
                "the key table, BootNotification, StatusNotification, the bridge's own variables); the bridge's "
                "own GetConfiguration first if its copy is missing or stale (B07)")
def get_base_report(session: TranslatingSession, call: Call) -> None:
    base = call.payload["reportBase"]
    if base not in REPORT_BASES:
        session.reply_csms(call, status_answer("NotSupported"))  # B07.FR.02
        return
    session.reply_csms(call, status_answer("Accepted"))  # B07.FR.03: the report follows
    request_id = call.payload["requestId"]
    with_configuration(session, lambda: _send(session, request_id,
                                              inventory.base_report(model(session), base)))


@from_csms("GetReport", Handling.SYNTHESIZED, becomes=("GetConfiguration",),
           note="componentVariable and componentCriteria filters over the synthesized device model; "
                "EmptyResultSet when nothing matches (B08.FR.15), else Accepted and NotifyReport")
def get_report(session: TranslatingSession, call: Call) -> None:
    selectors = call.payload.get("componentVariable")
    if too_big(session, call, "GetReport", len(selectors or ())):
        return
    request_id = call.payload["requestId"]

    def answer() -> None:
        chosen = inventory.custom_report(model(session), selectors, call.payload.get("componentCriteria"))
        if not chosen:
            session.reply_csms(call, status_answer("EmptyResultSet"))
            return
        session.reply_csms(call, status_answer("Accepted"))
        _send(session, request_id, chosen)

    with_configuration(session, answer)
