"""ISO 15118 Plug & Charge through the 1.6 DataTransfer tunnel (OCA "Using ISO 15118 Plug & Charge with OCPP 1.6";
mapping reference §2.9) <-> native 2.0.1/2.1 messages.

Why this exists: a 1.6 PnC charger wraps 2.0.1 messages in DataTransfer (vendorId
``org.openchargealliance.iso15118pnc``, messageId = the 2.0.1 action, data = the 2.0.1 payload as JSON text,
the answer's data = the 2.0.1 response as JSON text). A 2.x CSMS knows only the native messages, so the bridge
unwraps what the charger sends (Authorize, GetCertificateStatus, SignCertificate, Get15118EVCertificate) and wraps
what the CSMS sends for V2G certificates (CertificateSigned, InstallCertificate, TriggerMessage, DeleteCertificate,
GetInstalledCertificateIds). Every payload crossing the tunnel is checked against the 2.0.1 schema first; a 2.1
CSMS's extra fields are left out (the tunnel speaks 2.0.1), and nothing invalid is ever passed on.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from .. import authcache, validate
from ..convert import id_tag_info
from ..lanes import Outcome
from ..rpc import Version
from .common import learn, remember, supports

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

VENDOR_ID: Final = "org.openchargealliance.iso15118pnc"
FROM_CHARGER: Final = ("Authorize", "GetCertificateStatus", "SignCertificate", "Get15118EVCertificate")
TO_CHARGER: Final = ("CertificateSigned", "InstallCertificate", "TriggerMessage", "DeleteCertificate",
                     "GetInstalledCertificateIds")
FEATURE: Final = "pnc"  # key in ChargerMeta.features


# --- 2.0.1 payloads -------------------------------------------------------------------------------------------


@functools.cache
def _schema(action: str, response: bool) -> dict[str, Any]:
    name = f"{action}{'Response' if response else 'Request'}.json"
    schema: dict[str, Any] = orjson.loads((importlib.resources.files("ocpp") / "v201" / "schemas" / name).read_bytes())
    return schema


def _keep(value: Any, schema: dict[str, Any], definitions: dict[str, Any]) -> Any:
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict) and schema.get("additionalProperties", True) is False:
        known = schema.get("properties", {})
        return {k: _keep(v, known[k], definitions) for k, v in value.items() if k in known}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_keep(v, schema["items"], definitions) for v in value]
    return value


def as_v201(action: str, payload: dict[str, Any], *, response: bool) -> dict[str, Any] | None:
    """``payload`` without the fields 2.0.1 does not have (2.1 additions), or ``None`` if it is still invalid."""
    schema = _schema(action, response)
    kept: dict[str, Any] = _keep(payload, schema, schema.get("definitions", {}))
    return kept if validate.check(Version.V201, action, kept, response=response) is None else None


def _parse(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, str):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _text(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload).decode()


# --- charger -> CSMS: unwrap ----------------------------------------------------------------------------------


def unwrap(session: TranslatingSession, call: Call) -> None:
    """A tunnelled 2.0.1 request from the charger, sent to the CSMS natively; its answer tunnelled back."""
    action = call.payload.get("messageId")
    if action not in FROM_CHARGER:
        session.reply_charger(call, {"status": "UnknownMessageId"})
        return
    remember(session, FEATURE, True)
    request = _parse(call.payload.get("data"))
    if request is None or validate.check(Version.V201, action, request, response=False) is not None \
            or validate.check(session.upstream, action, request, response=False) is not None:
        session.emit("pnc.invalid", side="charger", action=action)
        session.reply_charger(call, {"status": "Rejected"})
        return
    if action == "Authorize":
        token = request["idToken"]
        session.meta.remember_token_type(token["idToken"], token["type"])  # the charger said eMAID, keep it
        session.persist(session.meta)

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            session.relay_failure(call, outcome, to="charger")
            return
        response = as_v201(action, outcome.result, response=True)
        if response is None:  # e.g. a 2.1 OCSP result longer than 2.0.1 allows
            session.emit("pnc.invalid", side="csms", action=action)
            session.reply_charger(call, {"status": "Rejected"})
            return
        if action == "Authorize":  # the CSMS's decision, for the moments it cannot be asked (C07)
            authcache.remember(session, request["idToken"]["idToken"], id_tag_info(response["idTokenInfo"]))
            session.persist(session.meta)
        session.reply_charger(call, {"status": "Accepted", "data": _text(response)})

    session.call_csms(action, request, answered)


# --- CSMS -> charger: wrap ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tunnelled:
    """How a tunnelled call ended: the charger's 2.0.1 response, why there is none, or a failure to relay."""

    response: dict[str, Any] | None = None
    refusal: str = ""
    failure: Outcome | None = None


def tunnel(session: TranslatingSession, action: str, payload: dict[str, Any],
           then: Callable[[Tunnelled], None]) -> None:
    """Send the 2.x ``action`` to the charger through the tunnel."""
    request = as_v201(action, payload, response=False)
    if request is None:
        then(Tunnelled(refusal=f"{action} cannot be expressed in the 2.0.1 the tunnel carries"))
        return
    if supports(session, FEATURE) is False:
        then(Tunnelled(refusal="the charger does not implement the ISO 15118 tunnel"))
        return

    def answered(outcome: Outcome) -> None:
        if not outcome.ok:
            learn(session, FEATURE, outcome)
            then(Tunnelled(failure=outcome))
            return
        status = outcome.result["status"]
        if status == "UnknownVendorId":
            remember(session, FEATURE, False)
            then(Tunnelled(refusal="the charger does not implement the ISO 15118 tunnel"))
            return
        if status != "Accepted":
            then(Tunnelled(refusal=f"the charger answered {status} to the tunnelled {action}"))
            return
        remember(session, FEATURE, True)
        response = _parse(outcome.result.get("data"))
        if response is None or validate.check(Version.V201, action, response, response=True) is not None:
            session.emit("pnc.invalid", side="charger", action=action)
            then(Tunnelled(refusal=f"the charger's answer to the tunnelled {action} is not valid 2.0.1"))
            return
        then(Tunnelled(response=response))

    session.call_charger("DataTransfer", {"vendorId": VENDOR_ID, "messageId": action, "data": _text(request)},
                         answered)

