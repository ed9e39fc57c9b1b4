"""BootNotification and Heartbeat: the station's identity and its clock (2.0.1 B01, G02; 1.6 §4.2, §4.6).

Why this exists: 2.0.1 wants a structured ``chargingStation`` and a boot ``reason`` that 1.6 never sends.
The bridge knows the reason when it caused the reboot itself (a Reset or TriggerMessage it forwarded) and says
PowerUp otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..convert import epoch
from ..lanes import Outcome
from . import from_charger, reports

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession


def _station(payload: dict[str, Any]) -> dict[str, Any]:
    station: dict[str, Any] = {"model": payload["chargePointModel"], "vendorName": payload["chargePointVendor"]}
    serial = payload.get("chargePointSerialNumber") or payload.get("chargeBoxSerialNumber")
    if serial:
        station["serialNumber"] = serial
    if "firmwareVersion" in payload:
        station["firmwareVersion"] = payload["firmwareVersion"]
    modem = {name: payload[name] for name in ("iccid", "imsi") if name in payload}
    if modem:
        station["modem"] = modem
    return station


@from_charger("BootNotification", note="reason is RemoteReset/ScheduledReset/Triggered when the bridge caused "
              "the boot, else PowerUp; chargeBoxSerialNumber is the fallback serial")
def boot_notification(session: TranslatingSession, call: Call) -> None:
    request = {"chargingStation": _station(call.payload), "reason": session.meta.boot_reason or "PowerUp"}

    def answered(outcome: Outcome) -> None:
        if not outcome.ok and session.offline:
            # Never an Accepted the CSMS did not give (B02): Pending makes the charger boot again later.
            session.reply_charger(call, {"status": "Pending", "currentTime": epoch(session.now),
                                         "interval": session.settings.boot_retry_interval})
            return
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        result = outcome.result
        session.meta.boot_reason = None
        session.meta.boot_accepted = result["status"] == "Accepted"
        reports.booted(session, call.payload, session.meta.boot_accepted)  # the device model's station facts
        session.persist(session.meta)
        # 2.x schemas are draft-06, where 300.0 is an integer; the 1.6 (draft-04) schema and chargers want 300
        session.reply_charger(call, {"status": result["status"], "currentTime": result["currentTime"],
                                     "interval": int(result["interval"])})

    session.call_csms("BootNotification", request, answered)


@from_charger("Heartbeat", note="forwarded (the CSMS's clock is the charger's time source); answered with the "
              "bridge's clock while the CSMS is unreachable")
def heartbeat(session: TranslatingSession, call: Call) -> None:
    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_charger(call, {"currentTime": outcome.result["currentTime"]})
        elif session.offline:  # a Heartbeat is only a clock: keep the charger's link alive through an outage
            session.reply_charger(call, {"currentTime": epoch(session.now)})
        else:
            session.relay_failure(call, outcome, to="charger")

    session.call_csms("Heartbeat", {}, answered)
