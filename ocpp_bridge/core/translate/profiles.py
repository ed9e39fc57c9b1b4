"""2.x ChargingProfileType -> 1.6 ChargingProfile, shared by SetChargingProfile and RequestStartTransaction.

Why this exists: both messages carry the same profile and 1.6 can hold only part of it (mapping reference §2.5):
one schedule (K01.FR.34), three of the purposes (renamed ChargingStationMaxProfile <-> ChargePointMaxProfile),
no Dynamic kind, no 2.1 setpoints/per-phase limits, limits in steps of 0.1. A profile that needs anything else is
refused as a whole, never sent half-converted. The bridge also keeps, per accepted profile, the 2.x form of what
the charger actually holds, which GetChargingProfiles reports (K09).
"""

from __future__ import annotations

import math
from typing import Any, Final

# 2.x ChargingProfilePurposeEnumType -> 1.6 ChargingProfilePurposeType (reference §3.6). ExternalConstraints may not
# be set by a CSMS (K01.FR.22); the 2.1 PriorityCharging / LocalGeneration purposes have no 1.6 counterpart.
PURPOSES: Final = {
    "ChargingStationMaxProfile": "ChargePointMaxProfile",
    "TxDefaultProfile": "TxDefaultProfile",
    "TxProfile": "TxProfile",
}
_PROFILE_FIELDS: Final = frozenset({"id", "stackLevel", "chargingProfilePurpose", "chargingProfileKind",
                                    "recurrencyKind", "validFrom", "validTo", "chargingSchedule", "customData",
                                    "transactionId"})
_SCHEDULE_FIELDS: Final = frozenset({"id", "startSchedule", "duration", "chargingRateUnit",
                                     "chargingSchedulePeriod", "minChargingRate", "salesTariff", "customData"})
_PERIOD_FIELDS: Final = frozenset({"startPeriod", "limit", "numberPhases", "phaseToUse", "customData"})


def _tenths(value: float, *, up: bool = False) -> float:
    """A 1.6 limit: a multiple of 0.1 (schema ``multipleOf``), rounded so it never exceeds the 2.x one."""
    if isinstance(value, int) or abs(value) >= 2**53:  # integral already (and x10 could overflow)
        return value
    scaled = value * 10
    return (math.ceil(scaled - 1e-6) if up else math.floor(scaled + 1e-6)) / 10


def _period(period: dict[str, Any]) -> dict[str, Any] | None:
    if not set(period) <= _PERIOD_FIELDS or "limit" not in period:  # 2.1 setpoints, per-phase limits, V2X
        return None
    result = {"startPeriod": period["startPeriod"], "limit": _tenths(period["limit"])}
    if "numberPhases" in period:
        result["numberPhases"] = period["numberPhases"]  # phaseToUse has no 1.6 field: the station picks (K01.FR.47)
    return result


def _schedule(schedule: dict[str, Any]) -> dict[str, Any] | None:
    periods = [_period(p) for p in schedule["chargingSchedulePeriod"]]
    if not set(schedule) <= _SCHEDULE_FIELDS or any(p is None for p in periods):
        return None
    result: dict[str, Any] = {"chargingRateUnit": schedule["chargingRateUnit"], "chargingSchedulePeriod": periods}
    for name in ("duration", "startSchedule"):
        if name in schedule:
            result[name] = schedule[name]
    if "minChargingRate" in schedule:
        result["minChargingRate"] = _tenths(schedule["minChargingRate"], up=True)
    return result  # schedule id dropped; salesTariff has no 1.6 home (reference §2.5)


def profile_v16(profile: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The 1.6 ChargingProfile (without transactionId), or ``(None, why)`` when 1.6 cannot carry ``profile``."""
    purpose = PURPOSES.get(profile["chargingProfilePurpose"])
    if purpose is None:
        return None, f"purpose {profile['chargingProfilePurpose']} cannot be set on a 1.6 charger"
    if profile["chargingProfileKind"] not in ("Absolute", "Recurring", "Relative"):  # 2.1 Dynamic
        return None, f"kind {profile['chargingProfileKind']} has no 1.6 equivalent"
    if len(profile["chargingSchedule"]) != 1:  # K01.FR.34: more than one only with ISO 15118
        return None, "1.6 takes exactly one chargingSchedule"
    schedule = _schedule(profile["chargingSchedule"][0])
    if schedule is None or not set(profile) <= _PROFILE_FIELDS:
        return None, "the profile uses fields 1.6 cannot express"
    result: dict[str, Any] = {"chargingProfileId": profile["id"], "stackLevel": profile["stackLevel"],
                              "chargingProfilePurpose": purpose,
                              "chargingProfileKind": profile["chargingProfileKind"], "chargingSchedule": schedule}
    for name in ("recurrencyKind", "validFrom", "validTo"):
        if name in profile:
            result[name] = profile[name]
    return result, ""


def tx_profile(profile: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """A RequestStartTransaction chargingProfile as a 1.6 one, or ``(None, why)`` when 1.6 cannot carry it."""
    if profile["chargingProfilePurpose"] != "TxProfile":  # K05.FR.02 (1.6 §5.11 too)
        return None, "purpose must be TxProfile"
    if "transactionId" in profile:  # the transaction does not exist yet (1.6 §5.11: SHALL NOT be set)
        return None, "transactionId must be absent"
    return profile_v16(profile)


def installed(original: dict[str, Any], sent: dict[str, Any], tx_id: str | None) -> dict[str, Any]:
    """The 2.x ChargingProfileType of what the charger holds after accepting ``sent`` (rounded limits, no
    salesTariff/phaseToUse): what a ReportChargingProfiles must show (K09)."""
    schedule16 = sent["chargingSchedule"]
    schedule: dict[str, Any] = {"id": original["chargingSchedule"][0]["id"]}
    schedule.update({k: schedule16[k] for k in ("startSchedule", "duration") if k in schedule16})
    schedule["chargingRateUnit"] = schedule16["chargingRateUnit"]
    schedule["chargingSchedulePeriod"] = [dict(p) for p in schedule16["chargingSchedulePeriod"]]
    if "minChargingRate" in schedule16:
        schedule["minChargingRate"] = schedule16["minChargingRate"]
    result = {"id": original["id"], "stackLevel": original["stackLevel"],
              "chargingProfilePurpose": original["chargingProfilePurpose"],
              "chargingProfileKind": original["chargingProfileKind"]}
    result.update({k: original[k] for k in ("recurrencyKind", "validFrom", "validTo") if k in original})
    if tx_id is not None:
        result["transactionId"] = tx_id
    result["chargingSchedule"] = [schedule]
    return result
