"""``python -m fuzz [--seconds N | --examples N] [TARGET ...]``: run the fuzz targets.

With ``--seconds`` each target runs in batches of fresh random examples until its time is up
(a failure stops it and prints Hypothesis' shrunk example); with ``--examples`` each runs that
many. HypoFuzz runs them without a bound: ``hypothesis fuzz -- fuzz/test_hypofuzz.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from hypothesis import HealthCheck, settings

from fuzz.targets import TARGETS

BATCH = {"simulation": 1, "consensus": 5}
"""Examples per batch of the slow targets (a batch must fit in a short ``--seconds``)."""


def run(name: str, examples: int) -> None:
    if name == "consensus":  # a stateful machine: its settings are an argument
        TARGETS[name](max_examples=examples)
        return
    # The same target runs batch after batch, and Hypothesis refuses a second settings
    # decorator on one function: its settings attribute is replaced instead.
    test = TARGETS[name]
    test._hypothesis_internal_use_settings = settings(  # type: ignore[attr-defined]
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    test()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=[], metavar="TARGET",
                        help=f"some of: {', '.join(sorted(TARGETS))} (default: all)")  # fmt: skip
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="time per target")
    budget.add_argument("--examples", type=int, default=None, help="examples per target")
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (one of {', '.join(sorted(TARGETS))})")
    logging.disable(logging.CRITICAL)  # the simulation's nodes log every block
    for name in args.targets or sorted(TARGETS):
        started = time.perf_counter()
        done = 0
        if args.seconds is None:
            done = args.examples or 20_000
            run(name, done)
        else:
            batch = BATCH.get(name, 200)
            while time.perf_counter() - started < args.seconds:
                run(name, batch)
                done += batch
        print(f"{name}: {done} examples ok in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
