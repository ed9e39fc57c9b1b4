"""OCPP-J framing: parse and serialize CALL / CALLRESULT / CALLERROR (+ 2.1 CALLRESULTERROR and SEND).

Why this exists: the bridge speaks two dialects of the same RPC layer at once. 1.6-J and 2.0.1/2.1 share the
frame shape but differ in error-code spelling (1.6 keeps the typos ``FormationViolation`` and
``OccurenceConstraintViolation`` on purpose, OCPP-J 1.6 errata §5) and in the message types they know (2.1 adds
5 and 6). Everything here is pure: text in, typed frame or :class:`FrameError` out, never an exception of any
other kind (a bad frame must never crash a session, DESIGN.md convention 6).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import field
from typing import Any, Final

import orjson

from .immutable import immutable

MAX_MESSAGE_ID_LENGTH: Final = 36  # OCPP-J 1.6 §4.1.4, 2.0.1 Part 4 §4.1.4: messageId is string[36]
MAX_DESCRIPTION_LENGTH: Final = 255  # 2.0.1 Part 4 §4.2.3: errorDescription is string[255]
UNREADABLE_ID: Final = "-1"  # 2.0.1 Part 4 §4.2.3: CALLERROR for a frame whose messageId cannot be read


class Version(enum.Enum):
    """An OCPP-J dialect, named by its WebSocket subprotocol (OCPP-J §3.1.2)."""

    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"
    V21 = "ocpp2.1"

    @property
    def is_2x(self) -> bool:
        return self is not Version.V16

    @classmethod
    def from_subprotocol(cls, name: str | None) -> Version | None:
        for version in cls:
            if version.value == name:
                return version
        return None


class MessageType(enum.IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5  # 2.1 Part 4 §4.1.3
    SEND = 6  # 2.1 Part 4 §4.2.4


class ErrorCode(enum.Enum):
    """Canonical (2.x) error codes; :func:`spell` gives the per-version wire name."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMAT_VIOLATION = "FormatViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"  # 2.x only
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"  # 2.x only


# 1.6-J spellings that differ from 2.x (kept by the 1.6-J errata §5.1/5.2: "do not fix").
_V16_SPELLING: Final[dict[ErrorCode, str]] = {
    ErrorCode.FORMAT_VIOLATION: "FormationViolation",
    ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation",
    # 2.x-only codes have no 1.6 name: an unreadable frame is "syntactically incorrect" (FormationViolation),
    # an unsupported message type is best described to a 1.6 peer as a GenericError.
    ErrorCode.RPC_FRAMEWORK_ERROR: "FormationViolation",
    ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED: "GenericError",
}

# Both spellings are accepted on input from either side (mapping reference §7).
_ALIASES: Final[dict[str, ErrorCode]] = {
    **{code.value: code for code in ErrorCode},
    "FormationViolation": ErrorCode.FORMAT_VIOLATION,
    "OccurenceConstraintViolation": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "MessageTypeErrorSupported": ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,  # typo in 2.0.1 Part 4 §4.4 text
}


def spell(code: ErrorCode, version: Version) -> str:
    """The wire name of ``code`` for a peer speaking ``version``."""
    if version is Version.V16:
        return _V16_SPELLING.get(code, code.value)
    return code.value


def read_error_code(name: str) -> ErrorCode:
    """Canonical code for a received error name; unknown names degrade to GenericError."""
    return _ALIASES.get(name, ErrorCode.GENERIC_ERROR)


@immutable
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@immutable
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@immutable
class CallError:
    unique_id: str
    code: ErrorCode
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@immutable
class CallResultError:
    """2.1: an error about a CALLRESULT the peer sent (21P4 §4.2.3)."""

    unique_id: str
    code: ErrorCode
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@immutable
class Send:
    """2.1: an unconfirmed message; the receiver SHALL NOT respond (21P4 §4.2.4)."""

    unique_id: str
    action: str
    payload: dict[str, Any]


Frame = Call | CallResult | CallError | CallResultError | Send


class FrameError(Exception):
    """A frame that cannot be used. ``unique_id`` is "-1" when the id could not be read."""

    def __init__(self, code: ErrorCode, description: str, unique_id: str = UNREADABLE_ID) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.unique_id = unique_id


