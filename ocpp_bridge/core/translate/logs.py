"""Log uploads: GetLog down, upload status up (2.0.1 N01; 1.6 §4.4, §5.9; security whitepaper N01).

Why this exists: a 2.0.1 CSMS asks for logs with GetLog. A 1.6 charger uploads diagnostics with the core
GetDiagnostics (an absent fileName means there is nothing to upload: Rejected, N01.FR.05), and may also implement
the whitepaper's GetLog, which is identical to 2.0.1's and is the only way to get the security log. The bridge
uses GetLog for the security log, and for diagnostics only once the charger showed it implements it (a charger
that never heard of GetLog would answer NotImplemented). Every LogStatusNotification then carries the requestId
of that GetLog (N01.FR.07), which the bridge remembers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..lanes import Outcome
from . import from_charger, from_csms
from .common import UNSUPPORTED, call_optional, notify, remember, status_answer, supports, unfit

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

GET_LOG: Final = "GetLog"  # the whitepaper message, also the key in ChargerMeta.features

# 1.6 DiagnosticsStatus -> 2.0.1 UploadLogStatusEnumType (mapping reference §3.6).
UPLOAD_STATUS: Final = {
    "Idle": "Idle",
    "Uploaded": "Uploaded",
    "Uploading": "Uploading",
    "UploadFailed": "UploadFailure",
}
_OPTIONAL: Final = ("retries", "retryInterval")


def _started(session: TranslatingSession, request_id: int, via: str) -> None:
    session.meta.log_request_id = request_id
    session.meta.log_via = via
    session.persist(session.meta)


def _get_log(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    request = {"log": {k: v for k, v in payload["log"].items() if k != "customData"},
               "logType": payload["logType"], "requestId": payload["requestId"]}
    request.update({k: payload[k] for k in _OPTIONAL if k in payload})

    def answer(result: dict[str, Any]) -> dict[str, Any]:
        if result["status"] in ("Accepted", "AcceptedCanceled"):
            _started(session, payload["requestId"], GET_LOG)
        return status_answer(result["status"]) | ({"filename": result["filename"]} if "filename" in result else {})

    # e.g. a 2.1 remoteLocation longer than 512 characters is refused before sending
    call_optional(session, call, GET_LOG, request, negative="Rejected", feature=GET_LOG, answer=answer,
                  missing="the charger does not implement GetLog")


def _get_diagnostics(session: TranslatingSession, call: Call) -> None:
    payload, log = call.payload, call.payload["log"]
    request: dict[str, Any] = {"location": log["remoteLocation"]}
    for ours, theirs in (("startTime", "oldestTimestamp"), ("stopTime", "latestTimestamp")):
        if theirs in log:
            request[ours] = log[theirs]
    request.update({k: payload[k] for k in _OPTIONAL if k in payload})
    why = unfit("GetDiagnostics", request)  # 1.6 wants a URI
    if why is not None:
        session.reply_csms(call, status_answer("Rejected", "InvalidValue", why))
        return

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
        elif "fileName" in outcome.result:  # N01.FR.01
            _started(session, payload["requestId"], "GetDiagnostics")
            session.reply_csms(call, {"status": "Accepted", "filename": outcome.result["fileName"]})
        else:  # N01.FR.05: no diagnostics available
            session.reply_csms(call, status_answer("Rejected", "NoLogs", "the charger has no diagnostics to upload"))

    session.call_charger("GetDiagnostics", request, answered)


@from_csms("GetLog", becomes=("GetLog", "GetDiagnostics"),
           note="SecurityLog, or DiagnosticsLog on a charger known to implement it -> the whitepaper's GetLog "
                "(identical); DiagnosticsLog otherwise -> GetDiagnostics (no fileName: Rejected, N01.FR.05); "
                "2.1 DataCollectorLog: Rejected; requestId remembered for LogStatusNotification")
def get_log(session: TranslatingSession, call: Call) -> None:
    kind = call.payload["logType"]
    if kind == "SecurityLog" or (kind == "DiagnosticsLog" and supports(session, GET_LOG)):
        _get_log(session, call)
    elif kind == "DiagnosticsLog":
        _get_diagnostics(session, call)
    else:
        session.reply_csms(call, status_answer("Rejected", UNSUPPORTED, f"1.6 has no {kind}"))


def _status_request(session: TranslatingSession, status: str, own_id: int | None, via: str) -> dict[str, Any]:
    """The charger's own requestId, else the remembered one unless Idle (N01.FR.13: Idle = triggered while
    nothing is being uploaded)."""
    request: dict[str, Any] = {"status": status}
    meta = session.meta
    if own_id is not None:
        request["requestId"] = own_id
    elif status != "Idle" and meta.log_via == via and meta.log_request_id is not None:
        request["requestId"] = meta.log_request_id
    return request


@from_charger("DiagnosticsStatusNotification", becomes=("LogStatusNotification",),
              note="UploadFailed -> UploadFailure; requestId of the GetLog the bridge carried as GetDiagnostics; "
                   "queued durably and acknowledged once stored")
def diagnostics_status_notification(session: TranslatingSession, call: Call) -> None:
    request = _status_request(session, UPLOAD_STATUS[call.payload["status"]], None, "GetDiagnostics")
    notify(session, call, "LogStatusNotification", request)


@from_charger("LogStatusNotification", note="identical (the 1.6 enum is a subset); the charger's requestId, else "
              "the one the bridge remembered (N01.FR.07)")
def log_status_notification(session: TranslatingSession, call: Call) -> None:
    remember(session, GET_LOG, True)
    request = _status_request(session, call.payload["status"], call.payload.get("requestId"), GET_LOG)
    notify(session, call, "LogStatusNotification", request)
