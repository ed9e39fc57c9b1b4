"""FirmwareStatusNotification and DiagnosticsStatusNotification from the charger (2.0.1 L01, N01; 1.6 §4.4, §4.5).

Why this exists: a TriggerMessage the bridge forwards can make a 1.6 charger send either, and a 2.0.1 CSMS
knows the second one only as LogStatusNotification. Both are answered to the charger only after the CSMS
answered, so a CSMS failure reaches the charger as a CALLERROR it can retry.

The 2.0.1 ``requestId`` (of the UpdateFirmware / GetLog the notification belongs to) is not added yet: the
bridge does not carry those requests down so far, and the field is optional in the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..lanes import Outcome
from . import from_charger

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# 1.6 DiagnosticsStatus -> 2.0.1 UploadLogStatusEnumType (mapping reference §3.6).
UPLOAD_STATUS: Final = {
    "Idle": "Idle",
    "Uploaded": "Uploaded",
    "Uploading": "Uploading",
    "UploadFailed": "UploadFailure",
}


def _notify(session: TranslatingSession, call: Call, action: str, request: dict[str, Any]) -> None:
    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_charger(call, {})
        else:
            session.relay_failure(call, outcome, to="charger")

    session.call_csms(action, request, answered)


@from_charger("FirmwareStatusNotification", note="every 1.6 status exists in 2.0.1; requestId not added yet")
def firmware_status_notification(session: TranslatingSession, call: Call) -> None:
    _notify(session, call, "FirmwareStatusNotification", {"status": call.payload["status"]})


@from_charger("DiagnosticsStatusNotification", becomes=("LogStatusNotification",),
              note="UploadFailed -> UploadFailure; requestId not added yet")
def diagnostics_status_notification(session: TranslatingSession, call: Call) -> None:
    _notify(session, call, "LogStatusNotification", {"status": UPLOAD_STATUS[call.payload["status"]]})
