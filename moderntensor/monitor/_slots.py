"""Missed slots: which validator led a slot in which no block was made (a pure core).

Block headers over JSON-RPC carry the proposer (``miner``, the validator's owner address) and
the timestamp (the slot's start in whole seconds) but not the slot. So slots are checked per
wall-clock second: the slots that start in second ``t`` were led by the validators the leader
schedule (``mt_leaderSchedule``) named; the finalized blocks with timestamp ``t`` were made by
their miners. A validator's misses in that second are its led slots there minus its blocks
there (never negative). With slots of a second or more each second holds at most one slot,
so this is exact; with shorter slots it is exact per second (which slot in the second was
missed is not known). Only finalized blocks are counted, so a reorg cannot fake a miss, and a
second is checked only once every slot starting in it is at or before the finalized slot.

Slots whose leader was never seen in a schedule are not counted (no false misses after a gap);
the schedule may be wrong for slots beyond an epoch's end, which on a testnet (900-block
epochs) concerns few slots.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping

from moderntensor.chain.timing import compute_slot_start_ms

from ._model import BlockFacts

__all__ = ["SlotBook"]

MAX_LEADERS = 8192
MAX_SECONDS_PER_CHECK = 4096


def compute_first_slot_from(genesis_ms: int, slot_ms: int, at_ms: int) -> int:
    """The first slot starting at or after ``at_ms``."""
    return max(0, -(-(at_ms - genesis_ms) // slot_ms))


class SlotBook:
    """Leaders of upcoming slots, recent finalized blocks per second, misses per leader."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.leaders: dict[int, str] = {}
        self.blocks: dict[int, Counter[str]] = {}
        self.checked: int | None = None  # every second <= this was checked
        self.horizon_slot = -1  # the last slot of the newest checked second
        self.misses: dict[str, deque[tuple[int, int, int]]] = {}  # id -> (last slot, led, missed)

    def add_schedule(self, entries: Iterable[tuple[int, str]]) -> None:
        for slot, leader in entries:
            if slot > self.horizon_slot:
                self.leaders[slot] = leader
        if len(self.leaders) > MAX_LEADERS:  # keep the nearest slots
            for slot in sorted(self.leaders)[MAX_LEADERS:]:
                del self.leaders[slot]

    def add_blocks(self, blocks: Iterable[BlockFacts], gap: bool) -> None:
        """Finalized blocks in order; ``gap``: blocks before these were not all seen, so the
        second of the first one is incomplete and checking starts after it."""
        for i, block in enumerate(blocks):
            if i == 0 and (gap or self.checked is None):
                self.checked = max(self.checked or 0, block.timestamp)
                self.blocks = {t: c for t, c in self.blocks.items() if t > self.checked}
            if self.checked is not None and block.timestamp > self.checked:
                self.blocks.setdefault(block.timestamp, Counter())[block.miner.lower()] += 1

    def check(
        self,
        through_slot: int,
        genesis_time: int,
        slot_ms: int,
        miner_ids: Mapping[str, str],
    ) -> dict[str, tuple[int, int]]:
        """Check every complete second up to ``through_slot`` (the finalized slot of the
        blocks given so far); answers each leader's (missed, led) within the window of the
        last ``window`` slots. ``miner_ids`` maps lower-case owner addresses to leader ids."""
        if self.checked is not None and slot_ms > 0:
            genesis_ms = genesis_time * 1000
            end_ms = compute_slot_start_ms(genesis_ms, slot_ms, through_slot + 1)
            last = end_ms // 1000 - 1  # the newest second all of whose slots are final
            first = max(self.checked + 1, last - MAX_SECONDS_PER_CHECK + 1)
            for second in range(first, last + 1):
                self._check_second(second, genesis_ms, slot_ms, miner_ids)
            if last > self.checked:
                self.checked = last
                self.blocks = {t: c for t, c in self.blocks.items() if t > last}
                self.leaders = {s: v for s, v in self.leaders.items() if s > self.horizon_slot}
        return self._window()

    def _check_second(
        self, second: int, genesis_ms: int, slot_ms: int, miner_ids: Mapping[str, str]
    ) -> None:
        lo = compute_first_slot_from(genesis_ms, slot_ms, second * 1000)
        hi = compute_first_slot_from(genesis_ms, slot_ms, (second + 1) * 1000)
        if hi <= lo:
            return
        self.horizon_slot = hi - 1
        led = Counter(self.leaders[s] for s in range(lo, hi) if s in self.leaders)
        made: Counter[str] = Counter()
        for miner, n in self.blocks.get(second, Counter()).items():
            made[miner_ids.get(miner, miner)] += n
        for leader, count in led.items():
            missed = max(0, count - made[leader])
            self.misses.setdefault(leader, deque()).append((hi - 1, count, missed))

    def _window(self) -> dict[str, tuple[int, int]]:
        oldest = self.horizon_slot - self.window
        out: dict[str, tuple[int, int]] = {}
        for leader, entries in list(self.misses.items()):
            while entries and entries[0][0] <= oldest:
                entries.popleft()
            if not entries:
                del self.misses[leader]
                continue
            out[leader] = (sum(e[2] for e in entries), sum(e[1] for e in entries))
        return out
