"""The 1.6 security whitepaper's station messages and triggers (whitepaper ed.3 §4, §5; 2.0.1 A02-A04, F06).

Why this exists: SecurityEventNotification and SignCertificate are 2.0.1 messages already, with four event names
spelled the 1.6 way and the certificate type implied; the 2.0.1 triggers for them (SignChargingStationCertificate,
and LogStatusNotification / FirmwareStatusNotification of the whitepaper's GetLog / SignedUpdateFirmware) are
only reachable through the whitepaper's ExtendedTriggerMessage, which a charger may not implement. The trigger
for the V2G certificate goes through the ISO 15118 tunnel (:mod:`.pnc`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..convert import timestamp
from ..lanes import Outcome
from . import from_charger
from .common import UNSUPPORTED, call_optional, notify, status_answer
from .pnc import Tunnelled, tunnel

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# 1.6 whitepaper §8 event names -> 2.0.1 appendix "security events"; the other 15 are spelled the same.
EVENT_NAMES: Final = {
    "FailedToAuthenticationAtCentralSystem": "FailedToAuthenticateAtCsms",
    "CentralSystemFailedToAuthentication": "CsmsFailedToAuthenticate",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}

EXTENDED_TRIGGER: Final = "ExtendedTriggerMessage"  # key in ChargerMeta.features


def _request(session: TranslatingSession, call: Call, action: str, request: dict[str, Any]) -> None:
    """Send ``request`` upstream; the charger gets the CSMS's answer (or its failure) once there is one."""
    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_charger(call, {"status": outcome.result["status"]})
        else:
            session.relay_failure(call, outcome, to="charger")

    session.call_csms(action, request, answered)


@from_charger("SecurityEventNotification", note="identical; the four 1.6 event names that differ are renamed "
              "(e.g. InvalidCentralSystemCertificate -> InvalidCsmsCertificate); queued durably and acknowledged "
              "once stored (A04.FR.02: guaranteed delivery)")
def security_event_notification(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    request = {"type": EVENT_NAMES.get(payload["type"], payload["type"]), "timestamp": timestamp(payload["timestamp"])}
    if "techInfo" in payload:
        request["techInfo"] = payload["techInfo"]
    notify(session, call, "SecurityEventNotification", request)


@from_charger("SignCertificate", note="certificateType ChargingStationCertificate added (whitepaper A02/A03: the "
              "1.6 message is for the charge point certificate only)")
def sign_certificate(session: TranslatingSession, call: Call) -> None:
    request = {"csr": call.payload["csr"], "certificateType": "ChargingStationCertificate"}
    _request(session, call, "SignCertificate", request)


# --- triggers the 1.6 core TriggerMessage cannot ask for ------------------------------------------------------

# 2.x requestedMessage -> 1.6 ExtendedTriggerMessage requestedMessage (whitepaper §6.16).
EXTENDED: Final = {
    "SignChargingStationCertificate": "SignChargePointCertificate",
    "LogStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "FirmwareStatusNotification",  # triggers a SignedFirmwareStatusNotification
}


def extended_trigger(session: TranslatingSession, call: Call, wanted: str) -> None:
    """Carry a 2.x TriggerMessage as the whitepaper's ExtendedTriggerMessage. A charger without it gets
    NotImplemented (F06.FR.08), remembered so the next such trigger is answered without asking."""
    call_optional(session, call, EXTENDED_TRIGGER, {"requestedMessage": EXTENDED[wanted]}, negative="NotImplemented",
                  feature=EXTENDED_TRIGGER, check=False, answer=lambda result: status_answer(result["status"]),
                  missing="the charger does not implement ExtendedTriggerMessage")


def v2g_trigger(session: TranslatingSession, call: Call) -> None:
    """SignV2GCertificate (A02 for the V2G certificate): the 2.0.1 TriggerMessage through the ISO 15118 tunnel."""
    def done(result: Tunnelled) -> None:
        if result.failure is not None:
            session.relay_failure(call, result.failure, to="csms")
        elif result.response is None:
            session.reply_csms(call, status_answer("NotImplemented", UNSUPPORTED, result.refusal))
        else:
            session.reply_csms(call, status_answer(result.response["status"]))

    tunnel(session, "TriggerMessage", {"requestedMessage": "SignV2GCertificate"}, done)
