"""``python -m fuzz [--examples N] [TARGET ...]``: run the fuzz targets with many examples."""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, settings

from fuzz.targets import TARGETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="*", choices=[*sorted(TARGETS), []], default=[])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    for name in args.targets or sorted(TARGETS):
        started = time.perf_counter()
        run = settings(
            max_examples=args.examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )(TARGETS[name])
        run()
        print(f"{name}: {args.examples} examples ok in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
