"""Authorize: a 1.6 idTag checked by the CSMS as a 2.0.1 IdToken (2.0.1 C01; 1.6 §4.1).

Why this exists: the token needs a 2.0.1 type the 1.6 charger never states, and the answer needs folding back
into the five 1.6 statuses. The decision is always the CSMS's: a failure upstream is a CALLERROR to the
charger, never a made-up status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import authcache
from ..convert import id_tag_info, id_token
from ..lanes import Outcome
from . import from_charger

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession


@from_charger("Authorize", note="idToken type from the token's format (configurable) or the type the CSMS gave "
              "it; 2.0.1 statuses 1.6 lacks become Invalid; while the CSMS is unreachable: its own earlier decision "
              "about the token, else the unknown-token policy (default: not accepted)")
def authorize(session: TranslatingSession, call: Call) -> None:
    id_tag = call.payload["idTag"]

    def answered(outcome: Outcome) -> None:
        if not outcome.ok and session.offline:
            session.reply_charger(call, {"idTagInfo": authcache.offline_answer(session, id_tag)})
            return
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        info = id_tag_info(outcome.result["idTokenInfo"])
        authcache.remember(session, id_tag, info)
        session.persist(session.meta)
        session.reply_charger(call, {"idTagInfo": info})

    session.call_csms("Authorize", {"idToken": id_token(session, id_tag)}, answered)
