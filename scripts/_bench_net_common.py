"""Shared pieces of ``scripts/bench_net.py``: sender keys, pre-signed transfers, percentiles,
the machine line and the result table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey, keccak256

GWEI = 10**9
RECIPIENT = b"\x77" * 20
console = Console()


def sender_key(i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"bench-net-sender" + i.to_bytes(4, "big")))


def sign_transfers(
    chain_id: int, senders: Sequence[PrivateKey], per_sender: int, first_nonce: int = 0
) -> list[list[bytes]]:
    """Raw signed transfers, by nonce round: ``rounds[n]`` holds nonce ``first_nonce + n`` of
    every sender (so any prefix of the rounds is gap-free for every sender)."""
    rounds = []
    for n in range(first_nonce, first_nonce + per_sender):
        row = []
        for k in senders:
            tx = DynamicFeeTransaction(
                chain_id=chain_id, nonce=n, max_priority_fee_per_gas=GWEI,
                max_fee_per_gas=20 * GWEI, gas=21_000, to=RECIPIENT, value=1,
            )  # fmt: skip
            row.append(sign_transaction(tx, k).raw)
        rounds.append(row)
    return rounds


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        text = f"{value:,.3f}" if isinstance(value, float) and value < 100 else (
            f"{value:,.0f}" if isinstance(value, float | int) else str(value))  # fmt: skip
        table.add_row(name, text)
    console.print(table)
    console.print(f"[dim]{machine()}[/dim]")
