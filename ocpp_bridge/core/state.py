"""The durable per-charger state: transaction records and the small charger record.

Why this exists: everything the bridge must remember across a restart (or a replica change) about one charger
fits in two record types, written through the store before the charger is answered. Records are plain data
with a lossless dict form, so any store (SQLite, Redis) can keep them without knowing their meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Self, TypeVar

import orjson

MAX_REMEMBERED_TOKEN_TYPES = 256  # idToken -> type the CSMS used; bounded so a CSMS cannot grow it forever


class _Stored:
    """The lossless dict form every record has, so any store can keep it without knowing its meaning."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(slots=True)
class TxRecord(_Stored):
    """One transaction of one charger: the 1.6 integer id <-> the 2.0.1 transactionId, and its progress.

    Keyed by (identity, local_id): a charger can only ever address its own transactions
    (SteVe CVE-2026-28230 pattern, security.md test 27).
    """

    identity: str
    local_id: int  # the 1.6 transactionId the bridge gave the charger
    tx_id: str  # the 2.0.1 transactionId the CSMS sees
    connector_id: int
    evse_id: int
    evse_connector_id: int
    id_token: str
    id_token_type: str
    meter_start: int
    started_at: str
    start_hash: str  # content hash of the StartTransaction.req, for idempotent retries
    remote_start_id: int | None = None
    reservation_id: int | None = None
    seq_no: int = 0  # the seqNo the next TransactionEvent gets (E01: starts at 0, +1 per event)
    charging_state: str | None = None
    ended: bool = False
    # The latest charger request in this transaction (hash) and the answer the charger got: a retry of the same
    # request gets the same answer, never a second event.
    last_hash: str | None = None
    last_answer: dict[str, Any] | None = None
    # The StartTransaction.conf once given: a start repeated after later messages of the transaction (which
    # replaced last_*) is answered with it, never taken for a new transaction.
    start_answer: dict[str, Any] | None = None

    def snapshot(self) -> TxRecord:
        return _COPY_TX(self)


@dataclass(slots=True)
class ChargerMeta(_Stored):
    """Small per-charger facts that are not a transaction."""

    identity: str
    next_local_id: int = 1  # never reused: a 1.6 transactionId identifies one transaction forever
    next_event_id: int = 1  # NotifyEvent eventId
    boot_reason: str | None = None  # BootReasonEnum for the next BootNotification (set by Reset/Trigger)
    boot_accepted: bool = False
    next_queue_seq: int = 1  # order of this charger's queued upstream messages
    # idTag -> {"info": 1.6 idTagInfo, "expires": epoch or None}: what the CSMS itself decided about a token,
    # used only while the CSMS cannot be asked (issue 4: never invent an authorization)
    auth_cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    reset_on_idle: bool = False  # a 2.0.1 Reset OnIdle is waiting for the last transaction to end (B12)
    token_types: dict[str, str] = field(default_factory=dict)  # idToken -> type the CSMS used for it
    remote_starts: list[dict[str, Any]] = field(default_factory=list)  # pending RequestStartTransaction
    connector_status: dict[str, str] = field(default_factory=dict)  # 1.6 connectorId -> last 1.6 status
    connector_errors: dict[str, str] = field(default_factory=dict)  # 1.6 connectorId -> active errorCode
    # The 2.x requestId of the firmware update / log upload the charger is working on (L01.FR.10, N01.FR.07),
    # and which 1.6 message carried it ("UpdateFirmware" / "SignedUpdateFirmware", "GetDiagnostics" / "GetLog").
    firmware_request_id: int | None = None
    firmware_via: str | None = None
    log_request_id: int | None = None
    log_via: str | None = None
    # Optional 1.6 messages (security whitepaper, PnC tunnel) the charger showed it implements (True) or refused
    # with NotImplemented/NotSupported (False); absent = not known yet.
    features: dict[str, bool] = field(default_factory=dict)
    # Charging profiles the charger accepted, as {"evseId": int, "profile": 2.x ChargingProfileType} (K09).
    charging_profiles: list[dict[str, Any]] = field(default_factory=list)
    # Reservations the charger accepted: {"id", "connectorId", "expires" (epoch seconds)} (H01, H04).
    reservations: list[dict[str, Any]] = field(default_factory=list)
    # --- the synthesized device model (issue 3, core/inventory.py) ---
    # What the BootNotification said (only what the charger sent): vendor, model, serialNumber,
    # chargeBoxSerialNumber, firmwareVersion, iccid, imsi, meterType, meterSerialNumber.
    station: dict[str, str] = field(default_factory=dict)
    # The charger's configuration, 1.6 key (its own spelling) -> {"value": str | None, "readonly": bool}: the
    # answer to the bridge's own GetConfiguration, kept current by the ChangeConfigurations the charger accepts.
    config_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_fetched_at: float | None = None  # when config_keys was last filled completely; None = never / stale
    # --- routes (issue 8, core/routing.py) ---
    # 1.6 transactionIds the old central system handed out (legacy or shadow route) and has not yet seen stopped,
    # and the StopTransaction requests it is owed because the charger stopped them on another route (in order).
    legacy_open: list[int] = field(default_factory=list)
    legacy_backlog: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> ChargerMeta:
        return _COPY_META(self)  # a deep copy

    def remember_token_type(self, token: str, token_type: str) -> None:
        self.token_types.pop(token, None)
        self.token_types[token] = token_type
        while len(self.token_types) > MAX_REMEMBERED_TOKEN_TYPES:
            del self.token_types[next(iter(self.token_types))]


