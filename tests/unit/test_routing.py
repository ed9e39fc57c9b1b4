"""Route modes of a 1.6 charger (issue 8), fed recorded frames: legacy pass-through, shadow, switching routes."""

from __future__ import annotations

import orjson
import pytest

from ocpp_bridge.core.events import CloseCharger, LegacyConnected, LegacyLost, Links, RouteChanged
from ocpp_bridge.core.routing import RoutedSession
from ocpp_bridge.core.settings import CoreSettings
from ocpp_bridge.mappings import load_key_table
from tests.playbook import Playbook

KEYS = load_key_table()
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}
BOOT_ANSWER = {"status": "Accepted", "currentTime": "2024-05-01T10:00:00Z", "interval": 300}
START = {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000, "timestamp": "2024-05-01T10:00:00Z"}


def _raw(unique_id: str, action: str, payload: dict[str, object]) -> bytes:
    return orjson.dumps([2, unique_id, action, payload])


def _routed(pb: Playbook) -> RoutedSession:
    assert isinstance(pb.session, RoutedSession)
    return pb.session


def _legacy_roundtrip(pb: Playbook, action: str, payload: dict[str, object], answer: dict[str, object]) -> str:
    """The charger sends a CALL; the old system gets it byte for byte and answers; returns the messageId."""
    text = _raw(f"cp-{len(pb.commands)}", action, payload)
    pb.charger_sends_raw(text)
    assert pb.to_legacy.pop(0) == text.decode()
    unique_id = orjson.loads(text)[1]
    pb.legacy_answers(unique_id, answer)
    assert pb.charger_receives_result(unique_id) == answer
    return str(unique_id)


def _start_in_shadow(pb: Playbook, legacy_id: int = 4711) -> str:
    """A StartTransaction the old system numbers; returns the 2.0.1 transactionId the new CSMS saw."""
    _legacy_roundtrip(pb, "StartTransaction", START, {"transactionId": legacy_id, "idTagInfo": {"status": "Accepted"}})
    event = pb.csms_receives("TransactionEvent")
    assert event.payload["eventType"] == "Started" and event.payload["seqNo"] == 0
    pb.csms_answers(event, {"idTokenInfo": {"status": "Accepted"}})
    return str(event.payload["transactionInfo"]["transactionId"])


