"""The monitor's frozen data: what one poll saw, thresholds, alerts and the status it shows.

An :class:`Observation` is everything one round of calls to one node returned (parsed from
JSON-RPC by ``_poll``); a :class:`Failure` is a round that node did not answer. The chain
facts that only need asking once per round (new finalized blocks, the leader schedule,
evidence) come from one reference node as :class:`ChainFacts`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertKind",
    "BlockFacts",
    "ChainFacts",
    "EvidenceFacts",
    "Failure",
    "NetworkStatus",
    "NodeStatus",
    "Observation",
    "ProcessFacts",
    "SyncFacts",
    "Thresholds",
    "ValidatorFacts",
]


class AlertKind(enum.StrEnum):
    NODE_DOWN = "node_down"
    NODE_UNHEALTHY = "node_unhealthy"
    CHAIN_STALLED = "chain_stalled"
    FINALITY_LAG = "finality_lag"
    MISSED_SLOTS = "missed_slots"
    VALIDATOR_JAILED = "validator_jailed"
    SLASHING = "slashing"


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen(slots=True)
class Thresholds:
    """When a node is degraded or down and when each alert fires (docs/monitor.md).

    ``min_peers`` None: 1 when more than one node is watched, else 0.
    """

    down_after: float = attrs.field(default=10.0, validator=_positive)
    stall_after: float = attrs.field(default=30.0, validator=_positive)
    max_finality_lag: int = attrs.field(default=32, validator=_non_negative)
    max_height_lag: int = attrs.field(default=16, validator=_non_negative)
    min_peers: int | None = None
    missed_slots: int = attrs.field(default=1, validator=_positive)
    missed_window: int = attrs.field(default=64, validator=_positive)
    history: int = attrs.field(default=100, validator=_positive)


@attrs.frozen(slots=True)
class SyncFacts:
    starting: int
    current: int
    highest: int


@attrs.frozen(slots=True)
class ProcessFacts:
    cpu_seconds: float
    rss_bytes: int
    data_dir_bytes: int | None
    disk_free_bytes: int | None


@attrs.frozen(slots=True)
class ValidatorFacts:
    address: str  # the owner account: blocks' ``miner``
    validator_id: str  # the consensus key's id: the leader schedule's ``leader``
    name: str
    status: str
    jailed: bool


@attrs.frozen(slots=True)
class Observation:
    """One node's answers in one round."""

    head: int
    head_slot: int
    finalized: int
    finalized_slot: int
    peers: int
    slot: int  # the node's wall-clock slot
    slot_ms: int
    genesis_time: int
    health_ok: bool
    health_reason: str = ""
    sync: SyncFacts | None = None
    process: ProcessFacts | None = None
    validators: tuple[ValidatorFacts, ...] = ()


@attrs.frozen(slots=True)
class Failure:
    """A node that did not answer this round, and why."""

    error: str


@attrs.frozen(slots=True)
class BlockFacts:
    number: int
    timestamp: int
    miner: str
    tx_count: int


@attrs.frozen(slots=True)
class EvidenceFacts:
    evidence_id: str
    offender: str
    block_number: int


@attrs.frozen(slots=True)
class ChainFacts:
    """Asked of one reference node per round.

    ``blocks`` are finalized blocks after the last ones given, in order; ``gap`` says blocks
    between were skipped (too many to fetch in one round). ``schedule`` maps upcoming slots
    to leader ids. ``evidence`` is None when not asked this round.
    """

    blocks: tuple[BlockFacts, ...] = ()
    gap: bool = False
    schedule: tuple[tuple[int, str], ...] = ()
    evidence: tuple[EvidenceFacts, ...] | None = None
    slashed_total: int | None = None


@attrs.frozen(slots=True)
class Alert:
    """An active alert: ``kind`` about ``subject`` (a node name, a validator, the chain)."""

    kind: AlertKind
    subject: str
    message: str
    since: float
    node: str | None = None


@attrs.frozen(slots=True)
class AlertEvent:
    """``raise``, ``resolve`` or ``notice`` (a one-off: slashing) of an alert at ``time``."""

    event: str
    time: float
    alert: Alert

    def to_json(self) -> dict[str, object]:
        a = self.alert
        doc: dict[str, object] = {
            "type": "alert",
            "event": self.event,
            "time": self.time,
            "kind": str(a.kind),
            "subject": a.subject,
            "node": a.node,
            "message": a.message,
            "since": a.since,
        }
        if self.event == "resolve":
            doc["duration_s"] = round(self.time - a.since, 3)
        return doc


@attrs.frozen(slots=True)
class NodeStatus:
    """What the dashboard shows for one node."""

    name: str
    url: str
    status: str  # healthy / degraded / down / unknown
    up: bool  # answered the last round
    reasons: tuple[str, ...]
    last: Observation | None
    last_seen: float | None
    cpu_percent: float | None

    def to_json(self) -> dict[str, object]:
        o = self.last
        p = None if o is None else o.process
        return {
            "name": self.name,
            "url": self.url,
            "status": self.status,
            "up": self.up,
            "reasons": list(self.reasons),
            "height": None if o is None else o.head,
            "finalized": None if o is None else o.finalized,
            "finality_lag": None if o is None else o.head - o.finalized,
            "peers": None if o is None else o.peers,
            "sync": None if o is None or o.sync is None else attrs.asdict(o.sync),
            "cpu_percent": self.cpu_percent,
            "rss_bytes": None if p is None else p.rss_bytes,
            "data_dir_bytes": None if p is None else p.data_dir_bytes,
            "disk_free_bytes": None if p is None else p.disk_free_bytes,
            "last_seen": self.last_seen,
        }


@attrs.frozen(slots=True)
class NetworkStatus:
    height: int | None
    finalized: int | None
    block_time_s: float | None
    tps: float | None
    finality_lag: int | None
    since_finalized_s: float | None
    active_alerts: int

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)