@dataclass(slots=True)
class QueuedMessage(_Stored):
    """A message the bridge owns the delivery of: acknowledged to the charger, not yet accepted by the CSMS.

    Delivered per charger strictly in ``seq`` order, retried until the CSMS accepts it (2.0.1 E13), and deleted
    from the store (``delivered``) only then.
    """

    identity: str
    seq: int
    action: str
    payload: dict[str, Any]
    created: float
    key: str | None = None  # coalescing key: a newer message with the same key replaces this one (StatusNotif.)
    local_id: int | None = None  # the transaction it belongs to, if any
    attempts: int = 0
    delivered: bool = False

    def snapshot(self) -> QueuedMessage:
        return _COPY_QUEUED(self)


Record = TxRecord | ChargerMeta | QueuedMessage

_T = TypeVar("_T", TxRecord, ChargerMeta, QueuedMessage)
_FLAT: Final = frozenset({"dict[str, str]", "dict[str, bool]"})  # containers of immutable values


def _copier(cls: type[_T], deep: bool) -> Callable[[_T], _T]:
    """A copy function written for ``cls``: one constructor call, no per-field checks (snapshots are taken for
    every write, on the hot path). Shallow (a record's dict fields are replaced, never changed in place), or
    ``deep``: containers of immutable values are copied, other containers copied through their JSON form (what
    the store keeps anyway), and an empty container is simply a new one."""
    arguments = []
    for f in dataclasses.fields(cls):
        value = f"r.{f.name}"
        kind = str(f.type)
        if deep and kind in _FLAT:
            value = f"{value}.copy()"
        elif deep and kind.startswith(("dict[", "list[")):
            empty = "{}" if kind.startswith("dict[") else "[]"
            value = f"(loads(dumps({value})) if {value} else {empty})"
        arguments.append(value)
    source = f"def copy(r):\n    return cls({', '.join(arguments)})\n"
    namespace: dict[str, Any] = {"cls": cls, "loads": orjson.loads, "dumps": orjson.dumps}
    exec(source, namespace)  # the dataclass machinery writes __init__ the same way
    return namespace["copy"]  # type: ignore[no-any-return]


_COPY_TX: Final = _copier(TxRecord, deep=False)
_COPY_META: Final = _copier(ChargerMeta, deep=True)
_COPY_QUEUED: Final = _copier(QueuedMessage, deep=False)


@dataclass(frozen=True, slots=True)
class ChargerState:
    """What the store holds for one charger when its session starts."""

    meta: ChargerMeta
    transactions: tuple[TxRecord, ...] = ()  # open ones plus the most recent closed ones
    queue: tuple[QueuedMessage, ...] = ()  # undelivered messages, in seq order

    @classmethod
    def empty(cls, identity: str) -> ChargerState:
        return cls(ChargerMeta(identity))
