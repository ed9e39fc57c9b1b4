"""Opening the upstream (CSMS) connection for one charger, during that charger's own handshake.

Why this exists: the CSMS stays the authority on which stations exist. The bridge opens URL/<identity> with the
charger's credentials (its own Authorization header, or the per-charger upstream password) before it completes
the charger's upgrade, and a refusal travels back as the same HTTP status (401/403/404); a CSMS that cannot be
reached becomes 503, a broken answer 502. wss:// is verified (certificate and hostname) and a CSMS whose
certificate fails is 502, never retried over ws://. The CSMS is treated like any peer: the same message-size
limit, bounded write buffer and keepalive as toward chargers.

The bridge's client certificate toward the CSMS is the deployment's (``upstream_cert``) or, for a charger with
files of its own in ``upstream_client_certs_dir``, that charger's, but only for a charger the bridge
authenticated itself (local credentials, client certificate): a charger that only the CSMS can vouch for never
gets another identity's certificate presented on its behalf. Those TLS contexts are built once and kept in an
LRU cache per identity (building one costs milliseconds, and much more memory with the system trust store),
rebuilt when the files change.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from cachetools import LRUCache
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from . import security
from .handshake import HandshakeRefused, forget_headers

if TYPE_CHECKING:
    from ..config import Settings

FORWARDED_STATUSES: Final = frozenset({401, 403, 404})
MAX_FRAME: Final = 1 << 20  # the default of the max_message_size setting
SSLContext = ssl.SSLContext  # (inside UpstreamOptions, ``ssl`` is the field)


class ChargerCertificates:
    """Per-charger client certificates toward the CSMS: ``<directory>/<identity>.pem`` (chain) and
    ``<identity>.key``; a TLS context per identity, cached (LRU), rebuilt when either file changes."""

    def __init__(self, directory: Path, make_context: Callable[[Path, Path], ssl.SSLContext],
                 size: int = 1024) -> None:
        self.directory = directory
        self._make = make_context
        self._cache: LRUCache[str, tuple[tuple[int, int], ssl.SSLContext]] = LRUCache(maxsize=size)

    def context(self, identity: str) -> ssl.SSLContext | None:
        """This charger's context; None when it has no files (the deployment's certificate applies). Raises
        ValueError when its files are incomplete or unusable (nothing is presented instead: a 502)."""
        if not identity or identity in (".", "..") or "/" in identity or "\0" in identity:
            return None  # never a path outside the directory (the listener refuses such identities anyway)
        cert, key = self.directory / f"{identity}.pem", self.directory / f"{identity}.key"
        try:
            stamp = (cert.stat().st_mtime_ns, key.stat().st_mtime_ns)
        except FileNotFoundError:
            if cert.exists() or key.exists():
                raise ValueError(f"only one of {cert.name} and {key.name} exists") from None
            return None
        cached = self._cache.get(identity)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            context = self._make(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"{cert.name}/{key.name}: {getattr(exc, 'reason', None) or exc}") from None
        self._cache[identity] = (stamp, context)
        return context

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """How every upstream connection is opened (from the settings)."""

    ssl: ssl.SSLContext | None = None  # wss:// only; the deployment's client certificate, if any
    max_size: int = MAX_FRAME
    write_limit: int = 32_768
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 10.0
    chargers: ChargerCertificates | None = None  # per-charger client certificates (wss:// only)

    def context_for(self, identity: str, authenticated: bool) -> SSLContext | None:
        """The charger's own context when it has one and the bridge authenticated it, else the deployment's."""
        if self.ssl is None or self.chargers is None or not authenticated:
            return self.ssl
        return self.chargers.context(identity) or self.ssl


def charger_certificates(settings: Settings) -> ChargerCertificates | None:
    """The per-charger client certificates of ``upstream_client_certs_dir`` (wss:// upstreams only)."""
    directory = settings.upstream_client_certs_dir
    if directory is None or not settings.upstream.startswith("wss://"):
        return None

    def make(cert: Path, key: Path) -> ssl.SSLContext:
        context = security.upstream_context(settings, cert, key)
        assert context is not None  # wss://
        return context

    return ChargerCertificates(directory, make, settings.upstream_client_certs_cache)


def upstream_url(base: str, identity: str) -> str:
    # Identity characters that are legal in a URL path stay literal, as the charger would send them to the CSMS
    # directly (RFC 3986 §2.2: percent-encoding a reserved character makes a different URI); ' ' and '|' are encoded.
    return f"{base}/{quote(identity, safe='*=+@')}"


async def open_upstream(base: str, identity: str, protocols: Sequence[str], authorization: str | None,
                        open_timeout: float, options: UpstreamOptions | None = None,
                        authenticated: bool = False) -> ClientConnection:
    """``authenticated``: the bridge verified the charger itself (its own certificate may then be presented)."""
    options = options or UpstreamOptions()
    headers = Headers()
    if authorization:
        headers["Authorization"] = authorization
    try:
        context = options.context_for(identity, authenticated)
    except ValueError as exc:
        security.event("upstream_client_certificate_failed", identity=identity, reason=str(exc))
        raise HandshakeRefused(502, "the bridge's client certificate for this charger is unusable") from None
    tls: dict[str, Any] = {"ssl": context} if context is not None and base.startswith("wss://") else {}
    try:
        connection = await connect(
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
    forget_headers(connection)
    return connection
