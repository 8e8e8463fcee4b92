"""The slot ticker: the one task that sleeps on the clock.

It wakes the consensus driver at every slot start (the PoS heartbeat) and at the deadline the
consensus core last asked for (a :class:`~moderntensor.consensus.SetTimer`), whichever comes
first. The driver moves the deadline with :meth:`Ticker.set_deadline`, a plain call that never
blocks, so the two tasks cannot wait on each other: ticks flow one way over a bounded channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs
import trio

from moderntensor.consensus import ConsensusConfig, compute_slot_at, compute_slot_start_ms
from moderntensor.node._logging import event

__all__ = ["Tick", "Ticker", "compute_countdown_wait_ms", "log_genesis_countdown"]

log = logging.getLogger("moderntensor.node")


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


def compute_countdown_wait_ms(remaining_ms: int) -> int:
    """How long until the next "waiting for genesis" line: at each whole minute while more
    than a minute remains, then every 10 s (a node started two minutes early logs 7 lines).
    A clock half a second off a mark counts as on it, so a sleep that ends a little early
    does not add a line."""
    ahead = remaining_ms - 500
    step = 60_000 if ahead > 60_000 else 10_000
    return remaining_ms - max(0, ahead // step * step)


async def log_genesis_countdown(genesis_ms: int, clock: Callable[[], int]) -> None:
    """Log how long until genesis, so a node started early is not silent until its first
    block; returns at genesis (the ticker sleeps on its own, this task only reports)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(genesis_ms // 1000))
    while (remaining := genesis_ms - clock()) > 0:
        event(log, logging.INFO, "waiting for genesis", genesis_time=at,
              in_s=max(1, round(remaining / 1000)))  # fmt: skip
        await trio.sleep(compute_countdown_wait_ms(remaining) / 1000)
