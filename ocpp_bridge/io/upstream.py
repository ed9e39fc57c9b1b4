"""Opening the upstream (CSMS) connection for one charger, during that charger's own handshake.

Why this exists: the CSMS stays the authority on which stations exist. The bridge opens URL/<identity> with the
charger's Authorization header before it completes the charger's upgrade, and a refusal travels back as the
same HTTP status (401/403/404); a CSMS that cannot be reached becomes 503, a broken answer 502.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .handshake import HandshakeRefused

FORWARDED_STATUSES: Final = frozenset({401, 403, 404})
MAX_FRAME: Final = 1 << 20  # issue 5 makes this configurable; 1 MiB is far above any OCPP message


def upstream_url(base: str, identity: str) -> str:
    # Identity characters that are legal in a URL path stay literal, as the charger would send them to the CSMS
    # directly (RFC 3986 §2.2: percent-encoding a reserved character makes a different URI); ' ' and '|' are encoded.
    return f"{base}/{quote(identity, safe='*=+@')}"


async def open_upstream(base: str, identity: str, protocols: Sequence[str], authorization: str | None,
                        open_timeout: float) -> ClientConnection:
    headers = Headers()
    if authorization:
        headers["Authorization"] = authorization
    try:
        return await connect(
            upstream_url(base, identity),
            subprotocols=[Subprotocol(p) for p in protocols],
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=MAX_FRAME,
            compression=None,
            user_agent_header=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FORWARDED_STATUSES:
            raise HandshakeRefused(status, f"CSMS refused {identity} with HTTP {status}") from None
        raise HandshakeRefused(502, f"CSMS answered the upgrade with HTTP {status}") from None
    except InvalidHandshake as exc:
        raise HandshakeRefused(502, f"CSMS handshake failed: {exc}") from None
    except (TimeoutError, OSError) as exc:
        raise HandshakeRefused(503, f"CSMS unreachable: {type(exc).__name__}") from None
