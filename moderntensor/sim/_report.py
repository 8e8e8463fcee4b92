"""What a simulation says: a progress line while it runs, a summary table at the end, and
the verdict (the problems that make it exit 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.table import Table

from moderntensor.sim._cluster import SimKeys
from moderntensor.sim._run import SimResult
from moderntensor.sim._spec import SimConfig

__all__ = [
    "RECOVERY_SLOTS",
    "judge",
    "last_fault_slot",
    "must_be_slashed",
    "print_summary",
    "progress_line",
]

RECOVERY_SLOTS = 20
"""After the last fault (a partition's end, a restart), finality must move within this many
slots."""


def progress_line(config: SimConfig, out: TextIO) -> Callable[[int, int, int], None]:
    def show(slot: int, finalized: int, messages: int) -> None:
        if slot % 10 == 9 or slot == config.slots - 1:
            end = "\n" if slot == config.slots - 1 else ""
            out.write(f"\rslot {slot + 1}/{config.slots}  finalized {finalized}  "
                      f"messages {messages}{end}")  # fmt: skip
            out.flush()

    return show


def last_fault_slot(config: SimConfig) -> int:
    ends = [p.end for p in config.partitions]
    ends += [c.restart for c in config.crashes if c.restart is not None]
    return max(ends, default=0)


def judge(config: SimConfig, result: SimResult) -> list[str]:
    """Why this run failed (empty: it passed)."""
    problems = []
    if result.violation is not None:
        problems.append(f"violation: {result.violation}")
        return problems
    ids = SimKeys.of(config.seed, config.validators).consensus
    for index in must_be_slashed(config):
        count = result.slashed_by_node.get(index, 0)
        what = config.behaviour_of(index)
        evidence = result.evidence_against.get("0x" + ids[index].address.hex(), 0)
        if what == "doppelganger" and count == 0 and not evidence:
            continue  # it equivocates only when it leads: perhaps not yet
        if count != 1:
            problems.append(f"{what} {index} was slashed {count} times, not once")
    start = last_fault_slot(config)
    if start + RECOVERY_SLOTS < config.slots:
        by_slot = result.finality_by_slot
        if by_slot[start + RECOVERY_SLOTS] <= by_slot[max(0, start - 1)]:
            problems.append(f"no finality within {RECOVERY_SLOTS} slots after the last fault "
                            f"(slot {start})")  # fmt: skip
    return problems


def must_be_slashed(config: SimConfig) -> list[int]:
    """The validators that must end slashed exactly once: equivocators, and doppelgangers
    (once evidence against them is final: they equivocate only when they lead)."""
    return [
        n
        for n in range(config.validators)
        if config.behaviour_of(n) in ("equivocator", "doppelganger")
    ]


def print_summary(config: SimConfig, result: SimResult, problems: list[str]) -> None:
    table = Table(title=f"simulation: {config.validators} validators ({config.byzantine} "
                        f"byzantine), seed {config.seed}")  # fmt: skip
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("slots", result.slots), ("finalized height", result.finalized),
        ("views (highest)", result.views), ("messages delivered", result.messages),
        ("messages dropped", result.dropped), ("evidence in blocks", result.evidence),
        ("validators slashed", sum(1 for n in result.slashed_by_node.values() if n)),
        ("transactions accepted", result.transactions),
        ("invariant checks run", result.checks), ("certificates checked", result.certificates),
        ("honest NOTARIZE checked", result.notarizations),
        ("wall time (s)", result.wall_s),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    console = Console()
    console.print(table)
    console.print(f"digest {result.digest}")
    for problem in problems:
        console.print(f"[red]FAIL[/red] {problem}")
    if not problems:
        console.print("[green]every invariant held[/green]")
