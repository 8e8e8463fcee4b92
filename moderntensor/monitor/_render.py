"""What the monitor prints: a rich dashboard, or JSON lines (``--json``).

The dashboard is one renderable rebuilt each round from the core (a node table, the network
line, the active alerts and the newest history entries); ``JsonLines`` writes one JSON object
per line: every alert event as it happens and a status line per round (docs/monitor.md).
"""

from __future__ import annotations

import datetime
from typing import IO

import orjson
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._core import MonitorCore
from ._model import AlertEvent, NodeStatus

__all__ = ["HISTORY_SHOWN", "JsonLines", "render_dashboard", "status_line"]

HISTORY_SHOWN = 12
_STYLE = {"healthy": "green", "degraded": "yellow", "down": "bold red", "unknown": "dim"}
_EVENT_STYLE = {"raise": "red", "resolve": "green", "notice": "magenta"}


def _clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%H:%M:%S")


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _opt(value: object, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _node_row(s: NodeStatus) -> list[RenderableType]:
    o = s.last
    p = None if o is None else o.process
    sync = "-"
    if o is not None:
        sync = "synced" if o.sync is None else f"{o.sync.current}/{o.sync.highest}"
    stale = "" if s.up or o is None else " (last seen)"
    return [
        s.name,
        Text(s.status, style=_STYLE.get(s.status, "")),
        _opt(None if o is None else o.head) + stale,
        _opt(None if o is None else o.finalized),
        _opt(None if o is None else o.head - o.finalized),
        _opt(None if o is None else o.peers),
        sync,
        _opt(s.cpu_percent, "{:.1f}%"),
        _bytes(None if p is None else p.rss_bytes),
        _bytes(None if p is None else p.data_dir_bytes),
        _bytes(None if p is None else p.disk_free_bytes),
        Text("; ".join(s.reasons), overflow="fold"),
    ]


def render_dashboard(core: MonitorCore, now: float) -> RenderableType:
    """The whole dashboard for this round."""
    nodes = Table(title=f"ModernTensor network monitor  {_clock(now)} UTC", expand=True)
    for header in ("node", "status", "height", "final", "lag", "peers", "sync", "cpu", "rss",
                   "data", "free", "why"):  # fmt: skip
        nodes.add_column(header, no_wrap=header != "why")
    for s in core.node_statuses():
        nodes.add_row(*_node_row(s))
    net = core.network_status(now)
    line = Text.assemble(
        ("network  ", "bold"),
        f"height {_opt(net.height)}  finalized {_opt(net.finalized)}  ",
        f"block time {_opt(net.block_time_s, '{:.2f} s')}  TPS {_opt(net.tps, '{:.2f}')}  ",
        f"finality lag {_opt(net.finality_lag)} blocks, last finalized ",
        f"{_opt(net.since_finalized_s, '{:.1f} s')} ago  ",
        (f"active alerts {net.active_alerts}", "red" if net.active_alerts else "green"),
    )
    alerts = Table(
        title=f"alerts (newest first; {len(core.history)} of the last "
        f"{core.thresholds.history} kept)",
        expand=True,
    )
    for header in ("time", "event", "kind", "subject", "message"):
        alerts.add_column(header, no_wrap=header != "message")
    for e in list(core.history)[::-1][:HISTORY_SHOWN]:
        a = e.alert
        alerts.add_row(
            _clock(e.time),
            Text(e.event, style=_EVENT_STYLE.get(e.event, "")),
            str(a.kind),
            a.subject,
            a.message,
        )
    active = [f"{a.kind}: {a.message}" for a in core.active.values()]
    active_text = Text("\n".join(active) if active else "no active alerts", style="red")
    return Group(nodes, line, Text("active:", style="bold"), active_text, alerts)


def status_line(core: MonitorCore, now: float) -> dict[str, object]:
    return {
        "type": "status",
        "time": now,
        "nodes": [s.to_json() for s in core.node_statuses()],
        "network": core.network_status(now).to_json(),
    }


class JsonLines:
    """One JSON object per line on ``out``, flushed at once (a pipe reader sees each)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, doc: dict[str, object]) -> None:
        self.out.write(orjson.dumps(doc) + b"\n")
        self.out.flush()

    def alert(self, event: AlertEvent) -> None:
        self.write(event.to_json())
