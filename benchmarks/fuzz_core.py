"""Coverage-guided fuzzing of the sans-I/O core with atheris (issue 5: "no exception escapes an error path").

Each input is split into frames fed to one translating session from both sides (charger and CSMS, 2.0.1 or 2.1
upstream, chosen by the first byte), interleaved with clock ticks. The property: ``feed`` never raises, and every
frame the core emits is a JSON array of a known OCPP-J message type. Any exception is a crash atheris reports
(with the input that caused it).

    pip install atheris
    python benchmarks/fuzz_core.py -atheris_runs=200000          # a longer run
    python benchmarks/fuzz_core.py -atheris_runs=2000             # what CI's smoke test runs
Seeds: valid frames of every kind, so the fuzzer starts from inside the protocol rather than from noise.
"""

from __future__ import annotations

import itertools
import sys

import atheris
import orjson

with atheris.instrument_imports():
    from ocpp_bridge.core.events import FrameFromCharger, FrameFromCsms, SendToCharger, SendToCsms, SessionStarted, Tick
    from ocpp_bridge.core.rpc import Version
    from ocpp_bridge.core.session import TranslatingSession
    from ocpp_bridge.core.settings import CoreSettings
    from ocpp_bridge.core.state import ChargerState

SEPARATOR = b"\n"
SETTINGS = CoreSettings(validate_output=True)  # the fuzzer also hunts invalid output


def one_input(data: bytes) -> None:
    if not data:
        return
    upstream = Version.V21 if data[0] & 1 else Version.V201
    ids = itertools.count()
    session = TranslatingSession("FUZZ-1", upstream, SETTINGS, lambda: f"id-{next(ids)}")
    now = 1_700_000_000.0
    session.feed(SessionStarted(now, ChargerState.empty("FUZZ-1")))
    for index, chunk in enumerate(data[1:].split(SEPARATOR)):
        now += (chunk[0] if chunk else 1) / 8
        if index % 5 == 4:
            commands = session.feed(Tick(now))
        elif chunk[:1] == b"C":
            commands = session.feed(FrameFromCsms(chunk[1:], now))
        else:
            commands = session.feed(FrameFromCharger(chunk, now))
        for command in commands:
            if isinstance(command, SendToCharger | SendToCsms):
                frame = orjson.loads(command.text)
                assert isinstance(frame, list) and frame[0] in (2, 3, 4, 5), frame


def seeds() -> list[bytes]:
    frames = [
        [2, "a", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}],
        [2, "b", "StartTransaction", {"connectorId": 1, "idTag": "AB12CD34", "meterStart": 0,
                                      "timestamp": "2024-01-01T00:00:00Z"}],
        [2, "c", "MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [
            {"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": "10"}]}]}],
        [2, "d", "StopTransaction", {"transactionId": 1, "meterStop": 20, "timestamp": "2024-01-01T01:00:00Z"}],
        [2, "e", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}],
    ]
    csms = [[3, "id-0", {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 60}],
            [2, "x", "RequestStartTransaction", {"idToken": {"idToken": "AB", "type": "Central"}, "remoteStartId": 1}],
            [2, "y", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}]]
    body = SEPARATOR.join([orjson.dumps(f) for f in frames] + [b"C" + orjson.dumps(f) for f in csms])
    return [b"\x00" + body, b"\x01" + body]


def main() -> None:
    if not any(arg.startswith(("-atheris_runs", "-runs")) for arg in sys.argv[1:]):
        sys.argv.append("-atheris_runs=2000")
    for seed in seeds():
        one_input(seed)  # the seeds themselves must pass
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
