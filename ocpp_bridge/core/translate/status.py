"""StatusNotification -> StatusNotification, TransactionEvent (ChargingStateChanged) and NotifyEvent.

Why this exists: 1.6 folds three things into one message that 2.0.1 keeps apart: the connector's availability
(StatusNotification, coarser: Preparing/Charging/Suspended*/Finishing are all Occupied), the charging state of a
running transaction (TransactionEvent Updated, E02.FR.13) and hardware errors (NotifyEvent on the component
that failed, the pattern of G05.FR.02). Connector 0 is the whole station, which 2.0.1 reports as
ChargingStation.AvailabilityState through NotifyEvent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..convert import timestamp_or
from . import from_charger, reservation
from .transactions import CHARGING_STATE, queue_event, refused_connector

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# 1.6 ChargePointStatus -> 2.0.1 ConnectorStatusEnumType (mapping reference §3.2).
CONNECTOR_STATUS: Final = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}

# 1.6 ChargePointErrorCode -> (2.0.1 component, variable) that reports it (mapping reference §3.3).
ERROR_COMPONENTS: Final = {
    "ConnectorLockFailure": ("ConnectorPlugRetentionLock", "Problem"),
    "EVCommunicationError": ("Connector", "Problem"),
    "GroundFailure": ("RCD", "Tripped"),
    "HighTemperature": ("EVSE", "Problem"),
    "InternalError": ("Controller", "Problem"),
    "LocalListConflict": ("LocalAuthListCtrlr", "Problem"),
    "OtherError": ("Connector", "Problem"),
    "OverCurrentFailure": ("OverCurrentProtection", "Operated"),
    "OverVoltage": ("ElectricalFeed", "Problem"),
    "PowerMeterFailure": ("FiscalMetering", "Problem"),
    "PowerSwitchFailure": ("PowerContactor", "Problem"),
    "ReaderFailure": ("TokenReader", "Problem"),
    "ResetFailure": ("Controller", "Problem"),
    "UnderVoltage": ("ElectricalFeed", "Problem"),
    "WeakSignal": ("DataLink", "Problem"),
}
_STATION_LEVEL: Final = frozenset({"Controller", "LocalAuthListCtrlr", "DataLink", "TokenReader"})


def _component(name: str, connector_id: int) -> dict[str, Any]:
    component: dict[str, Any] = {"name": name}
    if connector_id > 0 and name not in _STATION_LEVEL:
        component["evse"] = {"id": connector_id, "connectorId": 1} if name.startswith("Connector") \
            else {"id": connector_id}
    return component


def _event(session: TranslatingSession, stamp: str, **data: Any) -> dict[str, Any]:
    event_id = session.meta.next_event_id
    session.meta.next_event_id += 1
    return {"eventId": event_id, "timestamp": stamp, "eventNotificationType": "HardWiredNotification", **data}


def _notify(stamp: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"generatedAt": stamp, "seqNo": 0, "eventData": events}


def _error_events(session: TranslatingSession, payload: dict[str, Any], stamp: str) -> list[dict[str, Any]]:
    """NotifyEvent data for an error that appeared (Problem=true) or cleared (Problem=false, cleared)."""
    connector = payload["connectorId"]
    previous = session.meta.connector_errors.get(str(connector), "NoError")
    current = payload["errorCode"]
    if current == previous:
        return []
    events = []
    if previous != "NoError":
        name, variable = ERROR_COMPONENTS[previous]
        events.append(_event(session, stamp, trigger="Alerting", actualValue="false", cleared=True,
                             component=_component(name, connector), variable={"name": variable}))
        del session.meta.connector_errors[str(connector)]
    if current != "NoError":
        name, variable = ERROR_COMPONENTS[current]
        data: dict[str, Any] = {"trigger": "Alerting", "actualValue": "true",
                                "component": _component(name, connector), "variable": {"name": variable},
                                "techCode": (payload.get("vendorErrorCode") or current)[:50]}
        if "info" in payload:
            data["techInfo"] = payload["info"]
        events.append(_event(session, stamp, **data))
        session.meta.connector_errors[str(connector)] = current
    return events


@from_charger("StatusNotification", becomes=("StatusNotification", "TransactionEvent", "NotifyEvent"),
              note="connector status mapped to the 5 2.0.1 states; a charging-state change during a transaction "
                   "also yields TransactionEvent Updated (ChargingStateChanged); errorCode -> NotifyEvent Problem "
                   "on the failing component; connectorId 0 -> NotifyEvent ChargingStation.AvailabilityState")
def status_notification(session: TranslatingSession, call: Call) -> None:
    if refused_connector(session, call, 0):
        return
    payload = call.payload
    connector = payload["connectorId"]
    stamp = timestamp_or(payload.get("timestamp"), session.now)
    status = payload["status"]
    session.meta.connector_status[str(connector)] = status
    events = _error_events(session, payload, stamp)
    if connector == 0:
        events.insert(0, _event(session, stamp, trigger="Delta", actualValue=CONNECTOR_STATUS[status],
                                component={"name": "ChargingStation"}, variable={"name": "AvailabilityState"}))
    reservation.connector_status_changed(session, connector, status)  # Faulted/Unavailable ends reservations
    session.persist(session.meta)
    if connector != 0:
        request = {"timestamp": stamp, "connectorStatus": CONNECTOR_STATUS[status], "evseId": connector,
                   "connectorId": 1}
        # Only the newest status of a connector is worth replaying after an outage (issue 4: coalesced).
        session.outbox.enqueue("StatusNotification", request, key=f"status:{connector}")
    tx = session.ledger.open_on_connector(connector) if connector else None
    state = CHARGING_STATE.get(status)
    if tx is not None and state is not None and state != tx.charging_state and status != "Available":
        tx.charging_state = state  # E02.FR.13: every charging-state change is reported
        queue_event(session, tx, {"eventType": "Updated", "timestamp": stamp, "triggerReason": "ChargingStateChanged",
                                  "transactionInfo": {"transactionId": tx.tx_id, "chargingState": state}})
    if events:
        session.outbox.enqueue("NotifyEvent", _notify(stamp, events))
    session.reply_charger(call, {})  # everything it reported is stored and will be delivered in order
