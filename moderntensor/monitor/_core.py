"""The monitor's core: observations and the time in, node status and alert events out.

No I/O and no clock (STYLE rules 1 and 8): the Trio shell polls the nodes, then calls
:meth:`MonitorCore.process_round` once per round with what each node answered (or why not),
the chain facts of one reference node and ``now``. The answer is the alert events of that
round; :meth:`node_statuses` and :meth:`network_status` are what the dashboard shows.

Alerts, each raised once and resolved once (the ``_RULES`` table below says when):

* ``node_down`` (per node): no answer for ``down_after`` seconds; resolved on an answer.
* ``node_unhealthy`` (per node): ``/health`` answered 503; its reason is the message.
* ``finality_lag`` (per node): head - finalized above ``max_finality_lag`` blocks.
* ``chain_stalled`` (the network): no node showed a newer finalized block for
  ``stall_after`` seconds; resolved when one does.
* ``missed_slots`` (per validator): ``missed_slots`` or more of the slots it led in the last
  ``missed_window`` checked slots had no block (``_slots``); resolved below that.
* ``validator_jailed`` (per validator): its status is jailed; resolved when it is not.
* ``slashing`` (a one-off ``notice``): new evidence in a block, or the slashed total rose.

A node's status: ``down`` past ``down_after``; ``degraded`` when it did not answer lately,
is syncing, its ``/health`` is 503, it has fewer than ``min_peers`` peers, its finality lag
is above the limit, or it is more than ``max_height_lag`` blocks behind the best node;
``healthy`` otherwise; ``unknown`` before its first round.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence

import attrs

from ._model import (
    Alert,
    AlertEvent,
    AlertKind,
    BlockFacts,
    ChainFacts,
    Failure,
    NetworkStatus,
    NodeStatus,
    Observation,
    Thresholds,
)
from ._slots import SlotBook

__all__ = ["MonitorCore"]

SAMPLE_WINDOW = 64  # reference samples kept for the block time
BLOCK_WINDOW = 128  # finalized blocks kept for TPS


@attrs.define
class _Node:
    name: str
    url: str
    last: Observation | None = None
    last_seen: float | None = None
    failing_since: float | None = None
    error: str = ""
    status: str = "unknown"
    up: bool = False
    reasons: tuple[str, ...] = ()
    cpu: tuple[float, float] | None = None  # (time, cpu seconds) of the previous answer
    cpu_percent: float | None = None


class MonitorCore:
    """Per-node status and the alert state machine of a set of nodes."""

    def __init__(self, nodes: Sequence[tuple[str, str]], thresholds: Thresholds, now: float):
        """``nodes``: (name, url) pairs, names unique."""
        names = [name for name, _ in nodes]
        if not names or len(set(names)) != len(names):
            raise ValueError("the monitor needs at least one node, each with its own name")
        self.thresholds = thresholds
        self.nodes = {name: _Node(name, url) for name, url in nodes}
        self.min_peers = thresholds.min_peers
        if self.min_peers is None:
            self.min_peers = 1 if len(nodes) > 1 else 0
        self.active: dict[tuple[AlertKind, str], Alert] = {}
        self.history: deque[AlertEvent] = deque(maxlen=thresholds.history)
        self.fired: Counter[AlertKind] = Counter()
        self.best_finalized: int | None = None
        self.finalized_at = now  # when best_finalized last rose (start: the monitor's start)
        self.reference: Observation | None = None
        self.samples: deque[tuple[int, int, int]] = deque(maxlen=SAMPLE_WINDOW)
        self.blocks: deque[BlockFacts] = deque(maxlen=BLOCK_WINDOW)
        self.slots = SlotBook(thresholds.missed_window)
        self.evidence_seen: set[str] | None = None
        self.slashed_total: int | None = None

    # -- one round ---------------------------------------------------------------------

    def process_round(
        self,
        now: float,
        polls: Mapping[str, Observation | Failure],
        chain: ChainFacts | None = None,
        reference: str | None = None,
    ) -> list[AlertEvent]:
        """Take one round: each node's answer (a node missing from ``polls`` was not asked),
        and ``chain`` as asked of the node named ``reference``.

        Raises:
            ValueError: an unknown node name.
        """
        unknown = set(polls) - set(self.nodes) | ({reference} - set(self.nodes) - {None})
        if unknown:
            raise ValueError(f"unknown nodes: {sorted(map(str, unknown))}")
        events: list[AlertEvent] = []
        answers = {n: p for n, p in polls.items() if isinstance(p, Observation)}
        best_head = max((o.head for o in answers.values()), default=None)
        for name, poll in polls.items():
            node = self.nodes[name]
            if isinstance(poll, Observation):
                self._answered(node, poll, now, best_head, events)
            else:
                self._failed(node, poll, now, events)
        self._finality(now, answers, events)
        ref = answers.get(reference) if reference is not None else None
        if ref is not None:
            self.reference = ref
            self.samples.append((ref.finalized, ref.finalized_slot, ref.slot_ms))
            self._validators(ref, now, events)
            if chain is not None:
                self._chain(ref, chain, now, events)
        self.history.extend(events)
        for e in events:
            if e.event != "resolve":
                self.fired[e.alert.kind] += 1
        return events

    def _answered(
        self, node: _Node, obs: Observation, now: float, best: int | None, out: list[AlertEvent]
    ) -> None:
        t = self.thresholds
        if obs.process is not None:
            if node.cpu is not None and now > node.cpu[0]:
                used = obs.process.cpu_seconds - node.cpu[1]
                node.cpu_percent = round(max(0.0, used) / (now - node.cpu[0]) * 100, 1)
            node.cpu = (now, obs.process.cpu_seconds)
        node.last, node.last_seen, node.failing_since, node.error = obs, now, None, ""
        node.up = True
        lag = obs.head - obs.finalized
        reasons = []
        if obs.sync is not None:
            reasons.append(f"syncing: block {obs.sync.current} of {obs.sync.highest}")
        if not obs.health_ok:
            reasons.append(f"/health 503: {obs.health_reason or 'not ready'}")
        if obs.peers < (self.min_peers or 0):
            reasons.append(f"{obs.peers} peers (fewer than {self.min_peers})")
        if lag > t.max_finality_lag:
            reasons.append(f"finality lag {lag} blocks (limit {t.max_finality_lag})")
        if best is not None and best - obs.head > t.max_height_lag:
            reasons.append(f"{best - obs.head} blocks behind the best node")
        node.reasons = tuple(reasons)
        node.status = "degraded" if reasons else "healthy"
        self._set(out, now, AlertKind.NODE_DOWN, node.name, False, "", node.name)
        self._set(
            out, now, AlertKind.NODE_UNHEALTHY, node.name, not obs.health_ok,
            f"{node.name}: /health 503: {obs.health_reason or 'not ready'}", node.name,
        )  # fmt: skip
        self._set(
            out, now, AlertKind.FINALITY_LAG, node.name, lag > t.max_finality_lag,
            f"{node.name}: head {obs.head} is {lag} blocks past finalized {obs.finalized} "
            f"(limit {t.max_finality_lag})", node.name,
        )  # fmt: skip

    def _failed(self, node: _Node, failure: Failure, now: float, out: list[AlertEvent]) -> None:
        if node.failing_since is None:
            node.failing_since = now
        node.error = failure.error
        node.up = False
        silent = now - node.failing_since
        down = silent >= self.thresholds.down_after
        node.status = "down" if down else "degraded"
        node.reasons = (f"no answer for {silent:.1f} s: {failure.error}",)
        node.cpu = None
        self._set(
            out, now, AlertKind.NODE_DOWN, node.name, down,
            f"{node.name}: no answer for {silent:.1f} s ({failure.error})", node.name,
        )  # fmt: skip

    def _finality(
        self, now: float, answers: Mapping[str, Observation], out: list[AlertEvent]
    ) -> None:
        best = max((o.finalized for o in answers.values()), default=None)
        if best is not None and (self.best_finalized is None or best > self.best_finalized):
            self.best_finalized = best
            self.finalized_at = now
        quiet = now - self.finalized_at
        self._set(
            out, now, AlertKind.CHAIN_STALLED, "chain", quiet >= self.thresholds.stall_after,
            f"no new finalized block for {quiet:.1f} s (finalized height "
            f"{self.best_finalized}; limit {self.thresholds.stall_after:g} s)",
        )  # fmt: skip

    def _validators(self, ref: Observation, now: float, out: list[AlertEvent]) -> None:
        jailed = {v.address: v for v in ref.validators if v.jailed}
        for v in jailed.values():
            message = f"validator {v.name or v.address} ({v.address}) is jailed"
            self._set(out, now, AlertKind.VALIDATOR_JAILED, v.address, True, message)
        for kind, subject in list(self.active):
            if kind is AlertKind.VALIDATOR_JAILED and subject not in jailed:
                self._set(out, now, kind, subject, False, "")

    def _chain(
        self, ref: Observation, chain: ChainFacts, now: float, out: list[AlertEvent]
    ) -> None:
        self.blocks.extend(chain.blocks)
        self.slots.add_schedule(chain.schedule)
        self.slots.add_blocks(chain.blocks, chain.gap)
        ids = {v.address.lower(): v.validator_id for v in ref.validators}
        names = {v.validator_id: v.name or v.address for v in ref.validators}
        window = self.slots.check(ref.finalized_slot, ref.genesis_time, ref.slot_ms, ids)
        threshold = self.thresholds.missed_slots
        for leader, (missed, led) in window.items():
            self._set(
                out, now, AlertKind.MISSED_SLOTS, leader, missed >= threshold,
                f"validator {names.get(leader, leader)} missed {missed} of its {led} slots in "
                f"the last {self.thresholds.missed_window} slots (limit {threshold})",
            )  # fmt: skip
        for kind, subject in list(self.active):
            if kind is AlertKind.MISSED_SLOTS and subject not in window:
                self._set(out, now, kind, subject, False, "")
        self._slashing(chain, now, out)

    def _slashing(self, chain: ChainFacts, now: float, out: list[AlertEvent]) -> None:
        new = []
        if chain.evidence is not None:
            ids = {e.evidence_id for e in chain.evidence}
            if self.evidence_seen is not None:
                new = [e for e in chain.evidence if e.evidence_id not in self.evidence_seen]
            self.evidence_seen = ids  # mt_evidence scans a fixed span: an id gone stays gone
        for e in new:
            message = f"evidence against {e.offender} in block {e.block_number}: slashed"
            out.append(
                AlertEvent("notice", now, Alert(AlertKind.SLASHING, e.offender, message, now))
            )
        total = chain.slashed_total
        if total is not None:
            if self.slashed_total is not None and total > self.slashed_total and not new:
                message = f"the slashed total rose by {total - self.slashed_total} wei"
                out.append(
                    AlertEvent("notice", now, Alert(AlertKind.SLASHING, "chain", message, now))
                )
            self.slashed_total = total

    def _set(
        self,
        out: list[AlertEvent],
        now: float,
        kind: AlertKind,
        subject: str,
        firing: bool,
        message: str,
        node: str | None = None,
    ) -> None:
        """The one transition rule: raise when it starts firing, resolve when it stops; while
        it fires, its message follows the latest figures (no new event)."""
        key = (kind, subject)
        alert = self.active.get(key)
        if firing and alert is None:
            alert = Alert(kind, subject, message, now, node)
            self.active[key] = alert
            out.append(AlertEvent("raise", now, alert))
        elif firing and alert is not None and alert.message != message:
            self.active[key] = attrs.evolve(alert, message=message)  # the latest figures
        elif not firing and alert is not None:
            del self.active[key]
            out.append(AlertEvent("resolve", now, alert))

    # -- views -------------------------------------------------------------------------

    def node_statuses(self) -> list[NodeStatus]:
        return [
            NodeStatus(n.name, n.url, n.status, n.up, n.reasons, n.last, n.last_seen, n.cpu_percent)
            for n in self.nodes.values()
        ]

    def network_status(self, now: float) -> NetworkStatus:
        ref = self.reference
        return NetworkStatus(
            height=None if ref is None else ref.head,
            finalized=self.best_finalized,
            block_time_s=self._block_time(),
            tps=self._tps(),
            finality_lag=None if ref is None else ref.head - ref.finalized,
            since_finalized_s=round(now - self.finalized_at, 3),
            active_alerts=len(self.active),
        )

    def _block_time(self) -> float | None:
        """Seconds per finalized block over the samples: slots passed times the slot length
        over blocks made (exact, unlike whole-second timestamps)."""
        if len(self.samples) < 2:
            return None
        (n0, s0, _), (n1, s1, slot_ms) = self.samples[0], self.samples[-1]
        if n1 <= n0:
            return None
        return round((s1 - s0) * slot_ms / 1000 / (n1 - n0), 3)

    def _tps(self) -> float | None:
        if len(self.blocks) < 2:
            return None
        span = self.blocks[-1].timestamp - self.blocks[0].timestamp
        if span <= 0:
            return None
        return round(sum(b.tx_count for b in list(self.blocks)[1:]) / span, 2)
