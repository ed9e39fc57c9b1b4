"""The coverage matrix: every OCPP 1.6 action and every 2.0.1 / 2.1 action, and what the bridge does with it.

Why this exists: issue 3 item 6. The matrix is generated from the registry the session dispatches on
(``core.translate.CHARGER_ROUTES`` / ``CSMS_ROUTES``, with each route's handling, the messages it becomes and its
note) and from the official schema lists, so it cannot drift from the code: ``python -m ocpp_bridge.coverage``
rewrites docs/coverage.md, and tests/unit/test_coverage.py fails when the file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from .core import validate
from .core.rpc import Version
from .core.translate import CHARGER_ROUTES, CSMS_ROUTES, Handling, Route, pnc, reports, reservation

DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "coverage.md"

# 1.6 actions a charge point sends (1.6 §4, security whitepaper §4); every other 1.6 action is the central system's.
V16_FROM_CHARGER: Final = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification", "StopTransaction",
    "LogStatusNotification", "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification",
})
# 2.0.1 / 2.1 actions a charging station sends (DataTransfer goes both ways); the rest are the CSMS's.
V2_FROM_STATION: Final = frozenset({
    "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
    "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
    "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
    "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
    "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    # 2.1
    "BatterySwap", "ClosePeriodicEventStream", "GetCertificateChainStatus", "NotifyDERAlarm", "NotifyDERStartStop",
    "NotifyPeriodicEventStream", "NotifyPriorityCharging", "NotifySettlement", "OpenPeriodicEventStream",
    "PullDynamicScheduleUpdate", "ReportDERControl", "VatNumberValidation",
})
# CSMS actions without a route yet: the session answers CALLERROR NotSupported until they are built.
PENDING: Final[dict[str, str]] = {}
# Messages the bridge sends the CSMS on its own (timers, not a 1.6 message).
SYNTHESIZED: Final = {**reservation.SYNTHESIZES, **reports.SYNTHESIZES}

_LEGEND: Final = """\
How to read it: **translated** = carried to the other side as its counterpart; **synthesized** = made by the bridge
from what it knows; **answered by the bridge** = the bridge answers without the other side; **refused** = a
schema-valid negative answer (or CALLERROR NotSupported where the response has no status), because OCPP 1.6
cannot do it. Requirement ids (K01.FR.33, ...) are OCPP 2.0.1 Part 2 unless marked otherwise."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _module(route: Route) -> str:
    return f"`{route.handler.__module__.rsplit('.', 1)[-1]}`"


def _sends(route: Route) -> str:
    """What a route sends to the other side (an answered/refused action "becomes" nothing)."""
    if route.handling in (Handling.ANSWERED, Handling.REFUSED) and route.becomes == (route.action,):
        return ""
    return ", ".join(route.becomes)


def _v16_rows() -> list[str]:
    rows = [_row("1.6 action", "sent by", "handling", "2.x messages", "module", "how / why"),
            _row("---", "---", "---", "---", "---", "---")]
    for action in sorted(validate.actions(Version.V16)):
        if action in V16_FROM_CHARGER:
            route = CHARGER_ROUTES.get(action)
            if route is None:
                rows.append(_row(action, "charger", "refused", "", "", "CALLERROR NotSupported: no route"))
            else:
                rows.append(_row(action, "charger", route.handling.value, ", ".join(route.becomes), _module(route),
                                 route.note))
        if action not in V16_FROM_CHARGER or action == "DataTransfer":
            causes = sorted(r.action for r in CSMS_ROUTES.values() if action in r.becomes)
            how = f"sent for the CSMS's {', '.join(causes)}" if causes else "never sent: no 2.x request needs it"
            rows.append(_row(action, "bridge → charger", "translated" if causes else "unused", ", ".join(causes),
                             "", how))
    return rows


def _station_row(action: str, versions: str) -> str:
    from_charger = [r.action for r in CHARGER_ROUTES.values() if action in r.becomes]
    from_csms = [r.action for r in CSMS_ROUTES.values() if action in r.becomes and r.action != action]
    if action in SYNTHESIZED:
        return _row(action, versions, "station → CSMS", "synthesized", "", SYNTHESIZED[action])
    if from_charger:
        return _row(action, versions, "station → CSMS", "translated", ", ".join(sorted(from_charger)),
                    "from the 1.6 message(s) listed")
    if from_csms:
        return _row(action, versions, "station → CSMS", "synthesized", "",
                    f"sent by the bridge after the CSMS's {', '.join(sorted(from_csms))}")
    return _row(action, versions, "station → CSMS", "never sent", "", "no 1.6 message carries this information")


def _v2_rows() -> list[str]:
    v201, v21 = validate.actions(Version.V201), validate.actions(Version.V21)
    rows = [_row("2.x action", "versions", "sent by", "handling", "1.6 messages", "how / why"),
            _row("---", "---", "---", "---", "---", "---")]
    for action in sorted(v201 | v21):
        versions = "2.0.1, 2.1" if action in v201 and action in v21 else "2.0.1" if action in v201 else "2.1"
        if action in V2_FROM_STATION:
            rows.append(_station_row(action, versions))
        if action in V2_FROM_STATION and action != "DataTransfer":
            continue
        route = CSMS_ROUTES.get(action)
        if route is not None:
            rows.append(_row(action, versions, "CSMS → station", route.handling.value, _sends(route), route.note))
        else:
            why = PENDING.get(action, "no route")
            rows.append(_row(action, versions, "CSMS → station", "refused", "", f"CALLERROR NotSupported: {why}"))
    return rows


def _pnc_rows() -> list[str]:
    rows = [_row("tunnelled messageId", "direction", "2.x message"), _row("---", "---", "---")]
    rows += [_row(a, "charger → CSMS", f"{a} (native)") for a in pnc.FROM_CHARGER]
    rows += [_row(a, "CSMS → charger", f"{a} for V2G certificate types") for a in pnc.TO_CHARGER]
    return rows


def render() -> str:
    counts = {h: sum(1 for r in (*CHARGER_ROUTES.values(), *CSMS_ROUTES.values()) if r.handling is h) for h in Handling}
    summary = ", ".join(f"{n} {h.value}" for h, n in counts.items())
    parts = [
        "# Coverage matrix",
        "",
        "<!-- generated by `python -m ocpp_bridge.coverage` from the translation registry; do not edit -->",
        "",
        _LEGEND,
        "",
        f"Routes: {len(CHARGER_ROUTES)} from the charger, {len(CSMS_ROUTES)} from the CSMS ({summary}).",
        "",
        "## OCPP 1.6 (the charger's side)",
        "",
        *_v16_rows(),
        "",
        "## OCPP 2.0.1 and 2.1 (the CSMS's side)",
        "",
        *_v2_rows(),
        "",
        f"## ISO 15118 Plug & Charge through 1.6 DataTransfer (vendorId `{pnc.VENDOR_ID}`)",
        "",
        "`data` is the 2.0.1 payload as JSON text, the answer's `data` the 2.0.1 response; both are checked against "
        "the 2.0.1 schemas, and what does not validate is answered Rejected, never passed on.",
        "",
        *_pnc_rows(),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocpp_bridge.coverage", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    parser.add_argument("path", nargs="?", type=Path, default=DOC)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m ocpp_bridge.coverage", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
