"""The local authorization list: SendLocalList and GetLocalListVersion (2.0.1 D01, D02; 1.6 §5.10, §5.15).

Why this exists: the messages match field for field except the names (versionNumber/listVersion, idToken/idTag,
idTokenInfo/idTagInfo), the token shape (a 2.x IdTokenType, up to 36 or 255 characters, vs a 20-character 1.6
idTag) and two statuses: 1.6 answers NotSupported where 2.x only knows Failed, and -1 where 2.x says 0 (no list).
A list with a token 1.6 cannot hold is refused as a whole (Failed): sending the rest would leave the charger's
list and version disagreeing with what the CSMS believes it sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..convert import MAX_V16_ID_TAG, id_tag_info
from ..lanes import Outcome
from . import from_csms
from .common import UNSUPPORTED, status_answer

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession


def _entry(item: dict[str, Any]) -> dict[str, Any] | None:
    """A 2.x AuthorizationData as 1.6 AuthorizationData, or ``None`` when its token does not fit in an idTag."""
    token = item["idToken"]["idToken"]
    if not token or len(token) > MAX_V16_ID_TAG:
        return None
    entry: dict[str, Any] = {"idTag": token}
    if "idTokenInfo" in item:  # absent = remove the token in a Differential update (D01.FR.17, 1.6 §7.1)
        entry["idTagInfo"] = id_tag_info(item["idTokenInfo"])
    return entry


@from_csms("SendLocalList", note="versionNumber -> listVersion, idToken -> idTag, idTokenInfo -> idTagInfo; a token "
           "longer than 20 characters: Failed (nothing sent); 1.6 NotSupported -> Failed with statusInfo")
def send_local_list(session: TranslatingSession, call: Call) -> None:
    payload = call.payload
    items = payload.get("localAuthorizationList", [])
    entries = [_entry(item) for item in items]
    if any(entry is None for entry in entries):
        session.reply_csms(call, status_answer("Failed", "InvalidIdToken",
                                               f"the list has tokens 1.6 cannot hold (1..{MAX_V16_ID_TAG} characters)"))
        return
    request: dict[str, Any] = {"listVersion": payload["versionNumber"], "updateType": payload["updateType"]}
    if entries:  # D01.FR.04/05: a Full update without a list empties it, a Differential one changes nothing
        request["localAuthorizationList"] = entries
    for item in items:  # later Authorize/StartTransaction with these tokens use the type the CSMS gave them
        session.meta.remember_token_type(item["idToken"]["idToken"], item["idToken"]["type"])
    if items:
        session.persist(session.meta)

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="csms")
        elif outcome.result["status"] == "NotSupported":
            session.reply_csms(call, status_answer("Failed", UNSUPPORTED, "the charger has no local list"))
        else:
            session.reply_csms(call, status_answer(outcome.result["status"]))

    session.call_charger("SendLocalList", request, answered)


@from_csms("GetLocalListVersion", note="listVersion -> versionNumber; -1 (no local list support) -> 0 (D02.FR.03)")
def get_local_list_version(session: TranslatingSession, call: Call) -> None:
    def answered(outcome: Outcome) -> None:
        if outcome.ok:
            session.reply_csms(call, {"versionNumber": max(outcome.result["listVersion"], 0)})
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger("GetLocalListVersion", {}, answered)
