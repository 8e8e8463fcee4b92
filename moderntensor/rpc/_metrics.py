"""Prometheus metrics, read from the chain service at scrape time (no background task).

A private registry per server, so two nodes in one process (tests, the simulator) never share
series. Transactions per second and block time come from a window of recent blocks; the
transaction count of a block is its receipt count, cached per block (blocks never change).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moderntensor.chain.blocks import Header
from moderntensor.chain.staking import get_total
from moderntensor.chain.timing import compute_slot_start_ms
from moderntensor.mempool import MempoolConfig
from moderntensor.service import ChainService, NetworkFacts

from ._dispatch import Dispatcher

__all__ = ["CONTENT_TYPE", "RpcMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WINDOW_BLOCKS = 32
TOKEN = 10**18


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


class _ChainCollector(Collector):
    def __init__(self, service: ChainService, dispatcher: Dispatcher | None) -> None:
        self.service = service
        self.dispatcher = dispatcher
        self._tx_counts: OrderedDict[bytes, int] = OrderedDict()

    def _tx_count(self, header: Header) -> int:
        count = self._tx_counts.get(header.hash)
        if count is None:
            count = len(self.service.receipts(header.hash))
            self._tx_counts[header.hash] = count
            if len(self._tx_counts) > 4 * WINDOW_BLOCKS:
                self._tx_counts.popitem(last=False)
        return count

    def _window(self) -> tuple[float, float]:
        """(transactions per second, seconds per block) over the last blocks; NaN if unknown."""
        head = self.service.head
        genesis = self.service.chain.genesis
        genesis_ms, slot_ms = genesis.genesis_time * 1000, genesis.consensus.slot_duration_ms
        base, txs = head, 0
        for _ in range(WINDOW_BLOCKS):
            if base.number == 0:
                break
            parent = self.service.header_by_hash(base.parent_hash)
            if parent is None:
                break
            txs += self._tx_count(base)
            base = parent
        blocks = head.number - base.number
        span_ms = compute_slot_start_ms(genesis_ms, slot_ms, head.slot) - compute_slot_start_ms(
            genesis_ms, slot_ms, base.slot
        )
        span = span_ms / 1000
        if blocks == 0 or span <= 0:
            return math.nan, math.nan
        return txs / span, span / blocks

    def collect(self) -> Iterator[Metric]:
        service = self.service
        head, final = service.head, service.finalized

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"moderntensor_{name}", doc, value=value)

        yield gauge("head_slot", "Slot of the head block.", head.slot)
        yield gauge("head_number", "Height of the head block.", head.number)
        yield gauge("finalized_number", "Height of the latest finalized block.", final.number)
        yield gauge("finalized_slot", "Slot of the latest finalized block.", final.slot)
        yield gauge(
            "finality_lag_blocks", "Head height minus finalized height.", head.number - final.number
        )
        yield gauge(
            "missed_slots",
            "Slots since genesis without a block on the canonical chain (head slot - height).",
            head.slot - head.number,
        )
        yield gauge("peers", "Connected peers.", service.peer_count())
        yield gauge("mempool_size", "Transactions held in the pool.", len(service.pool))
        pool_config = getattr(service.pool, "config", None)
        yield gauge(
            "mempool_capacity",
            "Transactions the pool holds at most (pending + queued slots; NaN if unknown).",
            pool_config.global_slots + pool_config.global_queue
            if isinstance(pool_config, MempoolConfig)
            else math.nan,
        )
        yield gauge(
            "slashed_tokens",
            "Stake slashed since genesis, in tokens (the chain's running total at the head).",
            get_total(service.state_at(head), "slashed") / TOKEN,
        )
        tps, block_time = self._window()
        yield gauge(
            "transactions_per_second",
            f"Transactions included per second over the last {WINDOW_BLOCKS} blocks.",
            tps,
        )
        yield gauge(
            "block_time_seconds",
            f"Mean time between the last {WINDOW_BLOCKS} blocks (slot clock).",
            block_time,
        )
        status = service.consensus.status() if service.consensus is not None else None
        finality_ms = None if status is None else status.last_finality_ms
        yield gauge(
            "vote_latency_seconds",
            "Time from the last final block's slot start to its finalization (NaN before one).",
            _number(None if finality_ms is None else finality_ms / 1000),
        )
        yield gauge(
            "slot",
            "The wall-clock slot the node is in (NaN without consensus).",
            _number(None if status is None else status.slot),
        )
        yield gauge(
            "evidence_pending",
            "Equivocation proofs waiting to be included in a block (NaN without consensus).",
            _number(None if status is None else status.evidence_pending),
        )
        if status is not None:
            yield CounterMetricFamily(
                "moderntensor_blocks_built",
                "Blocks this node built since it started.",
                value=status.blocks_built,
            )
        yield gauge(
            "event_loop_lag_seconds",
            "Longest event-loop stall over the last minute or two (NaN without a node).",
            _number(None if status is None else status.event_loop_lag_s),
        )
        yield gauge("syncing", "1 while the node is catching up.", 1 if service.syncing else 0)
        if self.dispatcher is not None:  # None: a node with JSON-RPC off
            yield CounterMetricFamily(
                "moderntensor_rpc_requests", "JSON-RPC requests handled.",
                value=self.dispatcher.calls,
            )  # fmt: skip
            yield CounterMetricFamily(
                "moderntensor_rpc_errors", "JSON-RPC requests answered with an error.",
                value=self.dispatcher.errors,
            )  # fmt: skip
            yield CounterMetricFamily(
                "moderntensor_rpc_over_budget",
                "JSON-RPC calls answered -32005: past a response-size or CPU budget.",
                value=self.dispatcher.over_budget,
            )
        yield CounterMetricFamily(
            "moderntensor_dropped_events",
            "Head/transaction events a slow subscriber lost.",
            value=service.dropped_events,
        )
        if service.network is not None:
            yield from _network_metrics(service.network.stats())


_NETWORK_GAUGES = {  # key in NetworkFacts.counts -> (series, help)
    "known_addresses": ("peer_addresses_known", "Addresses in the known-address book."),
    "banned": ("peers_banned", "Peer ids banned right now."),
}
_NETWORK_COUNTERS = {
    "forgotten_addresses": ("peer_addresses_forgotten", "Addresses forgotten as stale."),
    "bans": ("peer_bans", "Peer bans since start."),
    "served": ("peer_requests_served", "Requests answered to peers."),
}
_GOSSIP = {"received": "received", "delivered": "delivered", "relayed": "relayed",
           "duplicates": "duplicate", "ignored": "ignored", "rejected": "rejected",
           "wants_served": "served_on_want"}  # fmt: skip


def _network_metrics(stats: NetworkFacts) -> Iterator[Metric]:
    """The network's series: peers by direction, gossip frames by fate, bans, disconnects by
    reason and side, the connected peers' score summary (no per-peer labels)."""
    counts = stats.counts
    peers = GaugeMetricFamily(
        "moderntensor_peers_connected", "Connected peers by direction.", labels=["direction"]
    )
    limits = GaugeMetricFamily(
        "moderntensor_peers_limit", "Peer limits by direction.", labels=["direction"]
    )
    for direction in ("inbound", "outbound"):
        peers.add_metric([direction], counts[direction])
        limits.add_metric([direction], counts[f"max_{direction}"])
    yield peers
    yield limits
    for key, (name, doc) in _NETWORK_GAUGES.items():
        yield GaugeMetricFamily(f"moderntensor_{name}", doc, value=counts[key])
    for key, (name, doc) in _NETWORK_COUNTERS.items():
        yield CounterMetricFamily(f"moderntensor_{name}", doc, value=counts[key])
    gossip = CounterMetricFamily(
        "moderntensor_gossip_frames",
        "Gossip frames received from peers, and what became of them.",
        labels=["fate"],
    )
    for key, fate in _GOSSIP.items():
        gossip.add_metric([fate], counts[key])
    yield gossip
    disconnects = CounterMetricFamily(
        "moderntensor_peer_disconnects",
        "Sessions ended and connections refused, by reason code and by whom.",
        labels=["reason", "by"],
    )
    for (reason, by), n in sorted(stats.disconnects.items()):
        disconnects.add_metric([reason, by], n)
    yield disconnects
    score = GaugeMetricFamily(
        "moderntensor_peer_score", "Connected peers' scores (min, mean, max).", labels=["stat"]
    )
    for stat in ("min", "mean", "max"):
        score.add_metric([stat], counts[f"score_{stat}"])
    yield score


class RpcMetrics:
    """The node's Prometheus page; without a dispatcher (JSON-RPC off) it has no RPC counters."""

    def __init__(self, service: ChainService, dispatcher: Dispatcher | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ChainCollector(service, dispatcher))

    def render(self) -> bytes:
        return generate_latest(self.registry)
