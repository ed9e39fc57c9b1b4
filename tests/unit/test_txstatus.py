"""GetTransactionStatus and CostUpdated, answered by the bridge (mapping reference §2.8; 2.0.1 E14, I02)."""

from __future__ import annotations

import pytest

from ocpp_bridge.core.rpc import Version
from ocpp_bridge.core.state import ChargerMeta, ChargerState, TxRecord
from tests.playbook import Playbook

BOTH = pytest.mark.parametrize("upstream", [Version.V201, Version.V21])


def _ask(pb: Playbook, payload: dict[str, str]) -> dict[str, object]:
    uid = pb.csms_sends("GetTransactionStatus", payload)
    result = next(f for f in pb.to_csms if f.unique_id == uid)
    pb.to_csms.remove(result)
    assert result.type_id == 3
    return result.payload


@BOTH
def test_a_running_transaction(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    _, tx_id = pb.start()
    assert _ask(pb, {"transactionId": tx_id}) == {"ongoingIndicator": True, "messagesInQueue": False}  # E14.FR.02
    pb.nothing_pending()  # the charger is not asked


@BOTH
def test_an_ended_transaction(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    local_id, tx_id = pb.start()
    pb.charger_sends("StopTransaction", {"transactionId": local_id, "meterStop": 5,
                                         "timestamp": "2024-05-01T11:00:00Z"})
    ended = pb.csms_receives("TransactionEvent")
    # while the Ended event waits for the CSMS's acceptance, it is in the queue (E14.FR.04)
    assert _ask(pb, {"transactionId": tx_id}) == {"ongoingIndicator": False, "messagesInQueue": True}
    assert _ask(pb, {}) == {"messagesInQueue": True}  # E14.FR.07
    pb.csms_answers(ended, {})
    assert _ask(pb, {"transactionId": tx_id}) == {"ongoingIndicator": False, "messagesInQueue": False}  # E14.FR.03


def test_unknown_and_foreign_transactions() -> None:
    foreign = TxRecord(identity="CP-2", local_id=1, tx_id="tx-of-cp2", connector_id=1, evse_id=1,
                       evse_connector_id=1, id_token="x", id_token_type="Local", meter_start=0,
                       started_at="2024-05-01T10:00:00.000Z", start_hash="h")
    pb = Playbook.translated(state=ChargerState(ChargerMeta("CP-1"), (foreign,)))
    for tx_id in ("nope", "tx-of-cp2"):  # E14.FR.01
        assert _ask(pb, {"transactionId": tx_id}) == {"ongoingIndicator": False, "messagesInQueue": False}
    assert _ask(pb, {}) == {"messagesInQueue": False}  # E14.FR.06/08: no ongoingIndicator


@BOTH
def test_cost_updated_is_acknowledged_and_traced(upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    uid = pb.csms_sends("CostUpdated", {"totalCost": 3.5, "transactionId": "t-1"})
    assert pb.csms_receives_result(uid) == {}
    pb.nothing_pending()
    assert "cost.updated" in pb.emitted_kinds()
