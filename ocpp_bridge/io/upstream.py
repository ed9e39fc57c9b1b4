"""Opening the upstream (CSMS) connection for one charger, during that charger's own handshake.

Why this exists: the CSMS stays the authority on which stations exist. The bridge opens URL/<identity> with the
charger's credentials (its own Authorization header, or the per-charger upstream password) before it completes
the charger's upgrade, and a refusal travels back as the same HTTP status (401/403/404); a CSMS that cannot be
reached becomes 503, a broken answer 502. wss:// is verified (certificate and hostname) and a CSMS whose
certificate fails is 502, never retried over ws://. The CSMS is treated like any peer: the same message-size
limit, bounded write buffer and keepalive as toward chargers.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from . import security
from .handshake import HandshakeRefused

FORWARDED_STATUSES: Final = frozenset({401, 403, 404})
MAX_FRAME: Final = 1 << 20  # the default of the max_message_size setting


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """How every upstream connection is opened (from the settings)."""

    ssl: ssl.SSLContext | None = None  # wss:// only
    max_size: int = MAX_FRAME
    write_limit: int = 32_768
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 10.0


def upstream_url(base: str, identity: str) -> str:
    # Identity characters that are legal in a URL path stay literal, as the charger would send them to the CSMS
    # directly (RFC 3986 §2.2: percent-encoding a reserved character makes a different URI); ' ' and '|' are encoded.
    return f"{base}/{quote(identity, safe='*=+@')}"


async def open_upstream(base: str, identity: str, protocols: Sequence[str], authorization: str | None,
                        open_timeout: float, options: UpstreamOptions | None = None) -> ClientConnection:
    options = options or UpstreamOptions()
    headers = Headers()
    if authorization:
        headers["Authorization"] = authorization
    tls: dict[str, Any] = {"ssl": options.ssl} if options.ssl is not None and base.startswith("wss://") else {}
    try:
        return await connect(
            upstream_url(base, identity),
            subprotocols=[Subprotocol(p) for p in protocols],
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=options.max_size,
            write_limit=options.write_limit,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            compression=None,
            user_agent_header=None,
            **tls,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FORWARDED_STATUSES:
            raise HandshakeRefused(status, f"CSMS refused {identity} with HTTP {status}") from None
        raise HandshakeRefused(502, f"CSMS answered the upgrade with HTTP {status}") from None
    except InvalidHandshake as exc:
        raise HandshakeRefused(502, f"CSMS handshake failed: {exc}") from None
    except ssl.SSLCertVerificationError as exc:  # an OSError: must come before the 503 below
        security.event("invalid_csms_certificate", identity=identity, reason=exc.verify_message,
                       ocpp="InvalidCsmsCertificate")
        raise HandshakeRefused(502, f"CSMS certificate refused: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        security.event("upstream_tls_failed", identity=identity, reason=exc.reason or type(exc).__name__)
        raise HandshakeRefused(502, f"TLS with the CSMS failed: {exc.reason or type(exc).__name__}") from None
    except (TimeoutError, OSError) as exc:
        raise HandshakeRefused(503, f"CSMS unreachable: {type(exc).__name__}") from None
