"""Property tests: whatever either peer sends, ``session.feed`` returns, and every frame the bridge writes is
well-formed JSON of the right shape, with error codes spelled for the peer's version.

The Playbook additionally validates every CALL and CALLRESULT the bridge writes against the official schemas,
so these properties also say "the bridge never sends a schema-invalid message", whatever it was fed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocpp_bridge.core import validate
from ocpp_bridge.core.events import SendToCharger, SendToCsms
from ocpp_bridge.core.rpc import MAX_DESCRIPTION_LENGTH, ErrorCode, Version, spell
from ocpp_bridge.core.state import ChargerMeta, ChargerState, TxRecord
from tests.playbook import Playbook

# FUZZ_EXAMPLES=5000 pytest tests/unit/test_fuzz_core.py for a longer run; no deadline: nothing here is timed
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

V16_CODES = {spell(code, Version.V16) for code in ErrorCode}
V2_CODES = {spell(code, Version.V201) for code in ErrorCode}

# --- strategies -----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
message_ids = st.text(min_size=1, max_size=36) | st.sampled_from(["1", "x", "-1"]) | json_scalars


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["2024-06-30T23:59:60Z", "0000-01-01T00:00:00Z", "2024-13-01T00:00:00Z",
                                     "9999-12-31T23:59:59-01:00", "garbage", "2024-01-01T10:00:00"]))
    moment = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
    offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60)))
    text = moment.replace(tzinfo=timezone(offset)).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


def _enum(action: str, *path: str) -> list[str]:
    schema = orjson.loads((validate._schema_root(Version.V16) / f"{action}.json").read_bytes())
    node: Any = schema["properties"]
    for name in path:
        node = node[name]
        node = node.get("properties", node.get("items", {}).get("properties", node))
    return list(node["enum"])


STATUSES = _enum("StatusNotification", "status")
ERRORS = _enum("StatusNotification", "errorCode")
REASONS = _enum("StopTransaction", "reason")
MV = ("meterValue", "sampledValue")
CONTEXTS, MEASURANDS, UNITS = (_enum("MeterValues", *MV, name) for name in ("context", "measurand", "unit"))

connectors = st.integers(0, 3) | st.integers(-(2**31), 2**63)
tx_ids = st.integers(-2, 5) | st.integers(-(2**31), 2**63)
id_tags = st.sampled_from(["04A1B2C3", "E004010012345678", "NLTNMC00122045K", "alice"]) | st.text(max_size=20)
sample_values = st.sampled_from(["0", "1500", "12.5", "-3", "1e999", "nan", "abc", "1" * 30, " 7 "]) | \
    st.text(max_size=10)


@st.composite
def sampled_values(draw: st.DrawFn) -> dict[str, Any]:
    sample: dict[str, Any] = {"value": draw(sample_values)}
    for name, choices in (("context", CONTEXTS), ("measurand", MEASURANDS), ("unit", UNITS),
                          ("format", ["Raw", "SignedData"])):
        if draw(st.booleans()):
            sample[name] = draw(st.sampled_from(choices))
    return sample


meter_value_lists = st.lists(st.fixed_dictionaries({"timestamp": timestamps(),
                                                    "sampledValue": st.lists(sampled_values(), min_size=1,
                                                                             max_size=3)}),
                             min_size=1, max_size=3)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


charger_calls = st.one_of(
    st.tuples(st.just("BootNotification"), st.fixed_dictionaries(
        {"chargePointVendor": st.text(max_size=20), "chargePointModel": st.text(max_size=20)},
        optional={"chargePointSerialNumber": st.text(max_size=25), "chargeBoxSerialNumber": st.text(max_size=25),
                  "firmwareVersion": st.text(max_size=50), "iccid": st.text(max_size=20)})),
    st.tuples(st.just("Heartbeat"), st.just({})),
    st.tuples(st.just("Authorize"), st.fixed_dictionaries({"idTag": id_tags})),
    st.tuples(st.just("StartTransaction"), st.fixed_dictionaries(
        {"connectorId": connectors, "idTag": id_tags, "meterStart": st.integers(-(2**31), 2**63),
         "timestamp": timestamps()}, optional={"reservationId": st.integers(-5, 2**31)})),
    st.tuples(st.just("MeterValues"), st.fixed_dictionaries(
        {"connectorId": connectors, "meterValue": meter_value_lists}, optional={"transactionId": tx_ids})),
    st.tuples(st.just("StopTransaction"), st.fixed_dictionaries(
        {"transactionId": tx_ids, "meterStop": st.integers(-(2**31), 2**63), "timestamp": timestamps()},
        optional={"reason": st.sampled_from(REASONS), "idTag": id_tags, "transactionData": meter_value_lists})),
    st.tuples(st.just("StatusNotification"), st.fixed_dictionaries(
        {"connectorId": connectors, "errorCode": st.sampled_from(ERRORS), "status": st.sampled_from(STATUSES)},
        optional={"timestamp": timestamps(), "info": st.text(max_size=50),
                  "vendorErrorCode": st.text(max_size=50)})),
    st.tuples(st.just("DataTransfer"), st.fixed_dictionaries(
        {"vendorId": st.text(max_size=255)}, optional={"messageId": st.text(max_size=50), "data": st.text()})),
    st.tuples(st.sampled_from(sorted(validate.actions(Version.V16))), json_objects),
    st.tuples(st.text(max_size=20), json_objects),
)

auth_statuses = st.sampled_from(["Accepted", "Blocked", "ConcurrentTx", "Expired", "Invalid", "NoCredit",
                                 "NotAllowedTypeEVSE", "NotAtThisLocation", "NotAtThisTime", "Unknown", "Nope"])
csms_results = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"idTokenInfo": st.fixed_dictionaries(
        {"status": auth_statuses}, optional={"cacheExpiryDateTime": timestamps(),
                                             "groupIdToken": st.fixed_dictionaries(
                                                 {"idToken": st.text(max_size=36), "type": st.just("Central")})})}),
    st.fixed_dictionaries({"currentTime": timestamps()}),
    st.fixed_dictionaries({"status": st.sampled_from(["Accepted", "Pending", "Rejected", "Nope"]),
                           "currentTime": timestamps(),
                           "interval": st.integers(-1, 2**31) | st.integers(0, 10**6).map(float) | st.floats()}),
    st.fixed_dictionaries({"status": st.sampled_from(["Accepted", "Rejected", "UnknownVendorId"])},
                          optional={"data": json_values}),
    json_objects,
)
csms_calls = st.one_of(
    st.tuples(st.just("DataTransfer"), st.fixed_dictionaries({"vendorId": st.text(max_size=20)},
                                                             optional={"messageId": st.text(max_size=50),
                                                                       "data": json_values})),
    st.tuples(st.sampled_from(sorted(validate.actions(Version.V201))), json_objects),
)
charger_results = st.one_of(st.just({}), st.fixed_dictionaries(
    {"status": st.sampled_from(["Accepted", "Rejected", "UnknownVendorId", "Nope"])},
    optional={"data": st.text() | json_values}), json_objects)

raw_frames = st.one_of(
    st.text(),
    st.binary(),
    st.builds(json.dumps, json_values),
    st.builds(lambda t, i, rest: json.dumps([t, i, *rest]),  # stdlib json: any integer size
              st.sampled_from([2, 3, 4, 5, 6, 7, -1, 2.0, "2", True]) | st.integers(),
              message_ids, st.lists(json_values, max_size=4)),
)

# step kinds: the charger calls / answers / sends garbage, the CSMS calls / answers / fails / sends garbage, time
steps = st.one_of(
    st.tuples(st.just("charger_call"), charger_calls),
    st.tuples(st.just("charger_raw"), raw_frames),
    st.tuples(st.just("charger_answer"), charger_results),
    st.tuples(st.just("charger_fail"), st.sampled_from(["FormationViolation", "NotImplemented", "Bogus"])),
    st.tuples(st.just("csms_call"), csms_calls),
    st.tuples(st.just("csms_raw"), raw_frames),
    st.tuples(st.just("csms_answer"), csms_results),
    st.tuples(st.just("csms_fail"), st.sampled_from(["FormatViolation", "InternalError", "RpcFrameworkError"])),
    st.tuples(st.just("time"), st.floats(0, 30)),
)

# --- checks ---------------------------------------------------------------------------------------------


def _check_frame(text: str, version: Version) -> list[Any]:
    frame = orjson.loads(text)
    assert isinstance(frame, list), text
    assert frame, text
    type_id = frame[0]
    assert isinstance(frame[1], str), text
    assert 1 <= len(frame[1]) <= 36, text
    if type_id == 2:
        assert len(frame) == 4, text
        assert isinstance(frame[2], str), text
        assert isinstance(frame[3], dict), text
    elif type_id == 3:
        assert len(frame) == 3, text
        assert isinstance(frame[2], dict), text
    elif type_id in (4, 5):
        assert type_id == 4 or version is Version.V21, text  # CALLRESULTERROR only exists in 2.1
        assert len(frame) == 5, text
        assert frame[2] in (V16_CODES if version is Version.V16 else V2_CODES), text
        assert isinstance(frame[3], str), text
        assert len(frame[3]) <= MAX_DESCRIPTION_LENGTH, text
        assert isinstance(frame[4], dict), text
    else:
        raise AssertionError(f"the bridge sent message type {type_id!r}: {text}")
    return frame


def _check_output(pb: Playbook, start: int) -> None:
    for command in pb.commands[start:]:
        if isinstance(command, SendToCharger):
            _check_frame(command.text, Version.V16)
        elif isinstance(command, SendToCsms):
            _check_frame(command.text, pb.session.upstream)


def _check_transaction_events(pb: Playbook) -> None:
    """Per transaction: seqNos without gaps from where it started, one Started and one Ended at most (a retry
    resends the same event, same seqNo), and nothing after the Ended."""
    events: dict[str, dict[int, dict[str, Any]]] = {}
    for command in pb.commands:
        if isinstance(command, SendToCsms):
            frame = orjson.loads(command.text)
            if frame[0] == 2 and frame[2] == "TransactionEvent":
                event = frame[3]
                seen = events.setdefault(event["transactionInfo"]["transactionId"], {})
                assert seen.get(event["seqNo"], event) == event, "one seqNo, two different events"
                seen[event["seqNo"]] = event
    for tx_id, by_seq in events.items():
        first = 2 if tx_id == "tx-3" else 0  # the restored transaction continues at its stored seqNo
        assert sorted(by_seq) == list(range(first, first + len(by_seq))), (tx_id, sorted(by_seq))
        kinds = [by_seq[n]["eventType"] for n in sorted(by_seq)]
        assert kinds.count("Started") <= 1
        assert kinds.count("Ended") <= 1
        assert "Ended" not in kinds[:-1], kinds
        if "Started" in kinds:
            assert kinds[0] == "Started", kinds


def _open_tx(identity: str = "CP-1") -> TxRecord:
    return TxRecord(identity=identity, local_id=3, tx_id="tx-3", connector_id=1, evse_id=1, evse_connector_id=1,
                    id_token="04A1B2C3", id_token_type="ISO14443", meter_start=0,
                    started_at="2024-05-01T10:00:00.000Z", start_hash="h", seq_no=2)


def _session(upstream: Version) -> Playbook:
    state = ChargerState(ChargerMeta("CP-1", next_local_id=4), (_open_tx(), _open_tx("CP-OTHER")))
    return Playbook.translated(upstream, state=state)


def _run(pb: Playbook, kind: str, arg: Any) -> None:
    start = len(pb.commands)
    calls_to_csms = [f for f in pb.to_csms if f.type_id == 2]
    calls_to_charger = [f for f in pb.to_charger if f.type_id == 2]
    if kind == "charger_call":
        pb.charger_sends_raw(orjson.dumps([2, f"cp-{start}", arg[0], arg[1]]))
    elif kind == "charger_raw":
        pb.charger_sends_raw(arg)
    elif kind == "csms_call":
        pb.csms_sends_raw(orjson.dumps([2, f"csms-{start}", arg[0], arg[1]]))
    elif kind == "csms_raw":
        pb.csms_sends_raw(arg)
    elif kind == "csms_answer" and calls_to_csms:
        pb.to_csms.remove(calls_to_csms[0])
        pb.csms_answers(calls_to_csms[0], arg)
    elif kind == "csms_fail" and calls_to_csms:
        pb.to_csms.remove(calls_to_csms[0])
        pb.csms_fails(calls_to_csms[0], arg)
    elif kind == "charger_answer" and calls_to_charger:
        pb.to_charger.remove(calls_to_charger[0])
        pb.charger_answers(calls_to_charger[0], arg)
    elif kind == "charger_fail" and calls_to_charger:
        pb.to_charger.remove(calls_to_charger[0])
        pb.charger_fails(calls_to_charger[0], arg)
    elif kind == "time":
        pb.advance(arg)
    _check_output(pb, start)


# --- properties ------------------------------------------------------------------------------------------


@FUZZ
@given(text=st.text() | st.binary())
def test_arbitrary_text_or_bytes_from_the_charger(text: str | bytes) -> None:
    pb = Playbook.translated()
    pb.charger_sends_raw(text)
    _check_output(pb, 0)
    assert not pb.to_csms or all(f.type_id == 2 for f in pb.to_csms)


@FUZZ
@given(text=st.text() | st.binary(), upstream=st.sampled_from([Version.V201, Version.V21]))
def test_arbitrary_text_or_bytes_from_the_csms(text: str | bytes, upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    pb.csms_sends_raw(text)
    _check_output(pb, 0)


@FUZZ
@given(frame=raw_frames, upstream=st.sampled_from(list(Version)[1:]))
def test_arbitrary_json_frames_from_both_sides(frame: bytes | str, upstream: Version) -> None:
    pb = Playbook.translated(upstream)
    pb.charger_sends_raw(frame)
    pb.csms_sends_raw(frame)
    _check_output(pb, 0)


@FUZZ
@given(call=charger_calls, upstream=st.sampled_from([Version.V201, Version.V21]))
def test_any_charger_call_gets_exactly_one_answer_or_goes_upstream(call: tuple[str, dict[str, Any]],
                                                                   upstream: Version) -> None:
    pb = _session(upstream)
    pb.charger_sends_raw(orjson.dumps([2, "fz-1", call[0], call[1]]))
    _check_output(pb, 0)
    answers = [f for f in pb.to_charger if f.type_id in (3, 4)]
    if answers:
        assert [f.unique_id for f in answers] == ["fz-1"]
    else:
        assert pb.to_csms, "a charger CALL was neither answered nor forwarded"
        for _ in range(3):  # at worst the CSMS answers nothing (a call can need two events upstream)
            pb.advance(21)
        _check_output(pb, 0)
        answers = [f for f in pb.to_charger if f.type_id in (3, 4) and f.unique_id == "fz-1"]
        assert len(answers) == 1


@settings(max_examples=2 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(steps, max_size=25), upstream=st.sampled_from([Version.V201, Version.V21]))
def test_conversations_never_raise_and_only_write_well_formed_frames(plan: list[tuple[str, Any]],
                                                                     upstream: Version) -> None:
    pb = _session(upstream)
    for kind, arg in plan:
        _run(pb, kind, arg)
    pb.advance(60)  # let every outstanding call time out
    pb.advance(60)
    _check_output(pb, 0)
    assert all(getattr(r, "identity", "CP-1") == "CP-1" for r in pb.persisted)
    _check_transaction_events(pb)
    # the bridge's own output was never invalid, except for answers no 1.6 message can carry (test_session_errors)
    bugs = [e.fields for e in pb.emitted if e.kind == "bug" and "cannot serialize an answer" not in str(e.fields)]
    assert not bugs, bugs
