"""Firmware updates: UpdateFirmware down, firmware status up (2.0.1 L01, L02; 1.6 §4.5, §5.19; whitepaper L01).

Why this exists: 2.0.1 has one UpdateFirmware whose signing fields decide whether it is a secure update (L01, the
whitepaper's SignedUpdateFirmware) or not (L02, 1.6 UpdateFirmware, whose empty answer means Accepted); 1.6
cannot delay the installation (installDateTime). Every FirmwareStatusNotification the CSMS gets must carry the
requestId of the update it belongs to (L01.FR.10, L01.FR.20), which only the bridge remembers for a 1.6 charger.
Both notifications are answered to the charger only after the CSMS answered, so a CSMS failure reaches the
charger as a CALLERROR it can retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..convert import seconds
from ..lanes import Outcome
from . import from_charger, from_csms
from .common import UNSUPPORTED, call_optional, notify, remember, status_answer, unfit

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

SIGNED: Final = "SignedUpdateFirmware"  # the whitepaper message, also the key in ChargerMeta.features
_OPTIONAL: Final = ("retries", "retryInterval")


def _started(session: TranslatingSession, request_id: int, via: str) -> None:
    """Remember the update before the CSMS hears Accepted: its status notifications carry this requestId."""
    session.meta.firmware_request_id = request_id
    session.meta.firmware_via = via
    session.persist(session.meta)


# --- UpdateFirmware ------------------------------------------------------------------------------------------------


def _signed(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    request = {"requestId": payload["requestId"], "firmware": dict(payload["firmware"])}
    request["firmware"].pop("customData", None)
    request.update({k: payload[k] for k in _OPTIONAL if k in payload})

    def answer(result: dict[str, Any]) -> dict[str, Any]:
        status = result["status"]  # the same five values in both versions
        if status in ("Accepted", "AcceptedCanceled"):
            _started(session, payload["requestId"], SIGNED)
        return status_answer(status)

    # e.g. a 2.1 location longer than the 512 characters 1.6 allows is refused before sending
    call_optional(session, call, SIGNED, request, negative="Rejected", feature=SIGNED, answer=answer,
                  missing="the charger has no secure firmware update")


def _unsigned(session: TranslatingSession, call: Call) -> None:
    payload, firmware = call.payload, call.payload["firmware"]
    retrieve = firmware["retrieveDateTime"]
    install = firmware.get("installDateTime")
    if install is not None and seconds(install) > max(seconds(retrieve), session.now):
        # L02.FR.10: the station would wait until installDateTime; a 1.6 charger installs once downloaded.
        session.reply_csms(call, status_answer("Rejected", UNSUPPORTED, "1.6 cannot install at a later time"))
        return
    request = {"location": firmware["location"], "retrieveDate": retrieve}
    request.update({k: payload[k] for k in _OPTIONAL if k in payload})
    why = unfit("UpdateFirmware", request)  # 1.6 wants a URI
    if why is not None:
        session.reply_csms(call, status_answer("Rejected", "InvalidValue", why))
        return

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        _started(session, payload["requestId"], "UpdateFirmware")
        session.reply_csms(call, status_answer("Accepted"))  # 1.6 UpdateFirmware.conf is empty

    session.call_charger("UpdateFirmware", request, answered)


@from_csms("UpdateFirmware", becomes=("SignedUpdateFirmware", "UpdateFirmware"),
           note="signingCertificate+signature -> the whitepaper's SignedUpdateFirmware (L01); neither -> 1.6 "
                "UpdateFirmware (L02), its empty answer = Accepted; requestId remembered for the status "
                "notifications; only one of the two, a later installDateTime, or values 1.6 cannot hold: Rejected")
def update_firmware(session: TranslatingSession, call: Call) -> None:
    firmware = call.payload["firmware"]
    signing = ("signingCertificate" in firmware, "signature" in firmware)
    if all(signing):
        _signed(session, call)
    elif any(signing):  # neither L01 (needs both) nor L02 (needs neither): installing it unverified would be wrong
        session.reply_csms(call, status_answer("Rejected", "InvalidValue",
                                               "signingCertificate and signature come together"))
    else:
        _unsigned(session, call)


# --- FirmwareStatusNotification / SignedFirmwareStatusNotification ------------------------------------------------


def _status_request(session: TranslatingSession, status: str, own_id: int | None, via: str) -> dict[str, Any]:
    """The charger's own requestId, else the remembered one; mandatory unless Idle (L01.FR.20, L02.FR.14)."""
    request: dict[str, Any] = {"status": status}
    meta = session.meta
    if own_id is not None:
        request["requestId"] = own_id
    elif status != "Idle" and meta.firmware_via == via and meta.firmware_request_id is not None:
        request["requestId"] = meta.firmware_request_id
    elif status != "Idle":
        session.emit("firmware.no_request_id", status=status)  # an update the bridge did not carry
    if status in ("Installing", "InstallRebooting"):
        meta.boot_reason = "FirmwareUpdate"  # the reboot that follows is the firmware's (B01 BootReason)
        session.persist(meta)
    if status == "Installed" and meta.features:  # new firmware may implement what the old one did not
        meta.features.clear()
        session.persist(meta)
    return request


@from_charger("FirmwareStatusNotification", note="every 1.6 status exists in 2.0.1; requestId of the "
              "UpdateFirmware the bridge carried added (L02.FR.14); the next boot reports FirmwareUpdate; queued "
              "durably and acknowledged once stored")
def firmware_status_notification(session: TranslatingSession, call: Call) -> None:
    request = _status_request(session, call.payload["status"], None, "UpdateFirmware")
    notify(session, call, "FirmwareStatusNotification", request)


@from_charger("SignedFirmwareStatusNotification", becomes=("FirmwareStatusNotification",),
              note="identical enum; the charger's requestId, else the one the bridge remembered (L01.FR.20)")
def signed_firmware_status_notification(session: TranslatingSession, call: Call) -> None:
    remember(session, SIGNED, True)
    request = _status_request(session, call.payload["status"], call.payload.get("requestId"), SIGNED)
    notify(session, call, "FirmwareStatusNotification", request)
