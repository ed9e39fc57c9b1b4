"""Smart charging (2.0.1 K01, K08, K09, K10; 1.6 §5.5, §5.7, §5.16): profiles down, composite schedules up.

Why this exists: SetChargingProfile, ClearChargingProfile and GetCompositeSchedule each have a 1.6 counterpart
that differs in addressing (evseId vs connectorId), transaction identity (a 2.0.1 string through the ledger,
only this charger's), purpose names and shapes; GetChargingProfiles has none, so the bridge answers it from the
profiles the charger accepted (kept in the charger record, removed when cleared or when their transaction ends)
and sends the ReportChargingProfiles itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..convert import epoch, timestamp
from ..lanes import Continuation, Outcome
from . import Handling, from_csms
from .common import UNSUPPORTED, status_answer
from .profiles import PURPOSES, installed, profile_v16

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession
    from ..state import TxRecord

MAX_PROFILES: Final = 64  # bounded so a CSMS cannot grow the charger record forever


# --- SetChargingProfile (K01) ---------------------------------------------------------------------------------


def _transaction(session: TranslatingSession, evse_id: int, profile: dict[str, Any]) -> TxRecord | str:
    """The open transaction a TxProfile is for, or why there is none."""
    if evse_id <= 0:  # K01.FR.16
        return "a TxProfile needs an evseId > 0"
    if "transactionId" in profile:
        tx = session.ledger.by_tx_id(profile["transactionId"])  # only this charger's transactions
        if tx is None or tx.ended or tx.connector_id != evse_id:  # K01.FR.33
            return "no ongoing transaction with this id on this EVSE"
        return tx
    tx = session.ledger.open_on_connector(evse_id)
    return tx if tx is not None else "no transaction on this EVSE"  # K01.FR.09


def _request(session: TranslatingSession, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None] | str:
    """(1.6 SetChargingProfile, 2.0.1 transactionId) or the reason to answer Rejected."""
    evse_id, profile = payload["evseId"], payload["chargingProfile"]
    converted, why = profile_v16(profile)
    if converted is None:
        return why
    if evse_id < 0:  # K01.FR.28
        return "no such EVSE"
    purpose = profile["chargingProfilePurpose"]
    if purpose == "ChargingStationMaxProfile" and (evse_id != 0 or profile["chargingProfileKind"] == "Relative"):
        return "a ChargingStationMaxProfile must be for evseId 0 and not Relative"  # 1.6 §3.13.1; K01.FR.38
    tx_id = None
    if purpose == "TxProfile":
        tx = _transaction(session, evse_id, profile)
        if isinstance(tx, str):
            return tx
        if "transactionId" in profile:
            converted["transactionId"] = tx.local_id
        tx_id = tx.tx_id
    elif "transactionId" in profile:
        return "transactionId only belongs in a TxProfile"
    return {"connectorId": evse_id, "csChargingProfiles": converted}, tx_id


def _remember(session: TranslatingSession, evse_id: int, profile: dict[str, Any]) -> None:
    """Keep what the charger now holds. Same id, or same EVSE + purpose + stackLevel, replaces (K01.FR.05,
    1.6 §5.16)."""
    def replaced(entry: dict[str, Any]) -> bool:
        old = entry["profile"]
        same_slot = (entry["evseId"], old["chargingProfilePurpose"], old["stackLevel"], old.get("transactionId")) \
            == (evse_id, profile["chargingProfilePurpose"], profile["stackLevel"], profile.get("transactionId"))
        return bool(old["id"] == profile["id"] or same_slot)

    profiles = session.meta.charging_profiles
    profiles[:] = [entry for entry in profiles if not replaced(entry)]
    profiles.append({"evseId": evse_id, "profile": profile})
    del profiles[:-MAX_PROFILES]
    session.persist(session.meta)


@from_csms("SetChargingProfile", note="evseId -> connectorId; ChargingStationMaxProfile -> ChargePointMaxProfile; "
           "one schedule only; transactionId -> the charger's 1.6 id via the ledger (unknown: Rejected, K01.FR.33); "
           "ExternalConstraints, 2.1 purposes/Dynamic/setpoints: Rejected; NotSupported -> Rejected")
def set_charging_profile(session: TranslatingSession, call: Call) -> None:
    request = _request(session, call.payload)
    if isinstance(request, str):
        session.reply_csms(call, status_answer("Rejected", "InvalidProfile", request))
        return
    message, tx_id = request

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        status = outcome.result["status"]
        if status == "Accepted":
            kept = installed(call.payload["chargingProfile"], message["csChargingProfiles"], tx_id)
            _remember(session, message["connectorId"], kept)
            session.reply_csms(call, status_answer("Accepted"))
        elif status == "NotSupported":
            session.reply_csms(call, status_answer("Rejected", UNSUPPORTED, "the charger does not support "
                                                   "this charging profile"))
        else:
            session.reply_csms(call, status_answer("Rejected"))

    session.call_charger("SetChargingProfile", message, answered)


# --- ClearChargingProfile (K10) -------------------------------------------------------------------------------


def _matches(entry: dict[str, Any], payload: dict[str, Any]) -> bool:
    if "chargingProfileId" in payload:  # K10.FR.03: the id alone decides
        return bool(entry["profile"]["id"] == payload["chargingProfileId"])
    criteria = payload.get("chargingProfileCriteria", {})  # K10.FR.04: every given field must match
    profile = entry["profile"]
    return all((
        criteria.get("evseId", entry["evseId"]) == entry["evseId"],
        criteria.get("chargingProfilePurpose", profile["chargingProfilePurpose"]) == profile["chargingProfilePurpose"],
        criteria.get("stackLevel", profile["stackLevel"]) == profile["stackLevel"],
    ))


@from_csms("ClearChargingProfile", note="chargingProfileId -> id, criteria evseId -> connectorId, purpose renamed; "
           "ExternalConstraints and 2.1 purposes: Unknown (K10.FR.06/08); the bridge forgets what was cleared")
def clear_charging_profile(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    criteria = payload.get("chargingProfileCriteria", {})
    request: dict[str, Any] = {}
    if "chargingProfileId" in payload:
        request["id"] = payload["chargingProfileId"]
    if "evseId" in criteria:
        request["connectorId"] = criteria["evseId"]
    if "stackLevel" in criteria:
        request["stackLevel"] = criteria["stackLevel"]
    if "chargingProfilePurpose" in criteria:
        purpose = PURPOSES.get(criteria["chargingProfilePurpose"])
        if purpose is None:  # nothing with that purpose can be on a 1.6 charger
            session.reply_csms(call, status_answer("Unknown"))
            return
        request["chargingProfilePurpose"] = purpose

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
            return
        # Accepted: cleared; Unknown: the charger holds none of them (e.g. a TxProfile ended with its transaction).
        profiles = session.meta.charging_profiles
        kept = [entry for entry in profiles if not _matches(entry, payload)]
        if len(kept) != len(profiles):
            profiles[:] = kept
            session.persist(session.meta)
        session.reply_csms(call, status_answer(outcome.result["status"]))

    session.call_charger("ClearChargingProfile", request, answered)


# --- GetCompositeSchedule (K08) ---------------------------------------------------------------------------------


def _composite(result: dict[str, Any], payload: dict[str, Any], asked_at: float) -> dict[str, Any]:
    """1.6 GetCompositeSchedule.conf -> 2.0.1 answer. 1.6 allows an empty period list, 2.0.1 does not."""
    schedule = result.get("chargingSchedule")
    if result["status"] != "Accepted":
        return status_answer("Rejected")
    if not schedule or not schedule["chargingSchedulePeriod"]:
        return status_answer("Rejected", "NoSchedule", "the charger reported no schedule periods")
    periods = [{"startPeriod": p["startPeriod"], "limit": p["limit"]}
               | ({"numberPhases": p["numberPhases"]} if "numberPhases" in p else {})
               for p in schedule["chargingSchedulePeriod"]]
    start = result.get("scheduleStart") or schedule.get("startSchedule")
    return {"status": "Accepted", "schedule": {
        "evseId": payload["evseId"],
        "duration": schedule.get("duration", payload["duration"]),
        # K08.FR.02: the schedule runs from the moment of the request when the charger does not say otherwise
        "scheduleStart": timestamp(start) if start else epoch(asked_at),
        "chargingRateUnit": schedule["chargingRateUnit"],
        "chargingSchedulePeriod": periods,
    }}


@from_csms("GetCompositeSchedule", note="evseId -> connectorId; the 1.6 schedule reshaped (scheduleStart, duration "
           "filled from the request when absent); an empty period list -> Rejected")
def get_composite_schedule(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    if payload["evseId"] < 0:  # K08.FR.05
        session.reply_csms(call, status_answer("Rejected", "UnknownEvse"))
        return
    request = {"connectorId": payload["evseId"], "duration": payload["duration"]}
    if "chargingRateUnit" in payload:
        request["chargingRateUnit"] = payload["chargingRateUnit"]
    asked_at = session.now

    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_csms(call, _composite(outcome.result, payload, asked_at))
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger("GetCompositeSchedule", request, answered)


# --- GetChargingProfiles (K09) -----------------------------------------------------------------------------------


def _current(session: TranslatingSession) -> list[dict[str, Any]]:
    """The remembered profiles, without TxProfiles whose transaction ended (the charger dropped them)."""
    profiles = session.meta.charging_profiles
    kept = []
    for entry in profiles:
        tx_id = entry["profile"].get("transactionId")
        tx = session.ledger.by_tx_id(tx_id) if tx_id is not None else None
        if tx_id is None or (tx is not None and not tx.ended):
            kept.append(entry)
    if len(kept) != len(profiles):
        profiles[:] = kept
        session.persist(session.meta)
    return kept


def _wanted(entry: dict[str, Any], payload: dict[str, Any]) -> bool:
    criteria, profile = payload["chargingProfile"], entry["profile"]
    return all((
        payload.get("evseId", entry["evseId"]) == entry["evseId"],  # K09.FR.04-06
        criteria.get("chargingProfilePurpose", profile["chargingProfilePurpose"]) == profile["chargingProfilePurpose"],
        criteria.get("stackLevel", profile["stackLevel"]) == profile["stackLevel"],
        profile["id"] in criteria.get("chargingProfileId", [profile["id"]]),
        "CSO" in criteria.get("chargingLimitSource", ["CSO"]),  # every profile the bridge set came from the CSMS
    ))


@from_csms("GetChargingProfiles", Handling.ANSWERED, becomes=("ReportChargingProfiles",),
           note="answered from the profiles the charger accepted through the bridge; Accepted + "
                "ReportChargingProfiles per EVSE (chargingLimitSource CSO, tbc), or NoProfiles")
def get_charging_profiles(session: TranslatingSession, call: Call) -> None:
    found = [entry for entry in _current(session) if _wanted(entry, call.payload)]
    if not found:
        session.reply_csms(call, status_answer("NoProfiles"))
        return
    session.reply_csms(call, status_answer("Accepted"))
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for entry in found:
        by_evse.setdefault(entry["evseId"], []).append(entry["profile"])
    for index, (evse_id, profiles) in enumerate(by_evse.items()):
        report: dict[str, Any] = {"requestId": call.payload["requestId"], "chargingLimitSource": "CSO",
                                  "chargingProfile": profiles, "evseId": evse_id}
        if index < len(by_evse) - 1:
            report["tbc"] = True  # K09.FR.02
        session.call_csms("ReportChargingProfiles", report, _reported(session))


def _reported(session: TranslatingSession) -> Continuation:
    def done(outcome: Outcome) -> None:
        if not outcome.ok:
            session.emit("report.failed", action="ReportChargingProfiles")

    return done
