"""DataTransfer in both directions (2.0.1 P01/P02; 1.6 §4.3, §5.6).

Why this exists: the message is the same in both versions except ``data``: a string in 1.6, any JSON value in
2.0.1. A non-string value going down to a 1.6 charger is carried as its JSON text. The ISO 15118 Plug & Charge
messages a 1.6 charger tunnels through DataTransfer are unwrapped into native 2.x messages by :mod:`.pnc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..lanes import Outcome
from . import from_charger, from_csms, pnc

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _copy(payload: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: payload[name] for name in names if name in payload}


@from_charger("DataTransfer", becomes=("DataTransfer", *pnc.FROM_CHARGER),
              note=f"data string passed through unchanged; vendorId {pnc.VENDOR_ID}: the tunnelled 2.0.1 "
                   f"{', '.join(pnc.FROM_CHARGER)} sent natively (see the Plug & Charge table)")
def data_transfer_up(session: TranslatingSession, call: Call) -> None:
    if call.payload["vendorId"].lower() == pnc.VENDOR_ID:  # CiString: case-insensitive (1.6 §7)
        pnc.unwrap(session, call)
        return

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        reply = _copy(outcome.result, ("status",))
        if "data" in outcome.result:
            reply["data"] = _as_text(outcome.result["data"])
        session.reply_charger(call, reply)

    session.call_csms("DataTransfer", _copy(call.payload, ("vendorId", "messageId", "data")), answered)


@from_csms("DataTransfer", note="a non-string data value is sent to the charger as its JSON text")
def data_transfer_down(session: TranslatingSession, call: Call) -> None:
    request = _copy(call.payload, ("vendorId", "messageId"))
    if "data" in call.payload:
        request["data"] = _as_text(call.payload["data"])

    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_csms(call, _copy(outcome.result, ("status", "data")))
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger("DataTransfer", request, answered)
