"""Per-charger routes: which central system(s) a charger's session talks to, and why.

Why this exists: a fleet moves from an old OCPP 1.6 central system to a new 2.0.1/2.1 CSMS a few chargers at a
time (issue 8). Each charger gets one of three routes:

* ``translate``: 1.6 charger -> the new CSMS, translated (the bridge's original behaviour, the default);
* ``legacy``: 1.6 charger -> the old central system, passed through untranslated;
* ``shadow``: the old central system stays authoritative; the new CSMS gets the translated copy and its answers
  are compared, never forwarded.

2.0.1/2.1 chargers pass through to the route's 2.x upstream. The table is built once from the settings
(``[upstreams.<name>]``, ``[[routes]]``, ``default_route``) and is immutable; ``resolve`` is on the connection
path, so exact identities are one dict lookup and globs are only tried when one could come first in file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import translate
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, cast

from .config import LEGACY_PROTOCOL, ConfigError

if TYPE_CHECKING:
    from .config import RouteSettings, Settings

RouteMode = Literal["translate", "legacy", "shadow"]
ROUTE_MODES: tuple[RouteMode, ...] = ("translate", "legacy", "shadow")

# OCPP 2.0.1 Part 4 §3.1.1: identifierString[48] of these characters (as io.handshake accepts them); a pattern may
# also use the fnmatch characters ? [ ] ! (and *, which an identity may contain too).
_MAX_IDENTITY: Final = 48
_IDENTITY: Final = re.compile(r"[A-Za-z0-9*\-_=+|@. ]+")
_PATTERN: Final = re.compile(r"[A-Za-z0-9*\-_=+|@. ?\[\]!]+")
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """A central system the bridge can open ``url/<identity>`` on, offering ``protocols``."""

    name: str
    url: str
    protocols: tuple[str, ...]  # ("ocpp1.6",) for a legacy central system, else 2.x subprotocols in preference order

    @property
    def legacy(self) -> bool:
        """True for an old 1.6 central system (sessions to it are passed through untranslated)."""
        return self.protocols == (LEGACY_PROTOCOL,)


@dataclass(frozen=True, slots=True)
class Route:
    """One charger's route: the mode, the 2.x CSMS, the old 1.6 central system (if any), and why."""

    mode: RouteMode
    upstream: UpstreamTarget  # the new 2.0.1/2.1 CSMS (translate, shadow; and what 2.x chargers pass through to)
    legacy: UpstreamTarget | None  # the old 1.6 central system (legacy, shadow); None when none configured
    reason: str  # for humans: 'routes[2] identities "CP-01*"', 'default_route = "translate"', 'admin API'


@dataclass(frozen=True, slots=True)
class _Entry:
    order: int  # position among all entries of all rules, in file order
    route: Route


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


def _pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is neither an identity nor a glob, or None."""
    if not _is_glob(pattern):
        if len(pattern) > _MAX_IDENTITY:
            return f"{pattern!r} is longer than {_MAX_IDENTITY} characters (OCPP identifierString[48])"
        if not _IDENTITY.fullmatch(pattern):
            return f"{pattern!r} has characters an OCPP identity cannot contain"
        return None
    if not _PATTERN.fullmatch(pattern):
        return f"{pattern!r} has characters neither an OCPP identity nor a glob can contain"
    if pattern.count("[") != pattern.count("]"):
        return f"{pattern!r} has an unbalanced [ ] in its glob"
    return None


def read_identities(path: Path) -> list[tuple[int, str]]:
    """(line number, identity or glob) of a file: one a line, ``#`` starts a comment, blank lines are skipped.

    Raises ConfigError naming ``file:line`` for a line that is neither an identity nor a glob.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"identities file {path} cannot be read: {exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()  # '#' cannot occur in an identity, so it always starts a comment
        if not item:
            continue
        problem = _pattern_problem(item)
        if problem:
            raise ConfigError(f"{path}:{number}: {problem}")
        entries.append((number, item))
    return entries


