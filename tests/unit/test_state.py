"""Record snapshots: equal to the live record, and independent of it where the live record changes in place."""

from __future__ import annotations

import dataclasses

from ocpp_bridge.core.state import ChargerMeta, QueuedMessage, TxRecord


def test_a_charger_record_snapshot_shares_no_container_with_the_live_record() -> None:
    meta = ChargerMeta("CP-1", next_queue_seq=9, auth_cache={"T": {"info": {"status": "Accepted"}, "expires": None}},
                       token_types={"T": "ISO14443"}, remote_starts=[{"id": 1}], connector_status={"1": "Charging"},
                       connector_errors={"1": "GroundFailure"}, features={"SignCertificate": True},
                       charging_profiles=[{"evseId": 1, "profile": {"id": 3, "chargingSchedule": [{"id": 1}]}}],
                       reservations=[{"id": 2}], station={"vendor": "V"}, config_keys={"K": {"value": "1"}})
    copy = meta.snapshot()
    assert copy == meta and type(copy) is ChargerMeta
    for field in dataclasses.fields(ChargerMeta):
        value = getattr(meta, field.name)
        if isinstance(value, dict | list):
            assert getattr(copy, field.name) is not value, field.name
    meta.auth_cache["T"]["info"]["status"] = "Blocked"
    meta.charging_profiles[0]["profile"]["chargingSchedule"].append({"id": 2})
    meta.token_types["U"] = "Central"
    meta.next_queue_seq += 1
    assert copy.auth_cache["T"]["info"]["status"] == "Accepted"
    assert copy.charging_profiles[0]["profile"]["chargingSchedule"] == [{"id": 1}]
    assert copy.token_types == {"T": "ISO14443"} and copy.next_queue_seq == 9
    empty = ChargerMeta("CP-2")
    assert empty.snapshot() == empty and empty.snapshot().auth_cache is not empty.auth_cache


def test_transaction_and_queue_snapshots_are_equal_copies() -> None:
    tx = TxRecord(identity="CP-1", local_id=1, tx_id="t", connector_id=1, evse_id=1, evse_connector_id=1,
                  id_token="T", id_token_type="ISO14443", meter_start=0, started_at="2024-01-01T00:00:00Z",
                  start_hash="h", last_answer={"idTagInfo": {"status": "Accepted"}})
    queued = QueuedMessage("CP-1", 3, "TransactionEvent", {"seqNo": 1}, 5.0, local_id=1)
    for record in (tx, queued):
        copy = record.snapshot()
        assert copy == record and copy is not record and type(copy) is type(record)
    copy = tx.snapshot()
    tx.seq_no += 1
    assert copy.seq_no == 0
