"""CSMS requests a 1.6 charger has no counterpart for (mapping reference §2.10, §6): each is answered by the bridge
at once with a negative answer valid against both the 2.0.1 and the 2.1 schema, or CALLERROR NotSupported where the
response has no status; the charger never hears of them."""

from __future__ import annotations

from typing import Any

import pytest

from ocpp_bridge.core import validate
from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.translate import CSMS_ROUTES, Handling
from ocpp_bridge.core.translate.unsupported import _TABLE
from tests.playbook import Playbook

TOKEN = {"idToken": "04A1B2C3", "type": "Central"}
COMPONENT = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
TARIFF = {"tariffId": "t1", "currency": "EUR"}
CONNECTION = {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example.com/ocpp",
              "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}

# action -> (request, expected answer; None = CALLERROR NotSupported). A status answer also carries statusInfo.
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "ClearDisplayMessage": ({"id": 1}, "Unknown"),
    "GetDisplayMessages": ({"requestId": 1}, "Unknown"),
    "SetDisplayMessage": ({"message": {"id": 1, "priority": "NormalCycle",
                                       "message": {"format": "UTF8", "content": "Hello"}}}, "Rejected"),
    "SetVariableMonitoring": ({"setMonitoringData": [{"value": 5, "type": "Delta", "severity": 5, **COMPONENT},
                                                     {"id": 3, "value": 1, "type": "Periodic", "severity": 9,
                                                      **COMPONENT}]},
                              {"setMonitoringResult": [
                                  {"status": "UnsupportedMonitorType", "type": "Delta", "severity": 5, **COMPONENT,
                                   "statusInfo": {"reasonCode": "UnsupportedRequest"}},
                                  {"status": "UnsupportedMonitorType", "type": "Periodic", "severity": 9, **COMPONENT,
                                   "statusInfo": {"reasonCode": "UnsupportedRequest"}}]}),
    "ClearVariableMonitoring": ({"id": [4, 5]}, {"clearMonitoringResult": [{"status": "NotFound", "id": 4},
                                                                           {"status": "NotFound", "id": 5}]}),
    "SetMonitoringBase": ({"monitoringBase": "All"}, "NotSupported"),
    "SetMonitoringLevel": ({"severity": 5}, "Rejected"),
    "GetMonitoringReport": ({"requestId": 1}, "NotSupported"),
    "CustomerInformation": ({"requestId": 1, "report": True, "clear": True, "idToken": TOKEN}, "Rejected"),
    "SetNetworkProfile": ({"configurationSlot": 1, "connectionData": CONNECTION}, "Rejected"),
    "PublishFirmware": ({"location": "https://fw/x.bin", "checksum": "abc", "requestId": 1}, "Rejected"),
    "UnpublishFirmware": ({"checksum": "abc"}, {"status": "NoFirmware"}),
    "AFRRSignal": ({"timestamp": "2024-05-01T10:00:00Z", "signal": 1}, "Rejected"),
    "AdjustPeriodicEventStream": ({"id": 1, "params": {"interval": 5}}, "Rejected"),
    "ChangeTransactionTariff": ({"transactionId": "t-1", "tariff": TARIFF}, "Rejected"),
    "ClearDERControl": ({"isDefault": True}, "NotSupported"),
    "ClearTariffs": ({"tariffIds": ["a", "b"]}, {"clearTariffsResult": [{"status": "NoTariff", "tariffId": "a"},
                                                                        {"status": "NoTariff", "tariffId": "b"}]}),
    "GetDERControl": ({"requestId": 1}, "NotSupported"),
    "GetPeriodicEventStream": ({}, {}),
    "GetTariffs": ({"evseId": 0}, "NoTariff"),
    "NotifyAllowedEnergyTransfer": ({"transactionId": "t-1", "allowedEnergyTransfer": ["DC"]}, "Rejected"),
    "NotifyWebPaymentStarted": ({"evseId": 1, "timeout": 60}, None),
    "RequestBatterySwap": ({"idToken": TOKEN, "requestId": 1}, "Rejected"),
    "SetDERControl": ({"isDefault": False, "controlId": "c1", "controlType": "FixedPFAbsorb",
                       "fixedPFAbsorb": {"priority": 1, "displacement": 0.9, "excitation": True}}, "NotSupported"),
    "SetDefaultTariff": ({"evseId": 0, "tariff": TARIFF}, "Rejected"),
    "UpdateDynamicSchedule": ({"chargingProfileId": 1, "scheduleUpdate": {"limit": 6.0}}, "Rejected"),
    "UsePriorityCharging": ({"transactionId": "t-1", "activate": True}, "NoProfile"),
}


def _versions(action: str) -> list[Version]:
    return [v for v in (Version.V201, Version.V21) if validate.knows(v, action)]


def test_every_refusal_has_a_case() -> None:
    assert set(CASES) == set(_TABLE)


@pytest.mark.parametrize(("action", "upstream"), [(a, v) for a in sorted(CASES) for v in _versions(a)])
def test_each_is_answered_by_the_bridge(action: str, upstream: Version) -> None:
    request, expected = CASES[action]
    assert validate.check(upstream, action, request, response=False) is None, "the test request is invalid"
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends(action, request)
    if expected is None:
        frame = pb.csms_receives_error("NotSupported", uid)
        assert action in frame.raw[3]
    else:
        answer = pb.csms_receives_result(uid)  # the playbook checked it against the upstream version's schema
        if isinstance(expected, str):
            assert answer["status"] == expected
            assert answer["statusInfo"]["reasonCode"] == "UnsupportedRequest"
        else:
            assert answer == expected
        for version in _versions(action):  # and it is valid in every version that has the action
            assert validate.check(version, action, answer, response=True) is None, version
    pb.nothing_pending()  # the charger never heard of it
    assert "bug" not in pb.emitted_kinds()


def test_clear_tariffs_without_ids() -> None:
    pb = Playbook.translated(Version.V21)
    uid = pb.csms_sends("ClearTariffs", {})
    assert pb.csms_receives_result(uid) == {"clearTariffsResult": [{"status": "NoTariff"}]}


def test_refusals_are_registered_as_such() -> None:
    for action in _TABLE:
        assert CSMS_ROUTES[action].handling in (Handling.REFUSED, Handling.ANSWERED)
