"""Certificate management from the CSMS (2.0.1 A02/A03, M03-M05; 1.6 security whitepaper §5; PnC tunnel §2.9).

Why this exists: 2.0.1 manages the station certificates and the ISO 15118 (V2G) ones with the same messages; a 1.6
charger keeps the former behind the whitepaper's messages (whose root type is called CentralSystemRootCertificate)
and the latter behind the PnC DataTransfer tunnel. The bridge sends each request where its certificate type lives,
asks both places when the type is not in the request (DeleteCertificate) or several types are asked for
(GetInstalledCertificateIds, merged into one certificateHashDataChain), and refuses what neither can hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..lanes import Outcome
from . import from_csms
from .common import UNSUPPORTED, call_optional, status_answer, unsupported
from .pnc import Tunnelled, tunnel

if TYPE_CHECKING:
    from ..rpc import Call
    from ..session import TranslatingSession

# 2.x certificate types a 1.6 whitepaper charger keeps -> the 1.6 CertificateUseEnumType.
NATIVE_TYPES: Final = {"CSMSRootCertificate": "CentralSystemRootCertificate",
                       "ManufacturerRootCertificate": "ManufacturerRootCertificate"}
V2G_TYPES: Final = ("V2GRootCertificate", "MORootCertificate", "V2GCertificateChain")  # through the tunnel


def _native(session: TranslatingSession, call: Call, action: str, request: dict[str, Any], negative: str) -> None:
    """The whitepaper message; a charger without it (CALLERROR NotImplemented/NotSupported) -> ``negative``."""
    call_optional(session, call, action, request, negative=negative, answer=lambda r: status_answer(r["status"]),
                  missing=f"the charger does not implement {action}")


def _tunnelled(session: TranslatingSession, call: Call, payload: dict[str, Any], negative: str) -> None:
    def done(result: Tunnelled) -> None:
        if result.failure is not None and not unsupported(result.failure):
            session.relay_failure(call, result.failure, to="csms")
        elif result.response is None:
            session.reply_csms(call, status_answer(negative, UNSUPPORTED, result.refusal or "no ISO 15118 tunnel"))
        else:
            session.reply_csms(call, status_answer(result.response["status"]))

    tunnel(session, call.action, payload, done)


@from_csms("CertificateSigned", becomes=("CertificateSigned", "DataTransfer"),
           note="ChargingStationCertificate (or no type) -> the whitepaper's CertificateSigned; V2GCertificate -> "
                "the PnC tunnel; 2.1 V2G20Certificate, or a charger with neither: Rejected")
def certificate_signed(session: TranslatingSession, call: Call) -> None:
    kind = call.payload.get("certificateType", "ChargingStationCertificate")
    if kind == "V2GCertificate":
        _tunnelled(session, call, call.payload, "Rejected")
    elif kind == "ChargingStationCertificate":  # 2.1 requestId has no 1.6 field (A02: the charger has one CSR)
        _native(session, call, "CertificateSigned", {"certificateChain": call.payload["certificateChain"]},
                "Rejected")
    else:
        session.reply_csms(call, status_answer("Rejected", UNSUPPORTED, f"1.6 has no {kind}"))


@from_csms("InstallCertificate", becomes=("InstallCertificate", "DataTransfer"),
           note="CSMSRootCertificate -> CentralSystemRootCertificate, ManufacturerRootCertificate as is; V2G/MO "
                "roots -> the PnC tunnel; 2.1 OEMRootCertificate or a certificate longer than 1.6 allows: Rejected")
def install_certificate(session: TranslatingSession, call: Call) -> None:
    kind = call.payload["certificateType"]
    if kind in NATIVE_TYPES:
        request = {"certificateType": NATIVE_TYPES[kind], "certificate": call.payload["certificate"]}
        _native(session, call, "InstallCertificate", request, "Rejected")
    elif kind in V2G_TYPES:
        _tunnelled(session, call, call.payload, "Rejected")
    else:
        session.reply_csms(call, status_answer("Rejected", UNSUPPORTED, f"1.6 has no {kind}"))


@from_csms("DeleteCertificate", becomes=("DeleteCertificate", "DataTransfer"),
           note="the whitepaper's DeleteCertificate; NotFound there (the hash names no type) -> asked again "
                "through the PnC tunnel, where V2G certificates live")
def delete_certificate(session: TranslatingSession, call: Call) -> None:
    def tunnelled(result: Tunnelled) -> None:
        if result.failure is not None and not unsupported(result.failure):
            session.relay_failure(call, result.failure, to="csms")
        elif result.response is not None:
            session.reply_csms(call, status_answer(result.response["status"]))
        else:
            session.reply_csms(call, status_answer("NotFound"))  # M04.FR.04: in neither place

    def answered(outcome: Outcome) -> None:
        if outcome.ok and outcome.result["status"] != "NotFound":
            session.reply_csms(call, status_answer(outcome.result["status"]))  # M04.FR.02/03
        elif outcome.ok or unsupported(outcome):
            tunnel(session, "DeleteCertificate", call.payload, tunnelled)
        else:
            session.relay_failure(call, outcome, to="csms")

    session.call_charger("DeleteCertificate", {"certificateHashData": call.payload["certificateHashData"]}, answered)


# --- GetInstalledCertificateIds (M03): one 1.6 call per type, V2G types through the tunnel ------------------------


class _Inventory:
    """Collects the certificates of one GetInstalledCertificateIds from several calls, in order."""

    def __init__(self, session: TranslatingSession, call: Call, kinds: list[str]) -> None:
        self.session, self.call = session, call
        self.chain: list[dict[str, Any]] = []
        self.steps: list[Callable[[], None]] = [self._native_step(k) for k in kinds if k in NATIVE_TYPES]
        v2g = [k for k in kinds if k in V2G_TYPES]
        if v2g:
            self.steps.append(lambda: tunnel(session, "GetInstalledCertificateIds", {"certificateType": v2g},
                                             self._tunnelled))

    def next(self) -> None:
        if self.steps:
            self.steps.pop(0)()
            return
        status = "Accepted" if self.chain else "NotFound"  # M03.FR.02/03
        self.session.reply_csms(self.call, {"status": status} | ({"certificateHashDataChain": self.chain}
                                                                  if self.chain else {}))

    def _failed(self, outcome: Outcome) -> bool:
        """A failure other than "not implemented" ends the request: the CSMS hears it and can ask again."""
        if outcome.ok or unsupported(outcome):
            return False
        self.session.relay_failure(self.call, outcome, to="csms")
        return True

    def _native_step(self, kind: str) -> Callable[[], None]:
        def answered(outcome: Outcome) -> None:
            if self._failed(outcome):
                return
            if outcome.ok:
                for hashed in outcome.result.get("certificateHashData", []):
                    self.chain.append({"certificateType": kind, "certificateHashData": hashed})
            self.next()

        return lambda: self.session.call_charger("GetInstalledCertificateIds",
                                                 {"certificateType": NATIVE_TYPES[kind]}, answered)

    def _tunnelled(self, result: Tunnelled) -> None:
        if result.failure is not None and self._failed(result.failure):
            return
        if result.response is not None:
            self.chain.extend(result.response.get("certificateHashDataChain", []))
        self.next()


ALL_TYPES: Final = (*NATIVE_TYPES, *V2G_TYPES)


@from_csms("GetInstalledCertificateIds", becomes=("GetInstalledCertificateIds", "DataTransfer"),
           note="one whitepaper call per requested CSMS/Manufacturer root type, one tunnel call for the V2G types "
                "(all when none is named), merged into certificateHashDataChain; Accepted if any, else NotFound")
def get_installed_certificate_ids(session: TranslatingSession, call: Call) -> None:
    kinds = list(dict.fromkeys(call.payload.get("certificateType", ALL_TYPES)))  # 2.1 OEMRootCertificate: none
    _Inventory(session, call, kinds).next()
