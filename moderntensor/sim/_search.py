"""Hypothesis drives whole simulations: it draws fault schedules (partitions, crashes with
resume/wipe/backup restarts, byzantine validators, loss), runs each, and when one fails
shrinks it to a short story of events that ``--replay`` runs again.

The budget is a number of simulations with ``derandomize=True``: the same search, in the same
order, on every machine and for every seed, so "found within N runs" is a fixed fact. (The
order follows the source of ``search``: editing it draws other schedules.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moderntensor.sim._byzantine import BEHAVIOURS
from moderntensor.sim._report import judge
from moderntensor.sim._run import run_simulation
from moderntensor.sim._spec import Crash, CrashMode, Partition, SimConfig

__all__ = ["Found", "run_once", "schedules", "search"]


@attrs.frozen(slots=True)
class Found:
    config: SimConfig
    problems: list[str]
    runs: int


def run_once(config: SimConfig) -> list[str]:
    """One simulation in a fresh Trio run on a mock clock; its problems ([] if it passed)."""
    with tempfile.TemporaryDirectory(prefix="mt-sim-") as root:
        result = run_simulation(config, Path(root))
    return judge(config, result)


@st.composite
def schedules(
    draw: st.DrawFn, validators: int = 5, slots: int = 30,
    behaviours: tuple[str, ...] = BEHAVIOURS,
) -> SimConfig:  # fmt: skip
    """A fault schedule for ``validators`` over ``slots`` (every fault ends by 2/3 of the run,
    so the liveness check after the last fault applies); byzantine validators take
    ``behaviours`` (shrinking prefers the earlier ones)."""
    last = slots * 2 // 3
    byzantine = draw(st.integers(0, (validators - 1) // 3))
    honest = list(range(validators - byzantine))
    partitions = []
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(1, last - 2))
        end = draw(st.integers(start + 1, last))
        side = draw(st.sets(st.sampled_from(honest), min_size=1, max_size=len(honest) - 1))
        rest = frozenset(honest) - side
        partitions.append(Partition(start, end, (frozenset(side), rest)))
    crashes = []
    for node in draw(st.sets(st.sampled_from(honest), max_size=1)):
        slot = draw(st.integers(1, last - 2))
        restart = draw(st.integers(slot + 1, last))
        mode = draw(st.sampled_from(list(CrashMode)))
        crashes.append(Crash(node, slot, restart, mode))
    return SimConfig(
        validators=validators, byzantine=byzantine, slots=slots,
        seed=draw(st.integers(0, 1000)), drop=draw(st.sampled_from([0.0, 0.02])),
        partitions=tuple(partitions), crashes=tuple(crashes), epoch_length=8,
        behaviours=tuple(draw(st.lists(st.sampled_from(behaviours), min_size=byzantine,
                                       max_size=byzantine))),
    )  # fmt: skip


def search(
    runs: int, *, validators: int = 5, slots: int = 30, budget: int | None = None,
    behaviours: tuple[str, ...] = BEHAVIOURS,
    on_run: Callable[[int, SimConfig, list[str]], None] | None = None,
) -> Found | None:  # fmt: skip
    """Up to ``runs`` drawn schedules, then shrinking if one failed; the smallest failure.

    Each schedule is simulated once (Hypothesis asks again for the same one while it
    shrinks: the answer is remembered). ``budget`` bounds the simulations in all, shrinking
    included: once it is spent, a schedule not simulated yet counts as passing, so the
    shrinker stops at the smallest failure found so far (None: no bound).
    """
    count = 0
    results: dict[SimConfig, list[str]] = {}
    failures: list[tuple[SimConfig, list[str]]] = []

    @settings(max_examples=runs, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.generate, Phase.shrink])  # fmt: skip
    @given(schedules(validators, slots, behaviours))
    def check(config: SimConfig) -> None:
        nonlocal count
        problems = results.get(config)
        if problems is None:
            if budget is not None and count >= budget:
                return
            count += 1
            problems = results[config] = run_once(config)
            if on_run is not None:
                on_run(count, config, problems)
        if problems:
            failures.append((config, problems))
            raise AssertionError(problems[0])

    try:
        check()
    except AssertionError:
        config, problems = failures[-1]  # Hypothesis re-runs the shrunk example last
        return Found(config, problems, count)
    return None
