"""The CSMS's remote-control operations, carried down to a 1.6 charger (2.0.1 B11/B12, F01-F06, G03/G04, C11).

Why this exists: RequestStart/StopTransaction, Reset, ChangeAvailability, UnlockConnector, TriggerMessage and
ClearCache look alike in both versions, but each differs in one rule that a plain rename would get wrong:
2.0.1 ids its transactions with strings, ``OnIdle`` must wait for the last transaction (1.6 has no such reset),
an unlock must never end a transaction (1.6 ends it), a trigger can ask for messages 1.6 only produces
indirectly. The bridge answers locally whatever 1.6 cannot express, and keeps the state (pending remote starts,
a scheduled reset, the boot reason) that the charger's later messages need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..convert import MAX_V16_ID_TAG, connector_of
from ..lanes import Outcome
from . import from_csms
from .common import UNSUPPORTED, forward, status_answer
from .profiles import tx_profile
from .security import EXTENDED, extended_trigger, v2g_trigger
from .transactions import REMOTE_START_VALIDITY

__all__ = ["MAX_PENDING_REMOTE_STARTS", "forward", "status_answer"]

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

MAX_PENDING_REMOTE_STARTS: Final = 16  # bounded so a CSMS cannot grow the charger record forever


def _token_refusal(token: dict[str, Any]) -> str | None:
    if token["type"] == "NoAuthorization" or not token["idToken"]:
        return "1.6 cannot start a transaction without an idTag"  # reference §1: reject NoAuthorization
    if len(token["idToken"]) > MAX_V16_ID_TAG:
        return f"idToken longer than the {MAX_V16_ID_TAG} characters of a 1.6 idTag"
    return None


def _remote_start_request(payload: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """The 1.6 RemoteStartTransaction, or ``(None, reasonCode, why)``."""
    token = payload["idToken"]
    why = _token_refusal(token)
    if why is not None:
        return None, "InvalidIdToken", why
    request: dict[str, Any] = {"idTag": token["idToken"]}
    if "evseId" in payload:  # F01.FR.20: absent = the station picks the EVSE
        if payload["evseId"] <= 0:
            return None, "UnknownEvse", "evseId must be positive"
        request["connectorId"] = payload["evseId"]
    if "chargingProfile" in payload:
        profile, why = tx_profile(payload["chargingProfile"])
        if profile is None:
            return None, "InvalidProfile", why
        request["chargingProfile"] = profile
    return request, "", ""


@from_csms("RequestStartTransaction", becomes=("RemoteStartTransaction",),
           note="idToken -> idTag (longer than 20 or NoAuthorization: Rejected locally); evseId -> connectorId; "
                "TxProfile converted (one schedule); remoteStartId kept until the charger's StartTransaction")
def request_start_transaction(session: TranslatingSession, call: Call) -> None:
    request, reason, why = _remote_start_request(call.payload)
    if request is None:
        session.reply_csms(call, status_answer("Rejected", reason, why))
        return
    # F02.FR.01/F01.FR.25: the StartTransaction this causes must carry remoteStartId; remember it durably first.
    pending = {"remoteStartId": call.payload["remoteStartId"], "idTag": request["idTag"],
               "connectorId": request.get("connectorId"), "expires": session.now + REMOTE_START_VALIDITY}
    meta = session.meta
    meta.remote_starts.append(pending)
    del meta.remote_starts[:-MAX_PENDING_REMOTE_STARTS]
    meta.remember_token_type(request["idTag"], call.payload["idToken"]["type"])
    session.persist(meta)

    def answered(outcome: Outcome) -> None:
        if not (outcome.ok and outcome.result["status"] == "Accepted") and pending in meta.remote_starts:
            meta.remote_starts.remove(pending)
            session.persist(meta)
        if outcome.ok:
            session.reply_csms(call, status_answer(outcome.result["status"]))
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger("RemoteStartTransaction", request, answered)


@from_csms("RequestStopTransaction", becomes=("RemoteStopTransaction",),
           note="transactionId -> the charger's 1.6 integer id through the ledger; unknown or ended: Rejected")
def request_stop_transaction(session: TranslatingSession, call: Call) -> None:
    tx = session.ledger.by_tx_id(call.payload["transactionId"])  # only this charger's transactions
    if tx is None or tx.ended:  # F03.FR.08
        session.reply_csms(call, status_answer("Rejected", "TxNotFound", "no ongoing transaction with this id"))
        return
    forward(session, call, "RemoteStopTransaction", {"transactionId": tx.local_id})


# --- Reset (B11, B12), ChangeAvailability (G03, G04), UnlockConnector (F05), ClearCache (C11) -------------------


def _soft_reset(session: TranslatingSession, call: Call) -> None:
    """1.6 Soft ends transactions gracefully before restarting, as 2.0.1 Immediate does (B12.FR.04)."""
    def accepted() -> None:
        session.meta.boot_reason = "RemoteReset"
        session.meta.reset_on_idle = False  # this reset supersedes a scheduled one
        session.persist(session.meta)

    forward(session, call, "Reset", {"type": "Soft"}, accepted=accepted)


@from_csms("Reset", note="Immediate -> Soft; OnIdle -> Soft when idle, else Scheduled and sent by the bridge "
           "after the last transaction; evseId or ImmediateAndResume: Rejected")
def reset(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    if "evseId" in payload:  # B11.FR.09 / B12.FR.09: 1.6 cannot reset one EVSE
        session.reply_csms(call, status_answer("Rejected", "UnsupportedRequest", "1.6 has no per-EVSE reset"))
    elif payload["type"] == "ImmediateAndResume":  # 2.1 B13.FR.01: 1.6 cannot resume transactions
        session.reply_csms(call, status_answer("Rejected", "UnsupportedRequest", "1.6 cannot resume transactions"))
    elif payload["type"] == "OnIdle" and session.ledger.open_transactions():
        session.meta.reset_on_idle = True  # B12.FR.01; transactions.py resets after the last one ends
        session.persist(session.meta)
        session.reply_csms(call, status_answer("Scheduled"))
    else:
        _soft_reset(session, call)


def _availability_connector(evse: dict[str, Any] | None) -> int | None:
    if evse is None:
        return 0  # G04.FR.01: no evse = the whole station, 1.6 connectorId 0
    if evse["id"] < 0 or (evse["id"] == 0 and "connectorId" in evse):
        return None
    return connector_of(evse["id"], evse.get("connectorId"))


@from_csms("ChangeAvailability", note="no evse -> connectorId 0 (station); EVSE e (connector 1) -> connectorId e")
def change_availability(session: TranslatingSession, call: Call) -> None:
    connector = _availability_connector(call.payload.get("evse"))
    if connector is None:
        session.reply_csms(call, status_answer("Rejected", "UnknownConnectorId", "no such connector on a 1.6 charger"))
        return
    request = {"connectorId": connector, "type": call.payload["operationalStatus"]}
    forward(session, call, "ChangeAvailability", request)


def _unlock_answer(result: str) -> dict[str, Any]:
    if result == "NotSupported":
        return status_answer("UnlockFailed", "UnsupportedRequest", "the charger does not support unlocking")
    return status_answer(result)


@from_csms("UnlockConnector", note="never ends a transaction (2.0.1 F05.FR.02, unlike 1.6): "
           "OngoingAuthorizedTransaction locally; NotSupported -> UnlockFailed")
def unlock_connector(session: TranslatingSession, call: Call) -> None:
    evse_id, connector_id = call.payload["evseId"], call.payload["connectorId"]
    connector = connector_of(evse_id, connector_id)
    if connector is None or connector <= 0:  # F05.FR.03
        session.reply_csms(call, status_answer("UnknownConnector"))
        return
    if session.ledger.open_on_connector(connector) is not None:  # F05.FR.02: a 1.6 charger would stop it
        session.reply_csms(call, status_answer("OngoingAuthorizedTransaction"))
        return
    forward(session, call, "UnlockConnector", {"connectorId": connector}, answer=_unlock_answer)


@from_csms("ClearCache", note="identical")
def clear_cache(session: TranslatingSession, call: Call) -> None:
    forward(session, call, "ClearCache", {})


# --- TriggerMessage (F06) ---------------------------------------------------------------------------------------


def _trigger_connector(evse: dict[str, Any] | None) -> tuple[bool, int | None]:
    """(ok, 1.6 connectorId) of an optional 2.x evse."""
    if evse is None:
        return True, None
    connector = connector_of(evse["id"], evse.get("connectorId"))
    return connector is not None and connector >= 0, connector


def _trigger_request(session: TranslatingSession, payload: dict[str, Any]) -> dict[str, Any] | str:
    """The 1.6 TriggerMessage for a 2.x one, or the reason to answer Rejected locally."""
    wanted, evse = payload["requestedMessage"], payload.get("evse")
    ok, connector = _trigger_connector(evse)
    if not ok:
        return "no such EVSE/connector on a 1.6 charger"
    if wanted == "BootNotification" and session.meta.boot_accepted:  # F06.FR.17
        return "the boot was accepted already"
    if wanted == "StatusNotification" and (evse is None or "connectorId" not in evse):  # F06.FR.12
        return "StatusNotification needs evse and connectorId"
    if wanted == "TransactionEvent":  # F06.FR.07: the 1.6 MeterValues of the transaction becomes an Updated
        open_txs = [tx for tx in session.ledger.open_transactions() if connector in (None, tx.connector_id)]
        if not open_txs:
            return "no ongoing transaction"
        connector = open_txs[0].connector_id if len(open_txs) == 1 else None
    request: dict[str, Any] = {"requestedMessage": _TRIGGERS[wanted]}
    if connector is not None and wanted in ("StatusNotification", "MeterValues", "TransactionEvent"):
        request["connectorId"] = connector
    return request


# 2.x requestedMessage -> 1.6 requestedMessage; anything else is NotImplemented (F06.FR.08).
_TRIGGERS: Final = {
    "BootNotification": "BootNotification",
    "Heartbeat": "Heartbeat",
    "StatusNotification": "StatusNotification",
    "MeterValues": "MeterValues",
    "TransactionEvent": "MeterValues",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "LogStatusNotification": "DiagnosticsStatusNotification",
}


def _extended(session: TranslatingSession, wanted: str) -> bool:
    """Whether a trigger needs the whitepaper's ExtendedTriggerMessage (§6.16): the charge point certificate, or
    the status of a log upload / firmware update that the whitepaper's GetLog / SignedUpdateFirmware started."""
    if wanted == "LogStatusNotification":
        return session.meta.log_via == "GetLog"
    if wanted == "FirmwareStatusNotification":
        return session.meta.firmware_via == "SignedUpdateFirmware"
    return wanted in EXTENDED