def test_legacy_route_passes_frames_unchanged_and_never_opens_the_new_csms() -> None:
    pb = Playbook.routed("legacy", csms_open=False)
    assert pb.links[-1] == Links(csms=False, legacy=True)
    _legacy_roundtrip(pb, "BootNotification", BOOT, BOOT_ANSWER)
    _legacy_roundtrip(pb, "Heartbeat", {}, {"currentTime": "2024-05-01T10:00:05Z"})
    assert pb.to_csms == []
    # a call from the old system reaches the charger unchanged, and the answer goes back unchanged
    pb.legacy_sends_raw(_raw("cs-1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}))
    call = pb.charger_receives("ChangeConfiguration")
    assert call.unique_id == "cs-1"
    pb.charger_sends_raw(b'[3,"cs-1",{"status":"Accepted"}]')
    assert pb.to_legacy.pop(0) == '[3,"cs-1",{"status":"Accepted"}]'
    pb.nothing_pending()


def test_legacy_route_refuses_invalid_frames_from_either_side_without_forwarding() -> None:
    pb = Playbook.routed("legacy", csms_open=False)
    pb.charger_sends_raw(_raw("cp-1", "StartTransaction", {"connectorId": 1}))
    pb.charger_receives_error("OccurenceConstraintViolation", "cp-1")
    pb.legacy_sends_raw(_raw("cs-1", "RemoteStartTransaction", {"idTag": 5}))
    error = pb.legacy_receives()
    assert error[0] == 4 and error[1] == "cs-1"
    assert pb.to_legacy == [] and pb.to_charger == []


def test_shadow_route_charger_gets_old_answers_new_csms_gets_translation() -> None:
    pb = Playbook.routed("shadow")
    assert pb.links[-1] == Links(csms=True, legacy=True)
    _legacy_roundtrip(pb, "BootNotification", BOOT, BOOT_ANSWER)
    boot = pb.csms_receives("BootNotification")
    pb.csms_answers(boot, {"status": "Accepted", "currentTime": "2024-05-01T10:00:00Z", "interval": 300})
    assert pb.to_charger == []  # the new CSMS's answer is compared, never sent
    tx_id = _start_in_shadow(pb)
    pb.charger_sends_raw(_raw("mv-1", "MeterValues", {"connectorId": 1, "transactionId": 4711, "meterValue": [
        {"timestamp": "2024-05-01T10:01:00Z", "sampledValue": [{"value": "1200"}]}]}))
    assert orjson.loads(pb.to_legacy.pop(0))[1] == "mv-1"
    pb.legacy_answers("mv-1", {})
    pb.charger_receives_result("mv-1")
    updated = pb.csms_receives("TransactionEvent")
    assert updated.payload["eventType"] == "Updated"
    assert updated.payload["transactionInfo"]["transactionId"] == tx_id and updated.payload["seqNo"] == 1
    report = _routed(pb).report
    assert report.compared == 3 and report.differences == 0
    assert pb.core.meta.legacy_open == [4711]


def test_shadow_route_records_authorization_and_boot_differences() -> None:
    pb = Playbook.routed("shadow")
    _legacy_roundtrip(pb, "BootNotification", BOOT, BOOT_ANSWER)
    boot = pb.csms_receives("BootNotification")
    pb.csms_answers(boot, {"status": "Pending", "currentTime": "2024-05-01T10:00:00Z", "interval": 30})
    _legacy_roundtrip(pb, "Authorize", {"idTag": "04A1B2C3"}, {"idTagInfo": {"status": "Accepted"}})
    authorize = pb.csms_receives("Authorize")
    pb.csms_answers(authorize, {"idTokenInfo": {"status": "Blocked"}})
    report = _routed(pb).report
    assert report.counts == {"authorization": 1, "boot_status": 1}
    kinds = [(d["kind"], d.get("legacy"), d.get("csms")) for d in report.recent]
    assert kinds == [("boot_status", "Accepted", "Pending"), ("authorization", "Accepted", "Blocked")]
    assert pb.to_charger == []
    # each difference is also an event (a log line, and a count per kind in ocpp_bridge.events)
    assert [k for k in pb.emitted_kinds() if k.startswith("shadow.")] == ["shadow.boot_status", "shadow.authorization"]


def test_shadow_route_records_new_csms_errors_and_timeouts() -> None:
    pb = Playbook.routed("shadow")
    _legacy_roundtrip(pb, "Authorize", {"idTag": "T1"}, {"idTagInfo": {"status": "Accepted"}})
    pb.csms_fails(pb.csms_receives("Authorize"), "InternalError", "boom")
    _legacy_roundtrip(pb, "Authorize", {"idTag": "T2"}, {"idTagInfo": {"status": "Accepted"}})
    pb.csms_receives("Authorize")
    pb.advance(60)
    report = _routed(pb).report
    assert report.counts["csms_error"] >= 2 and report.counts["timeout"] == 1
    assert pb.to_charger == []


def test_shadow_route_answers_read_only_csms_calls_and_refuses_the_rest() -> None:
    pb = Playbook.routed("shadow")
    pb.csms_sends("RequestStartTransaction", {"idToken": {"idToken": "A", "type": "ISO14443"}, "remoteStartId": 1},
                  unique_id="rs-1")
    pb.csms_receives_error("NotSupported", "rs-1")
    pb.csms_sends("GetTransactionStatus", {}, unique_id="gts-1")
    assert pb.csms_receives_result("gts-1") == {"messagesInQueue": False}
    assert pb.to_charger == [] and pb.to_legacy == []
    assert _routed(pb).report.counts == {"csms_call_refused": 1}


def test_charger_calls_share_one_lane_between_the_old_system_and_the_bridge() -> None:
    pb = Playbook.routed("shadow", settings=CoreSettings(keys=KEYS))
    pb.legacy_sends_raw(_raw("cs-1", "GetConfiguration", {}))
    assert pb.charger_receives("GetConfiguration").unique_id == "cs-1"
    pb.csms_sends("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}, unique_id="gv-1")
    assert pb.to_charger == []  # the bridge's own GetConfiguration waits for the old system's call
    pb.charger_sends_raw(b'[3,"cs-1",{"configurationKey":[]}]')
    assert orjson.loads(pb.to_legacy.pop(0))[1] == "cs-1"
    ours = pb.charger_receives("GetConfiguration")
    assert ours.unique_id != "cs-1"
    pb.charger_answers(ours, {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}]})
    result = pb.csms_receives_result("gv-1")
    assert result["getVariableResult"][0]["attributeValue"] == "60"


def test_cut_over_mid_transaction_keeps_transaction_id_and_seq_no_and_owes_the_old_system_its_stop() -> None:
    pb = Playbook.routed("shadow")
    tx_id = _start_in_shadow(pb)
    pb.feed(RouteChanged(pb.now, "translate"))
    assert _routed(pb).mode == "translate"
    assert pb.links[-1] == Links(csms=True, legacy=True)  # the old system still has the transaction open
    stop = {"transactionId": 4711, "meterStop": 5000, "timestamp": "2024-05-01T11:00:00Z"}
    pb.charger_sends("StopTransaction", stop, unique_id="stop-1")
    ended = pb.csms_receives("TransactionEvent")
    assert ended.payload["eventType"] == "Ended" and ended.payload["seqNo"] == 1
    assert ended.payload["transactionInfo"]["transactionId"] == tx_id
    pb.csms_answers(ended, {})
    pb.charger_receives_result("stop-1")  # on the translate route the charger hears the bridge
    owed = pb.legacy_receives()  # ... and the old system gets the StopTransaction it is owed
    assert owed[2] == "StopTransaction" and owed[3] == stop
    assert pb.core.meta.legacy_backlog == [{"action": "StopTransaction", "payload": stop}]
    pb.legacy_answers(owed[1], {})
    assert pb.core.meta.legacy_backlog == [] and pb.core.meta.legacy_open == []
    assert pb.links[-1] == Links(csms=True, legacy=False)
    # new transactions are numbered by the bridge, above the old system's ids
    pb.charger_sends("StartTransaction", {**START, "timestamp": "2024-05-01T12:00:00Z"}, unique_id="start-2")
    started = pb.csms_receives("TransactionEvent")
    pb.csms_answers(started, {"idTokenInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result("start-2")["transactionId"] == 4712


def test_owed_stop_is_kept_while_the_old_system_is_unreachable() -> None:
    pb = Playbook.routed("shadow")
    _start_in_shadow(pb)
    pb.feed(RouteChanged(pb.now, "translate"))
    pb.feed(LegacyLost(pb.now))
    assert not any(isinstance(c, CloseCharger) for c in pb.commands)  # not in charge: the charger stays
    pb.charger_sends("StopTransaction", {"transactionId": 4711, "meterStop": 5000,
                                         "timestamp": "2024-05-01T11:00:00Z"})
    pb.csms_answers(pb.csms_receives("TransactionEvent"), {})
    assert pb.to_legacy == [] and len(pb.core.meta.legacy_backlog) == 1
    pb.feed(LegacyConnected(pb.now))
    assert pb.legacy_receives()[2] == "StopTransaction"


def test_roll_back_to_legacy_keeps_the_new_csms_transaction_going_until_it_ends() -> None:
    pb = Playbook.routed("translate", legacy_open=False)
    assert pb.links[-1] == Links(csms=True, legacy=False)
    local_id, tx_id = pb.start()
    pb.feed(LegacyConnected(pb.now))
    pb.feed(RouteChanged(pb.now, "legacy"))
    assert pb.links[-1] == Links(csms=True, legacy=True)  # the new CSMS still has an open transaction
    stop = {"transactionId": local_id, "meterStop": 5000, "timestamp": "2024-05-01T11:00:00Z"}
    pb.charger_sends_raw(_raw("stop-1", "StopTransaction", stop))
    assert orjson.loads(pb.to_legacy.pop(0))[3] == stop
    pb.legacy_answers("stop-1", {"idTagInfo": {"status": "Accepted"}})
    assert pb.charger_receives_result("stop-1") == {"idTagInfo": {"status": "Accepted"}}
    ended = pb.csms_receives("TransactionEvent")
    assert ended.payload["eventType"] == "Ended" and ended.payload["transactionInfo"]["transactionId"] == tx_id
    pb.csms_answers(ended, {})
    assert pb.links[-1] == Links(csms=False, legacy=True)  # nothing left for the new CSMS
    pb.nothing_pending()


def test_losing_the_old_system_closes_the_charger_when_it_was_in_charge() -> None:
    pb = Playbook.routed("shadow")
    commands = pb.feed(LegacyLost(pb.now))
    assert any(isinstance(c, CloseCharger) and c.code == 1001 for c in commands)


def test_new_csms_outage_on_a_shadow_route_never_closes_the_charger() -> None:
    from ocpp_bridge.core.events import UpstreamLost

    pb = Playbook.routed("shadow")
    pb.feed(UpstreamLost(pb.now))
    pb.advance(10_000)
    assert not any(isinstance(c, CloseCharger) for c in pb.commands)


@pytest.mark.parametrize("mode", ["translate", "legacy", "shadow"])
def test_unknown_route_change_is_ignored(mode: str) -> None:
    pb = Playbook.routed(mode)
    pb.feed(RouteChanged(pb.now, "sideways"))
    assert _routed(pb).mode == mode


def test_an_old_system_reusing_a_transaction_id_the_ledger_holds_is_a_difference_not_an_overwrite() -> None:
    pb = Playbook.routed("translate")
    local_id, tx_id = pb.start()
    pb.feed(RouteChanged(pb.now, "shadow"))
    _legacy_roundtrip(pb, "StartTransaction", {**START, "connectorId": 2, "timestamp": "2024-05-01T12:00:00Z"},
                      {"transactionId": local_id, "idTagInfo": {"status": "Accepted"}})
    assert pb.to_csms == []  # not mirrored
    assert pb.core.ledger.get(local_id).tx_id == tx_id  # the new CSMS's transaction is untouched
    assert _routed(pb).report.counts == {"transaction_id_collision": 1}


def test_the_first_messages_of_a_shadow_session_wait_for_the_new_csms_link() -> None:
    from ocpp_bridge.core.events import UpstreamConnected

    pb = Playbook.routed("shadow", csms_open=False)  # the session opens the new CSMS's side after the handshake
    _legacy_roundtrip(pb, "BootNotification", BOOT, BOOT_ANSWER)
    assert pb.to_csms == []  # held, not answered as offline
    pb.feed(UpstreamConnected(pb.now))
    boot = pb.csms_receives("BootNotification")
    pb.csms_answers(boot, {"status": "Accepted", "currentTime": "2024-05-01T10:00:00Z", "interval": 300})
    assert _routed(pb).report.differences == 0


def test_held_messages_are_let_go_when_the_new_csms_link_does_not_come() -> None:
    pb = Playbook.routed("shadow", csms_open=False)
    _legacy_roundtrip(pb, "BootNotification", BOOT, BOOT_ANSWER)
    pb.advance(CoreSettings().call_timeout + 1)
    assert pb.to_csms == [] and pb.to_charger == []  # the charger had its answer from the old system already
    assert _routed(pb).report.counts == {"boot_status": 1}  # the bridge could only say Pending for the new CSMS
