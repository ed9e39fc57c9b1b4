"""What the bridge decides from a charger's HTTP upgrade request, before anything is opened upstream.

Why this exists: the identity and the OCPP version are fixed by the handshake (OCPP-J §3.1). A bad identity is
refused with 400 before the CSMS is contacted; the subprotocol the charger prefers decides whether its session
is translated (ocpp1.6) or passed through (ocpp2.0.1 / ocpp2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from websockets.asyncio.connection import Connection
from websockets.datastructures import Headers

from ..core.rpc import Version

MAX_IDENTITY_LENGTH: Final = 48  # 2.0.1 Part 4 §3.1.1: identifierString[48]
# identifierString (2.0.1 Part 2 §2.1.x) allows a-z A-Z 0-9 and * - _ = : + | @ . ; ':' is excluded because the
# identity is the Basic-auth username (Part 4 §3.1.1). Spaces appear in the wild percent-encoded (RDAM%20123).
_IDENTITY: Final = re.compile(r"[A-Za-z0-9*\-_=+|@. ]{1,48}")


class HandshakeRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def identity_from_path(path: str) -> str:
    """The charger identity: the last path segment, percent-decoded and validated."""
    raw = path.split("?", 1)[0].rsplit("/", 1)[-1]  # URL = endpoint + "/" + identity (Part 4 §3.1.1)
    try:
        identity = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise HandshakeRefused(400, "charger identity is not valid percent-encoded UTF-8") from None
    if not identity:
        raise HandshakeRefused(400, "the URL path must end with the charger identity")
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise HandshakeRefused(400, f"charger identity is longer than {MAX_IDENTITY_LENGTH} characters")
    if identity in (".", "..") or not identity.strip(" "):
        # dot-segments (RFC 3986 §3.3) would name another path once appended to the CSMS URL; blank is no name
        raise HandshakeRefused(400, "charger identity is not a usable name")
    if not _IDENTITY.fullmatch(identity):
        raise HandshakeRefused(400, "charger identity contains characters OCPP does not allow (e.g. ':')")
    return identity


@dataclass(frozen=True, slots=True)
class VersionChoice:
    version: Version | None  # None: the charger offered nothing the bridge speaks
    offered_2x: tuple[str, ...]  # the charger's 2.x subprotocols, in its order of preference


def choose_version(header_values: list[str]) -> VersionChoice:
    """The charger's most preferred subprotocol the bridge speaks (2.1 Part 4 §3.1.2: in order of preference)."""
    offered = [p.strip() for value in header_values for p in value.split(",") if p.strip()]
    known = [v for v in (Version.from_subprotocol(p) for p in offered) if v is not None]
    offered_2x = tuple(v.value for v in known if v.is_2x)
    return VersionChoice(known[0] if known else None, offered_2x)


def forget_headers(connection: Connection) -> None:
    """Drop the HTTP headers of a finished upgrade, both ways, once the bridge has read what it needs from them.

    websockets keeps the request and the response for the connection's lifetime, and their headers (a dict, a
    list and two strings per header) were the largest thing the bridge held per idle charger: 6.6 KB per charger
    for the charger's connection and the CSMS's together (tracemalloc after a 2,000-charger storm)."""
    for message in (connection.request, connection.response):
        if message is not None:
            message.headers = Headers()
