"""The knobs the core obeys, as one frozen value the shell builds from the configuration.

Why this exists: the core may not read files or the environment, but several behaviours are operator choices
(timeouts, how a 1.6 idTag's 2.0.1 token type is guessed, which mapping tables apply). They arrive here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .devicemodel import KeyTable


@dataclass(frozen=True, slots=True)
class TokenTypeRule:
    """idTags matching ``pattern`` (full match) get 2.0.1 IdTokenEnumType ``token_type``."""

    pattern: re.Pattern[str]
    token_type: str


# Defaults follow the token formats (2.0.1 §IdTokenEnumType): ISO 14443 UIDs are 4, 7 or 10 bytes, ISO 15693
# UIDs 8 bytes (hex), eMAIDs follow ISO 15118-2 (e.g. "DE-8AA-1A2B3C4D5-6", dashes optional). Anything else
# was made up locally by the charger or its operator.
DEFAULT_TOKEN_RULES: tuple[TokenTypeRule, ...] = (
    TokenTypeRule(re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20}"), "ISO14443"),
    TokenTypeRule(re.compile(r"[0-9A-Fa-f]{16}"), "ISO15693"),
    TokenTypeRule(re.compile(r"[A-Za-z]{2}-?[A-Za-z0-9]{3}-?[A-Za-z0-9]{9}(-?[A-Za-z0-9])?"), "eMAID"),
)
DEFAULT_TOKEN_TYPE = "Local"


@dataclass(frozen=True, slots=True)
class CoreSettings:
    call_timeout: float = 20.0  # seconds to wait for an answer from either peer
    # Check the bridge's own output against the schemas before sending it (defense in depth; ~10% of the core's
    # CPU). Off by default: every frame the core emits is validated by the test suite instead.
    validate_output: bool = False
    token_rules: tuple[TokenTypeRule, ...] = DEFAULT_TOKEN_RULES
    default_token_type: str = DEFAULT_TOKEN_TYPE
    keys: KeyTable = field(default_factory=KeyTable.empty)
    # --- CSMS outages (issue 4) ---
    outage_mode: str = "ride-through"  # "ride-through": keep chargers connected; "close": close them at once
    outage_grace: float = 600.0  # seconds of continuous outage after which chargers are closed (OCPP-J §6.3)
    max_queue: int = 100_000  # queued messages per charger after which a disconnected CSMS closes the charger
    retry_interval: float = 10.0  # first back-off after a CALLERROR/timeout (2.0.1 MessageAttemptInterval)
    retry_max: float = 300.0  # back-off cap; a queued message is retried for ever, never dropped
    boot_retry_interval: int = 60  # BootNotification while the CSMS is down: Pending, retry after this
    accept_unknown_tokens: bool = False  # offline policy for a token the CSMS never decided about
    auth_cache_ttl: float = 86_400.0  # how long a CSMS decision without cacheExpiryDateTime is reused offline

    def retry_delay(self, attempts: int) -> float:
        """Back-off before retry number ``attempts`` (1-based): doubling from retry_interval, capped."""
        return float(min(self.retry_max, self.retry_interval * 2 ** max(0, attempts - 1)))

    def token_type(self, id_tag: str) -> str:
        for rule in self.token_rules:
            if rule.pattern.fullmatch(id_tag):
                return rule.token_type
        return self.default_token_type
