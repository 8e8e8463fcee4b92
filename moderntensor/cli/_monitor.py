"""``moderntensor monitor``: watch a set of nodes, show a dashboard, raise alerts
(docs/monitor.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from moderntensor.cli import CLIError
from moderntensor.cli._signals import stop_on_signal

__all__ = ["register"]

_DESCRIPTION = """\
Poll each node's JSON-RPC (mt_status, eth_syncing, GET /health; blocks, leader schedule and
evidence from the most advanced node) every --interval seconds and show each node's status
(healthy / degraded / down), height, finalized, peers, sync, CPU/memory/disk, the network's
block time, TPS and finality lag, and alerts: node_down, node_unhealthy, finality_lag,
chain_stalled, missed_slots, validator_jailed, slashing. With --json: one JSON object per
line on stdout (alert events as they happen, a status line per round) and no dashboard.
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def register(groups: Any) -> None:
    p = groups.add_parser(
        "monitor",
        help="watch nodes: dashboard, alerts, JSON lines, webhook, metrics",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--nodes", nargs="+", metavar="URL", help="node JSON-RPC URLs")
    which.add_argument(
        "--testnet", type=Path, metavar="DIR", help="a `testnet init` directory (its nodes)"
    )
    p.add_argument("--interval", type=_positive, default=2.0, metavar="S",
                   help="seconds between rounds (default 2)")  # fmt: skip
    p.add_argument("--timeout", type=_positive, default=None, metavar="S",
                   help="per-request timeout (default: the interval, 1 to 5 s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="JSON lines on stdout, no dashboard")
    p.add_argument("--history", type=_positive_int, default=100, metavar="N",
                   help="alerts kept in the history (default 100)")  # fmt: skip
    p.add_argument("--webhook", metavar="URL", help="POST each alert event as JSON here")
    p.add_argument("--metrics-port", type=_count, metavar="N",
                   help="serve the monitor's figures at http://ADDR:N/metrics")  # fmt: skip
    p.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR")
    p.add_argument("--rounds", type=_positive_int, metavar="N", help="stop after N rounds")
    t = p.add_argument_group("thresholds")
    t.add_argument(
        "--down-after",
        type=_positive,
        default=10.0,
        metavar="S",
        help="a node is down after S seconds without an answer (default 10)",
    )
    t.add_argument(
        "--stall-after",
        type=_positive,
        default=30.0,
        metavar="S",
        help="chain stalled: no new finalized block for S seconds (default 30)",
    )
    t.add_argument(
        "--max-finality-lag",
        type=_count,
        default=32,
        metavar="N",
        help="head - finalized above N blocks: alert (default 32)",
    )
    t.add_argument(
        "--max-height-lag",
        type=_count,
        default=16,
        metavar="N",
        help="degraded: N blocks behind the best node (default 16)",
    )
    t.add_argument(
        "--min-peers",
        type=_count,
        default=None,
        metavar="N",
        help="degraded below N peers (default 1 with several nodes, else 0)",
    )
    t.add_argument(
        "--missed-slots",
        type=_positive_int,
        default=1,
        metavar="N",
        help="alert when a validator missed N of its slots (default 1)...",
    )
    t.add_argument("--missed-window", type=_positive_int, default=64, metavar="SLOTS",
                   help="...within the last SLOTS checked slots (default 64)")  # fmt: skip
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_run)


class _JsonOutput:
    def __init__(self) -> None:
        from moderntensor.monitor import JsonLines

        self.lines = JsonLines(sys.stdout.buffer)

    def alerts(self, core: Any, events: Sequence[Any], now: float) -> None:
        for e in events:
            self.lines.alert(e)

    def round(self, core: Any, now: float) -> None:
        from moderntensor.monitor import status_line

        self.lines.write(status_line(core, now))


class _DashboardOutput:
    def __init__(self, live: Any) -> None:
        self.live = live

    def alerts(self, core: Any, events: Sequence[Any], now: float) -> None:
        pass  # shown in the dashboard's history

    def round(self, core: Any, now: float) -> None:
        from moderntensor.monitor import render_dashboard

        self.live.update(render_dashboard(core, now), refresh=True)


def _settings(args: argparse.Namespace) -> Any:
    from moderntensor.monitor import (
        MonitorSettings,
        MonitorTargetError,
        Thresholds,
        targets_from_testnet,
        targets_from_urls,
    )

    try:
        if args.nodes:
            targets = targets_from_urls(args.nodes)
        else:
            targets = targets_from_testnet(args.testnet)
        thresholds = Thresholds(
            down_after=args.down_after, stall_after=args.stall_after,
            max_finality_lag=args.max_finality_lag, max_height_lag=args.max_height_lag,
            min_peers=args.min_peers, missed_slots=args.missed_slots,
            missed_window=args.missed_window, history=args.history,
        )  # fmt: skip
    except (MonitorTargetError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if args.webhook is not None:
        from moderntensor.monitor._http import parse_http_url

        try:
            parse_http_url(args.webhook)
        except ValueError as exc:
            raise CLIError(f"--webhook {exc}") from None
    timeout = args.timeout if args.timeout is not None else min(5.0, max(1.0, args.interval))
    return MonitorSettings(
        tuple(targets), thresholds, args.interval, timeout, args.webhook,
        args.metrics_addr, args.metrics_port,
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from moderntensor.monitor import run_monitor
    from moderntensor.node._logging import setup_logging

    settings = _settings(args)

    async def main(output: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, nursery.cancel_scope)
            await run_monitor(settings, output, rounds=args.rounds)
            nursery.cancel_scope.cancel()

    broken: list[BaseException] = []
    try:
        if args.json:
            setup_logging("info", args.log_format)
            trio.run(main, _JsonOutput())
        else:
            from rich.live import Live

            with Live(auto_refresh=False, redirect_stderr=True) as live:
                setup_logging("warning", args.log_format)  # into the Live's stderr proxy
                trio.run(main, _DashboardOutput(live))
    except* BrokenPipeError as group:
        broken.extend(group.exceptions)  # the reader of --json went away: exit 0
    except* OSError as group:
        raise CLIError(f"--metrics-port: {group.exceptions[0]}") from None
    except* ValueError as group:
        raise CLIError(str(group.exceptions[0])) from None
    return 0
