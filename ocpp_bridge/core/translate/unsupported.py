"""CSMS requests a 1.6 charger has no counterpart for (mapping reference §2.10, §6), answered by the bridge.

Why this exists: display messages, monitoring, customer information, network profiles, local firmware
publishing, and the 2.1 tariff / DER / battery-swap / stream families have no 1.6 message. The CSMS still gets a
clear, schema-valid answer at once: the negative status its response enum has (with statusInfo
"UnsupportedRequest"), an honest empty answer where that is the truth, and CALLERROR NotSupported only where the
response has no status to say no with (2.0.1 Part 4 §4.3: "recognized but not supported"). Every answer here
validates against both the 2.0.1 and the 2.1 schema of its action (tests/unit/test_unsupported.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..rpc import ErrorCode
from . import Handling, from_csms
from .common import UNSUPPORTED, status_answer

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def _status(value: str, why: str) -> Answer:
    return lambda _payload: status_answer(value, UNSUPPORTED, why)


def _monitors_refused(payload: dict[str, Any]) -> dict[str, Any]:
    """N04: every monitor UnsupportedMonitorType, echoing what was asked (an id only comes with Accepted)."""
    return {"setMonitoringResult": [
        {"status": "UnsupportedMonitorType", "type": item["type"], "severity": item["severity"],
         "component": item["component"], "variable": item["variable"],
         "statusInfo": {"reasonCode": UNSUPPORTED}} for item in payload["setMonitoringData"]]}


def _monitors_not_found(payload: dict[str, Any]) -> dict[str, Any]:
    return {"clearMonitoringResult": [{"status": "NotFound", "id": monitor_id} for monitor_id in payload["id"]]}


def _no_tariffs(payload: dict[str, Any]) -> dict[str, Any]:
    ids = payload.get("tariffIds")
    results = [{"status": "NoTariff", "tariffId": tariff_id} for tariff_id in ids] if ids else [{"status": "NoTariff"}]
    return {"clearTariffsResult": results}


_DISPLAY: Final = "a 1.6 charger has no display messages (O01-O06)"
_MONITORING: Final = "a 1.6 charger has no variable monitoring (N02-N08)"
_TARIFF: Final = "a 1.6 charger has no tariffs (2.1 I08-I12)"
_DER: Final = "a 1.6 charger has no DER control (2.1 R)"

# action -> (answer, or None for CALLERROR NotSupported; how it is handled; why)
_TABLE: Final[dict[str, tuple[Answer | None, Handling, str]]] = {
    # 2.0.1 and 2.1
    "ClearDisplayMessage": (_status("Unknown", _DISPLAY), Handling.REFUSED, f"Unknown: {_DISPLAY}"),
    "GetDisplayMessages": (_status("Unknown", _DISPLAY), Handling.REFUSED, f"Unknown: {_DISPLAY}"),
    "SetDisplayMessage": (_status("Rejected", _DISPLAY), Handling.REFUSED, f"Rejected: {_DISPLAY}"),
    "SetVariableMonitoring": (_monitors_refused, Handling.REFUSED, f"UnsupportedMonitorType per item: {_MONITORING}"),
    "ClearVariableMonitoring": (_monitors_not_found, Handling.REFUSED, f"NotFound per id: {_MONITORING}"),
    "SetMonitoringBase": (_status("NotSupported", _MONITORING), Handling.REFUSED, f"NotSupported: {_MONITORING}"),
    "SetMonitoringLevel": (_status("Rejected", _MONITORING), Handling.REFUSED, f"Rejected: {_MONITORING}"),
    "GetMonitoringReport": (_status("NotSupported", _MONITORING), Handling.REFUSED, f"NotSupported: {_MONITORING}"),
    "CustomerInformation": (_status("Rejected", "1.6 cannot report or clear customer data (N09/N10)"),
                            Handling.REFUSED, "Rejected: 1.6 cannot report or clear customer data (N09/N10)"),
    "SetNetworkProfile": (_status("Rejected", "the upstream link belongs to the bridge (B09)"), Handling.REFUSED,
                          "Rejected: the connection to the CSMS is the bridge's, not the charger's (B09)"),
    "PublishFirmware": (_status("Rejected", "not a Local Controller (L03)"), Handling.REFUSED,
                        "Rejected: the charger is not a Local Controller that publishes firmware (L03)"),
    "UnpublishFirmware": (lambda _payload: {"status": "NoFirmware"}, Handling.REFUSED,
                          "NoFirmware: nothing is ever published (L04)"),
    # 2.1 only
    "AFRRSignal": (_status("Rejected", _DER), Handling.REFUSED, f"Rejected: {_DER}"),
    "AdjustPeriodicEventStream": (_status("Rejected", "no periodic event streams"), Handling.REFUSED,
                                  "Rejected: the bridge opens no periodic event streams"),
    "ChangeTransactionTariff": (_status("Rejected", _TARIFF), Handling.REFUSED, f"Rejected: {_TARIFF}"),
    "ClearDERControl": (_status("NotSupported", _DER), Handling.REFUSED, f"NotSupported: {_DER}"),
    "ClearTariffs": (_no_tariffs, Handling.REFUSED, f"NoTariff per id: {_TARIFF}"),
    "GetDERControl": (_status("NotSupported", _DER), Handling.REFUSED, f"NotSupported: {_DER}"),
    "GetPeriodicEventStream": (lambda _payload: {}, Handling.ANSWERED,
                               "{} (no streams): the bridge opens no periodic event streams"),
    "GetTariffs": (_status("NoTariff", _TARIFF), Handling.REFUSED, f"NoTariff: {_TARIFF}"),
    "NotifyAllowedEnergyTransfer": (_status("Rejected", "1.6 has no ISO 15118-20 energy transfer modes"),
                                    Handling.REFUSED, "Rejected: 1.6 has no ISO 15118-20 energy transfer modes"),
    "NotifyWebPaymentStarted": (None, Handling.REFUSED, "CALLERROR NotSupported: the answer has no status, and "
                                "1.6 has no display or payment terminal to tell"),
    "RequestBatterySwap": (_status("Rejected", "not a battery swap station"), Handling.REFUSED,
                           "Rejected: a 1.6 charger is not a battery swap station"),
    "SetDERControl": (_status("NotSupported", _DER), Handling.REFUSED, f"NotSupported: {_DER}"),
    "SetDefaultTariff": (_status("Rejected", _TARIFF), Handling.REFUSED, f"Rejected: {_TARIFF}"),
    "UpdateDynamicSchedule": (_status("Rejected", "no Dynamic charging profiles on 1.6"), Handling.REFUSED,
                              "Rejected: 1.6 has no Dynamic charging profiles (they are refused when set)"),
    "UsePriorityCharging": (_status("NoProfile", "no PriorityCharging profiles on 1.6"), Handling.REFUSED,
                            "NoProfile: PriorityCharging profiles cannot be set on 1.6"),
}


def _handler(action: str, answer: Answer | None) -> Callable[[TranslatingSession, Call], None]:
    def handle(session: TranslatingSession, call: Call) -> None:
        if answer is None:
            session.fail_csms(call, ErrorCode.NOT_SUPPORTED, f"{action} has no OCPP 1.6 counterpart")
        else:
            session.reply_csms(call, answer(call.payload))

    handle.__name__ = handle.__qualname__ = f"answer_{action}"
    return handle


for _action, (_answer, _handling, _note) in _TABLE.items():
    from_csms(_action, _handling, note=_note)(_handler(_action, _answer))
