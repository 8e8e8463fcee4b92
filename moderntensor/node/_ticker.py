"""The slot ticker: the one task that sleeps on the clock.

It wakes the consensus driver at every slot start (the PoS heartbeat) and at the deadline the
consensus core last asked for (a :class:`~moderntensor.consensus.SetTimer`), whichever comes
first. The driver moves the deadline with :meth:`Ticker.set_deadline`, a plain call that never
blocks, so the two tasks cannot wait on each other: ticks flow one way over a bounded channel.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from moderntensor.consensus import ConsensusConfig, compute_slot_at, compute_slot_start_ms

__all__ = ["Tick", "Ticker"]


@attrs.frozen(slots=True)
class Tick:
    """Time to look at the clock: ``now_ms`` is when the ticker woke, ``slot`` the slot then."""

    now_ms: int
    slot: int


class Ticker:
    """Sleeps until the next slot start or the core's deadline, then sends a :class:`Tick`."""

    def __init__(self, config: ConsensusConfig, clock: Callable[[], int]) -> None:
        self.config = config
        self.clock = clock
        self.deadline_ms: int | None = None
        self.ticks = 0
        self._replan = trio.Event()

    def slot_at(self, now_ms: int) -> int:
        """The slot that contains ``now_ms`` (``chain.timing``)."""
        return compute_slot_at(self.config, now_ms)

    def next_slot_start(self, now_ms: int) -> int:
        """The first slot boundary strictly after ``now_ms`` (genesis, before it)."""
        if now_ms < self.config.genesis_time_ms:
            return self.config.genesis_time_ms
        return compute_slot_start_ms(self.config, compute_slot_at(self.config, now_ms) + 1)

    def set_deadline(self, deadline_ms: int | None) -> None:
        """Wake at ``deadline_ms`` (replacing the previous one); None clears it."""
        self.deadline_ms = deadline_ms
        self._replan.set()

    async def run(
        self,
        ticks: trio.MemorySendChannel[Tick],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Tick until cancelled (a long-lived nursery task)."""
        task_status.started()
        while True:
            now = self.clock()
            wake = self.next_slot_start(now)
            if self.deadline_ms is not None:
                wake = min(wake, self.deadline_ms)
            self._replan = trio.Event()
            with trio.move_on_after(max(0, wake - now) / 1000):
                await self._replan.wait()
                continue  # the deadline moved: plan again
            now = self.clock()
            if self.deadline_ms is not None and self.deadline_ms <= now:
                self.deadline_ms = None  # fired; the core sets the next one
            self.ticks += 1
            await ticks.send(Tick(now, self.slot_at(now)))