class RouteTable:
    """The named upstreams and the ``[[routes]]`` rules, resolved per charger identity (first match wins)."""

    upstreams: Mapping[str, UpstreamTarget]

    def __init__(self, upstreams: Mapping[str, UpstreamTarget], default: Route,
                 entries: Iterable[tuple[str, Route]]) -> None:
        """``entries``: (identity or glob, route) in file order; use ``from_settings`` unless testing."""
        self.upstreams = MappingProxyType(dict(upstreams))
        self._default = default
        self._exact: dict[str, _Entry] = {}
        self._globs: list[tuple[re.Pattern[str], _Entry]] = []
        self._explicit: list[str] = []
        for order, (pattern, route) in enumerate(entries):
            if not _is_glob(pattern):
                if pattern not in self._exact:
                    self._exact[pattern] = _Entry(order, route)
                    self._explicit.append(pattern)
            else:
                self._globs.append((re.compile(translate(pattern)), _Entry(order, route)))

    @classmethod
    def from_settings(cls, settings: Settings) -> RouteTable:
        """Raises ConfigError naming the rule (``routes[i]``), the file and the line."""
        upstreams = {"default": UpstreamTarget("default", settings.upstream, tuple(settings.upstream_protocols))}
        if settings.legacy_upstream is not None:
            upstreams["legacy"] = UpstreamTarget("legacy", settings.legacy_upstream, (LEGACY_PROTOCOL,))
        for name, item in settings.upstreams.items():
            upstreams[name] = UpstreamTarget(name, item.url, tuple(item.protocols))
        default_mode = cast(RouteMode, settings.default_route)
        if default_mode not in ROUTE_MODES:
            raise ConfigError(f"setting 'default_route' must be one of {', '.join(ROUTE_MODES)}")
        legacy = upstreams.get("legacy")
        if default_mode != "translate" and legacy is None:
            raise ConfigError(f"setting 'default_route' = {default_mode!r} needs legacy_upstream")
        default = Route(default_mode, upstreams["default"], legacy, f'default_route = "{default_mode}"')
        entries: list[tuple[str, Route]] = []
        for index, rule in enumerate(settings.routes):
            entries.extend(_rule_entries(index, rule, upstreams))
        return cls(upstreams, default, entries)

    @property
    def default(self) -> Route:
        """The route of chargers no rule names."""
        return self._default

    def resolve(self, identity: str) -> Route:
        """The route of ``identity``: the first rule entry in file order that names it, else the default route."""
        exact = self._exact.get(identity)
        for compiled, entry in self._globs:
            if exact is not None and entry.order > exact.order:
                break
            if compiled.match(identity):
                return entry.route
        return exact.route if exact is not None else self._default

    def with_mode(self, route: Route, mode: str) -> Route:
        """``route`` switched to ``mode`` (for the admin API): same upstreams, reason 'admin API'.

        Raises ValueError for an unknown mode, or legacy/shadow when the route has no legacy central system.
        """
        if mode not in ROUTE_MODES:
            raise ValueError(f"unknown route mode {mode!r}: use one of {', '.join(ROUTE_MODES)}")
        if mode != "translate" and route.legacy is None:
            raise ValueError(f"route mode {mode!r} needs an old 1.6 central system, and none is configured for "
                             "this charger (set legacy_upstream, or legacy_upstream in its [[routes]] rule)")
        return Route(mode, route.upstream, route.legacy, "admin API")

    def explicit_identities(self) -> list[str]:
        """Every exact (non-glob) identity named in rules and identities files, in file order, once each."""
        return list(self._explicit)


def _rule_entries(index: int, rule: RouteSettings,
                  upstreams: Mapping[str, UpstreamTarget]) -> list[tuple[str, Route]]:
    where = f"routes[{index}]"
    mode = cast(RouteMode, rule.mode)
    if mode not in ROUTE_MODES:
        raise ConfigError(f"setting '{where}.mode' must be one of {', '.join(ROUTE_MODES)}, not {rule.mode!r}")
    upstream = upstreams.get(rule.upstream)
    if upstream is None:
        raise ConfigError(f"setting '{where}.upstream': no upstream is named {rule.upstream!r} "
                          f"(configured: {', '.join(upstreams)})")
    if upstream.legacy:
        raise ConfigError(f"setting '{where}.upstream': {rule.upstream!r} speaks {LEGACY_PROTOCOL}; upstream names "
                          "the 2.x CSMS (an old central system goes in legacy_upstream)")
    legacy = _rule_legacy(where, mode, rule.legacy_upstream, upstreams)
    entries: list[tuple[str, Route]] = []
    for position, pattern in enumerate(rule.identities):
        problem = _pattern_problem(pattern)
        if problem:
            raise ConfigError(f"setting '{where}.identities[{position}]': {problem}")
        entries.append((pattern, Route(mode, upstream, legacy, f'{where} identities "{pattern}"')))
    if rule.identities_file is not None:
        try:
            lines = read_identities(rule.identities_file)
        except ConfigError as exc:
            raise ConfigError(f"setting '{where}.identities_file': {exc}") from None
        for number, pattern in lines:
            reason = f'{where} identities_file {rule.identities_file}:{number} "{pattern}"'
            entries.append((pattern, Route(mode, upstream, legacy, reason)))
    return entries


def _rule_legacy(where: str, mode: RouteMode, name: str | None,
                 upstreams: Mapping[str, UpstreamTarget]) -> UpstreamTarget | None:
    legacy = upstreams.get(name or "legacy")
    if name is not None and legacy is None:
        raise ConfigError(f"setting '{where}.legacy_upstream': no upstream is named {name!r} "
                          f"(configured: {', '.join(upstreams)})")
    if legacy is not None and not legacy.legacy:
        raise ConfigError(f"setting '{where}.legacy_upstream': {name!r} is a 2.x CSMS; legacy_upstream names an "
                          f"old central system (protocols = [\"{LEGACY_PROTOCOL}\"])")
    if mode != "translate" and legacy is None:
        raise ConfigError(f"setting '{where}.mode' = {mode!r} needs an old 1.6 central system: set "
                          "legacy_upstream, or name one in the rule's legacy_upstream")
    return legacy