@from_csms("TriggerMessage", becomes=("TriggerMessage", "ExtendedTriggerMessage", "DataTransfer"),
           note="TransactionEvent -> MeterValues of the transaction's connector; LogStatusNotification -> "
                "DiagnosticsStatusNotification, or ExtendedTriggerMessage after a whitepaper GetLog (likewise "
                "FirmwareStatusNotification after a SignedUpdateFirmware); SignChargingStationCertificate -> "
                "ExtendedTriggerMessage(SignChargePointCertificate); SignV2GCertificate -> the PnC tunnel; "
                "SignCombinedCertificate, PublishFirmwareStatusNotification, 2.1 triggers: NotImplemented")
def trigger_message(session: TranslatingSession, call: Call) -> None:
    wanted = call.payload["requestedMessage"]
    if wanted == "SignV2GCertificate":
        v2g_trigger(session, call)
        return
    if _extended(session, wanted):  # the evse is irrelevant to these messages (F06.FR.03)
        extended_trigger(session, call, wanted)
        return
    if wanted not in _TRIGGERS:  # F06.FR.08
        session.reply_csms(call, status_answer("NotImplemented", UNSUPPORTED, f"1.6 cannot send {wanted}"))
        return
    request = _trigger_request(session, call.payload)
    if isinstance(request, str):
        session.reply_csms(call, status_answer("Rejected", "UnsupportedParam", request))
        return

    def accepted() -> None:
        if wanted == "BootNotification":  # the BootNotification that follows reports reason Triggered
            session.meta.boot_reason = "Triggered"
            session.persist(session.meta)

    forward(session, call, "TriggerMessage", request, accepted=accepted)
