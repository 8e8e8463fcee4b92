"""``python -m moderntensor.sim``: a reproducible multi-node simulation with faults.

    python -m moderntensor.sim --validators 7 --byzantine 2 --slots 300 --seed 1 --json

Exit status: 0 when every invariant held (and every equivocator was slashed exactly once),
1 when one broke (the first violation is printed), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio
import trio.testing

from moderntensor.node._logging import setup_logging
from moderntensor.sim._byzantine import BEHAVIOURS
from moderntensor.sim._report import judge, print_summary, progress_line
from moderntensor.sim._run import simulate
from moderntensor.sim._spec import SimConfig, SpecError, parse_crash, parse_partition
from moderntensor.sim._trio import deterministic_scheduling

DESCRIPTION = "A reproducible multi-node simulation with faults (real nodes, virtual time)."


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m moderntensor.sim", description=__doc__.split("\n")[0]
    )
    p.add_argument("--validators", type=int, default=4)
    p.add_argument("--byzantine", type=int, default=0)
    p.add_argument(
        "--behaviour",
        action="append",
        default=[],
        choices=BEHAVIOURS,
        help="byzantine behaviour, one per byzantine validator in turn (default: equivocator); "
        "with --search: the behaviours drawn (default: all)",
    )
    p.add_argument("--slots", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slot-ms", type=int, default=1000)
    p.add_argument("--epoch-length", type=int, default=16)
    p.add_argument("--latency", type=int, default=50, metavar="MS")
    p.add_argument("--jitter", type=int, default=20, metavar="MS")
    p.add_argument("--drop", type=float, default=0.0, metavar="P")
    p.add_argument("--duplicate", type=float, default=0.0, metavar="P")
    p.add_argument("--reorder", action="store_true")
    p.add_argument("--partition", action="append", default=[], metavar="START-END:a,b|c,d")
    p.add_argument("--crash", action="append", default=[], metavar="NODE:SLOT[:RESTART[:MODE]]")
    p.add_argument("--tx-rate", type=float, default=0.0, metavar="TX/S")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--replay", metavar="FILE", help="run the simulation a replay file describes")
    p.add_argument("--search", type=int, metavar="RUNS",
                   help="let Hypothesis draw up to RUNS fault schedules (--validators, --slots) "
                        "and shrink the first failure")  # fmt: skip
    p.add_argument("--save", metavar="FILE", help="with --search: write the failure to replay")
    p.add_argument("--budget", type=int, metavar="SIMS",
                   help="with --search: most simulations, shrinking included")  # fmt: skip
    p.add_argument("--log-level", default="CRITICAL", help="the nodes' log level (default: none)")
    return p


def config_from(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        validators=args.validators, byzantine=args.byzantine, slots=args.slots, seed=args.seed,
        latency_ms=args.latency, jitter_ms=args.jitter, drop=args.drop,
        duplicate=args.duplicate, reorder=args.reorder,
        partitions=tuple(parse_partition(s) for s in args.partition),
        crashes=tuple(parse_crash(s) for s in args.crash), tx_rate=args.tx_rate,
        slot_ms=args.slot_ms, epoch_length=args.epoch_length, behaviours=tuple(args.behaviour),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":  # set iteration order is part of a run
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(
            sys.executable, [sys.executable, "-m", "moderntensor.sim", *(argv or sys.argv[1:])]
        )
    args = _parser().parse_args(argv)
    if args.log_level.upper() == "CRITICAL":
        logging.disable(logging.CRITICAL)  # the nodes log every block: quiet unless asked
    else:
        setup_logging(args.log_level.lower())
    if args.search is not None:
        return _search(args)
    try:
        config = config_from(args) if args.replay is None else _load(Path(args.replay))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replay is not None and not args.json:
        print("\n".join(config.events()))
    show = None if args.json else progress_line(config, sys.stderr)
    clock = trio.testing.MockClock(autojump_threshold=0)
    with (
        tempfile.TemporaryDirectory(prefix="mt-sim-") as root,
        deterministic_scheduling(config.seed),
    ):
        result = trio.run(partial(simulate, progress=show), config, Path(root), clock=clock)
    problems = judge(config, result)
    if args.json:
        print(json.dumps({**result.as_json(), "problems": problems}))
    else:
        print_summary(config, result, problems)
    return 1 if problems else 0


def _load(path: Path) -> SimConfig:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"replay file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"replay file {path}: expected a JSON object")
    return SimConfig.from_json(doc)


def _search(args: argparse.Namespace) -> int:
    from moderntensor.sim._search import search  # Hypothesis is imported only here

    def show(n: int, config: SimConfig, problems: list[str]) -> None:
        verdict = "FAIL " + problems[0] if problems else "ok"
        print(f"run {n}: {len(config.events())} events: {verdict}", file=sys.stderr)

    behaviours = tuple(args.behaviour) or BEHAVIOURS
    found = search(args.search, validators=args.validators, slots=args.slots,
                   budget=args.budget, behaviours=behaviours, on_run=show)  # fmt: skip
    if found is None:
        print(f"no failure in {args.search} simulations")
        return 0
    print(f"failure found after {found.runs} simulations (with shrinking), as:")
    print("\n".join(found.config.events()))
    for problem in found.problems:
        print(f"FAIL {problem}")
    if args.save:
        Path(args.save).write_text(json.dumps(found.config.to_json(), indent=1) + "\n")
        print(f"replay: python -m moderntensor.sim --replay {args.save}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
