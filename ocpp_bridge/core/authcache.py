"""What the CSMS itself decided about a charger's tokens, for the moments it cannot be asked (issue 4).

Why this exists: while the CSMS is unreachable (or too slow to answer a StartTransaction), a 1.6 charger still
needs an idTagInfo. The bridge never invents one: it reuses the CSMS's own latest decision about that token, for
as long as the CSMS allowed (cacheExpiryDateTime) or a configured time, and otherwise applies the configured
policy for unknown tokens (default: not accepted). Entries live in the charger record, so they survive restarts
and are shared by replicas.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .session import TranslatingSession

MAX_ENTRIES: Final = 1000


def remember(session: TranslatingSession, id_tag: str, tag_info: dict[str, Any]) -> None:
    """Record the CSMS's decision (a 1.6 idTagInfo); the store gets it with the charger's next write."""
    expires = session.now + session.settings.auth_cache_ttl
    if "expiryDate" in tag_info:
        with contextlib.suppress(ValueError):  # an unreadable expiry falls back to the configured lifetime
            expires = datetime.fromisoformat(tag_info["expiryDate"].replace("z", "Z")).timestamp()
    cache = session.meta.auth_cache
    cache.pop(id_tag, None)
    cache[id_tag] = {"info": tag_info, "expires": expires}
    while len(cache) > MAX_ENTRIES:
        del cache[next(iter(cache))]


def decision(session: TranslatingSession, id_tag: str) -> dict[str, Any] | None:
    """The CSMS's still-valid decision about ``id_tag``, if it made one."""
    entry = session.meta.auth_cache.get(id_tag)
    if entry is None or entry["expires"] <= session.now:
        return None
    info: dict[str, Any] = entry["info"]
    return info


def offline_answer(session: TranslatingSession, id_tag: str) -> dict[str, Any]:
    """The idTagInfo to give when the CSMS cannot be asked: its own decision, else the configured policy."""
    known = decision(session, id_tag)
    if known is not None:
        session.emit("auth.offline_cached", status=known["status"])
        return known
    status = "Accepted" if session.settings.accept_unknown_tokens else "Invalid"
    session.emit("auth.offline_unknown", status=status)
    return {"status": status}