class UnknownMessageType(Exception):
    """A well-formed array whose message type id is not one this version knows."""

    def __init__(self, type_id: object, unique_id: str) -> None:
        super().__init__(f"unknown message type {type_id!r}")
        self.type_id = type_id
        self.unique_id = unique_id


def parse(text: str | bytes, version: Version) -> Frame:
    """Decode one OCPP-J frame. Raises :class:`FrameError` or :class:`UnknownMessageType`, nothing else."""
    try:
        message = orjson.loads(text)
    except (orjson.JSONDecodeError, RecursionError, ValueError, TypeError) as exc:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, f"frame is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(message, list) or len(message) < 3:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "frame is not a JSON array of at least 3 elements")
    type_id, unique_id = message[0], message[1]
    if not (isinstance(unique_id, str) and 0 < len(unique_id) <= MAX_MESSAGE_ID_LENGTH):
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "messageId is not a string of 1..36 characters")
    if type(type_id) is not int:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "messageTypeId is not an integer", unique_id)
    allowed = _TYPES_21 if version is Version.V21 else _TYPES_CLASSIC
    if type_id not in allowed:
        raise UnknownMessageType(type_id, unique_id)
    builder: Callable[[list[Any], str], Frame] = _BUILDERS[type_id]
    return builder(message, unique_id)


def _payload(value: object, unique_id: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FrameError(ErrorCode.FORMAT_VIOLATION, "payload is not a JSON object", unique_id)
    return value


def _build_call(message: list[Any], unique_id: str) -> Call:
    if len(message) != 4 or not isinstance(message[2], str) or not message[2]:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "CALL must be [2, id, action, payload]", unique_id)
    return Call(unique_id, message[2], _payload(message[3], unique_id))


def _build_send(message: list[Any], unique_id: str) -> Send:
    if len(message) != 4 or not isinstance(message[2], str) or not message[2]:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "SEND must be [6, id, action, payload]", unique_id)
    return Send(unique_id, message[2], _payload(message[3], unique_id))


def _build_result(message: list[Any], unique_id: str) -> CallResult:
    if len(message) != 3:
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "CALLRESULT must be [3, id, payload]", unique_id)
    return CallResult(unique_id, _payload(message[2], unique_id))


def _error_parts(message: list[Any], unique_id: str) -> tuple[ErrorCode, str, dict[str, Any]]:
    if len(message) != 5 or not isinstance(message[2], str) or not isinstance(message[3], str):
        raise FrameError(ErrorCode.RPC_FRAMEWORK_ERROR, "CALLERROR must be [4, id, code, description, details]",
                         unique_id)
    details = message[4] if isinstance(message[4], dict) else {}
    return read_error_code(message[2]), message[3][:MAX_DESCRIPTION_LENGTH], details


def _build_error(message: list[Any], unique_id: str) -> CallError:
    return CallError(unique_id, *_error_parts(message, unique_id))


def _build_result_error(message: list[Any], unique_id: str) -> CallResultError:
    return CallResultError(unique_id, *_error_parts(message, unique_id))


_BUILDERS: Final[dict[int, Any]] = {
    MessageType.CALL: _build_call,
    MessageType.CALLRESULT: _build_result,
    MessageType.CALLERROR: _build_error,
    MessageType.CALLRESULTERROR: _build_result_error,
    MessageType.SEND: _build_send,
}
_TYPES_CLASSIC: Final = frozenset({MessageType.CALL, MessageType.CALLRESULT, MessageType.CALLERROR})
_TYPES_21: Final = frozenset(MessageType)


def _dumps(value: list[Any]) -> str:
    return orjson.dumps(value).decode()


def serialize(frame: Frame, version: Version) -> str:
    """Encode ``frame`` for a peer speaking ``version`` (error codes spelled for that version)."""
    if isinstance(frame, Call):
        return _dumps([MessageType.CALL, frame.unique_id, frame.action, frame.payload])
    if isinstance(frame, CallResult):
        return _dumps([MessageType.CALLRESULT, frame.unique_id, frame.payload])
    if isinstance(frame, Send):
        return _dumps([MessageType.SEND, frame.unique_id, frame.action, frame.payload])
    type_id = MessageType.CALLERROR if isinstance(frame, CallError) else MessageType.CALLRESULTERROR
    return _dumps([type_id, frame.unique_id, spell(frame.code, version),
                   frame.description[:MAX_DESCRIPTION_LENGTH], frame.details])
