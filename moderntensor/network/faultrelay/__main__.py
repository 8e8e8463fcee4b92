"""``python -m moderntensor.network.faultrelay``: run a fault-injecting relay by hand.

Example (node b listens on 30304; node a's bootstrap names 127.0.0.1:9001 and b's peer id)::

    python -m moderntensor.network.faultrelay \\
        --route a@127.0.0.1:9001=b@127.0.0.1:30304 --latency-ms 50 --jitter-ms 20 --drop 0.01

Commands on standard input, one a line, change the faults while it runs:

    partition a,b c,d      cut every node of one group off from every node of the others
    block a b              cut messages from a to b only
    heal                   remove every partition
    stats                  print the counters
    quit                   stop (so does Ctrl-C or the end of input)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import attrs
import trio

from moderntensor.network.faultrelay._model import LinkConfig
from moderntensor.network.faultrelay._relay import FaultRelay, parse_route


class _FieldsFormatter(logging.Formatter):
    """The structured fields of ``event(...)`` lines as ``key=value`` after the message."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None) or {}
        return " ".join([line, *(f"{k}={v}" for k, v in fields.items())])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m moderntensor.network.faultrelay",
        description="Relay WebSocket connections with latency, jitter, loss, duplication and "
        "partitions (commands on stdin: partition A,B C,D | block A B | heal | stats | quit).",
    )
    parser.add_argument(
        "--route",
        action="append",
        required=True,
        type=parse_route,
        metavar="[SRC@]HOST:PORT=[DST@]HOST:PORT",
        help="listen on the first address, relay to the second (repeatable)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="plus a uniform delay in [0, jitter]")  # fmt: skip
    parser.add_argument("--drop", type=float, default=0.0, help="loss probability per message")
    parser.add_argument("--duplicate", type=float, default=0.0)
    parser.add_argument("--reorder", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    return parser


def run_command(relay: FaultRelay, line: str) -> str | None:
    """Carry out one stdin command; returns what to print, or None to stop.

    Raises:
        ValueError: an unknown or malformed command.
    """
    words = line.split()
    if not words:
        return ""
    match words:
        case ["partition", *groups] if len(groups) >= 2:
            relay.partition([g.split(",") for g in groups])
            return "partitioned"
        case ["block", src, dst]:
            relay.block(src, dst)
            return "blocked"
        case ["heal"]:
            relay.heal()
            return "healed"
        case ["stats"]:
            return str(attrs.asdict(relay.statistics()))
        case ["quit"]:
            return None
    raise ValueError(f"unknown command {line.strip()!r}")


async def _commands(relay: FaultRelay, nursery: trio.Nursery) -> None:
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            break
        try:
            answer = run_command(relay, line)
        except ValueError as exc:
            answer = f"error: {exc}"
        if answer is None:
            break
        if answer:
            print(answer, flush=True)
    nursery.cancel_scope.cancel()


async def _main(relay: FaultRelay) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        nursery.start_soon(_commands, relay, nursery)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_FieldsFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        config = LinkConfig(
            latency_s=args.latency_ms / 1000, jitter_s=args.jitter_ms / 1000, loss=args.drop,
            duplicate=args.duplicate, reorder=args.reorder,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    relay = FaultRelay(args.route, config, seed=args.seed)
    failed: BaseException | None = None
    try:
        trio.run(_main, relay)
    except* KeyboardInterrupt:
        pass
    except* OSError as group:  # a listen address that cannot be bound
        failed = group.exceptions[0]
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    print(attrs.asdict(relay.statistics()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
