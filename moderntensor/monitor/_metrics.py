"""The monitor's own figures as Prometheus metrics, on a private registry.

Served by ``--metrics-port`` (the node's metrics listener, reused) so that Prometheus and
Alertmanager can watch what the monitor sees; names start with ``moderntensor_monitor_``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ._core import MonitorCore
from ._model import AlertEvent, AlertKind

__all__ = ["STATUSES", "MonitorMetrics"]

STATUSES = ("healthy", "degraded", "down", "unknown")
_P = "moderntensor_monitor_"


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def node_gauge(name: str, doc: str) -> Gauge:
            return Gauge(_P + name, doc, ["node"], registry=r)

        self.up = node_gauge("node_up", "1 if the node answered the last round.")
        self.status = Gauge(
            _P + "node_status", "1 for the node's current status.", ["node", "status"], registry=r
        )
        self.height = node_gauge("node_height", "The node's head block number.")
        self.finalized = node_gauge("node_finalized", "The node's finalized block number.")
        self.peers = node_gauge("node_peers", "The node's connected peers.")
        self.lag = node_gauge("node_finality_lag_blocks", "The node's head - finalized.")
        self.behind = node_gauge("node_height_lag_blocks", "Blocks behind the best node's head.")
        self.cpu = node_gauge("node_cpu_percent", "CPU use of the node process (100 = 1 core).")
        self.rss = node_gauge("node_memory_rss_bytes", "Resident memory of the node process.")
        self.disk = node_gauge("node_data_dir_bytes", "Bytes of the node's data directory.")
        self.free = node_gauge("node_disk_free_bytes", "Free bytes on the data dir's disk.")
        self.block_time = Gauge(_P + "block_time_seconds", "Seconds per block.", registry=r)
        self.tps = Gauge(_P + "tps", "Transactions per second in recent blocks.", registry=r)
        self.net_lag = Gauge(
            _P + "finality_lag_blocks", "Head - finalized on the reference node.", registry=r
        )
        self.since_final = Gauge(
            _P + "seconds_since_finalized", "Seconds since a new block was finalized.", registry=r
        )
        self.alerts = Counter(
            _P + "alerts_fired", "Alerts raised (and one-off notices), by kind.", ["kind"],
            registry=r,
        )  # fmt: skip
        self.active = Gauge(_P + "alerts_active", "Alerts active now, by kind.", ["kind"],
                            registry=r)  # fmt: skip
        for kind in AlertKind:
            self.alerts.labels(str(kind))
            self.active.labels(str(kind)).set(0)

    def update(self, core: MonitorCore, events: Iterable[AlertEvent], now: float) -> None:
        for e in events:
            if e.event != "resolve":
                self.alerts.labels(str(e.alert.kind)).inc()
        counts = {kind: 0 for kind in AlertKind}
        for kind, _ in core.active:
            counts[kind] += 1
        for kind, n in counts.items():
            self.active.labels(str(kind)).set(n)
        best = max((s.last.head for s in core.node_statuses() if s.last), default=0)
        for s in core.node_statuses():
            self.up.labels(s.name).set(1 if s.up else 0)
            for status in STATUSES:
                self.status.labels(s.name, status).set(1 if s.status == status else 0)
            o = s.last
            if o is None:
                continue
            self.height.labels(s.name).set(o.head)
            self.finalized.labels(s.name).set(o.finalized)
            self.peers.labels(s.name).set(o.peers)
            self.lag.labels(s.name).set(o.head - o.finalized)
            self.behind.labels(s.name).set(max(0, best - o.head))
            if s.cpu_percent is not None:
                self.cpu.labels(s.name).set(s.cpu_percent)
            p = o.process
            if p is not None:
                self.rss.labels(s.name).set(p.rss_bytes)
                if p.data_dir_bytes is not None:
                    self.disk.labels(s.name).set(p.data_dir_bytes)
                if p.disk_free_bytes is not None:
                    self.free.labels(s.name).set(p.disk_free_bytes)
        net = core.network_status(now)
        for gauge, value in (
            (self.block_time, net.block_time_s),
            (self.tps, net.tps),
            (self.net_lag, net.finality_lag),
            (self.since_final, net.since_finalized_s),
        ):
            if value is not None:
                gauge.set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
