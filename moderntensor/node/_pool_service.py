"""The mempool service: keeps the pool in step with the chain, off the consensus path.

After every commit the driver sends the new head here (a bounded channel; only the newest
head matters, so a backlog collapses into one). Re-validation reads every held sender's
account at the new head: those reads (trie lookups in RocksDB) run in a worker thread, and
the pure pool then applies them on the event loop without I/O. Submissions from RPC go
straight to the pool (one cheap call each); batches have their senders recovered in a worker
thread first (see ``ChainService.submit_raw_transactions``). At each head the pool's clock is
advanced too, which expires queued transactions past their lifetime.
"""

from __future__ import annotations

import logging

import trio

from moderntensor import offload
from moderntensor.chain.blocks import Header
from moderntensor.chain.chain import Chain
from moderntensor.mempool import AccountSnapshot, Mempool, read_accounts
from moderntensor.node._logging import event
from moderntensor.service import ChainService

__all__ = ["MempoolService"]

log = logging.getLogger("moderntensor.node")

SLICE = 256
"""Senders re-validated per event-loop step (about 2 ms of work)."""


class MempoolService:
    """Re-validates the pool on each new head; ``run`` is a long-lived nursery task."""

    def __init__(self, chain: Chain, pool: Mempool, service: ChainService) -> None:
        self.chain = chain
        self.pool = pool
        self.service = service
        self.revalidations = 0
        self.dropped = 0
        self.head_number = chain.head.number  # the head the pool was last re-validated at
        self._advanced = trio.Event()

    async def run(
        self,
        heads: trio.MemoryReceiveChannel[Header],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Follow new heads until cancelled; the pool's clock (queue lifetimes) is set now
        and at each head."""
        self.pool.expire(trio.current_time())
        task_status.started()
        async for head in heads:
            while True:  # skip to the newest head waiting: re-validating older ones is moot
                try:
                    head = heads.receive_nowait()
                except trio.WouldBlock:
                    break
            await self.revalidate(head)

    async def caught_up(self, number: int) -> None:
        """Return once the pool has been re-validated at height ``number`` or later (the
        producer waits for this, so that a block does not offer what its parent included)."""
        while self.head_number < number:
            await self._advanced.wait()

    async def revalidate(self, head: Header) -> None:
        """Drop what ``head`` made stale or unaffordable; promote what it unblocked.

        Slices of :data:`SLICE` senders with a checkpoint between them: the pool stays
        consistent at every step (senders not yet re-read keep the previous head's numbers,
        which is what they had before this head arrived).
        """
        state = self.chain.state_at(head)
        senders = self.pool.senders()
        accounts = await offload.run_sync(read_accounts, state, senders)
        self.pool.set_head(AccountSnapshot(accounts, state), self.service.next_base_fee())
        senders = self.pool.senders()  # again: senders admitted during the read are read now
        dropped = []
        for start in range(0, len(senders), SLICE):
            await trio.sleep(0)
            dropped += self.pool.revalidate(senders[start : start + SLICE])
        dropped += self.pool.expire(trio.current_time())
        self.revalidations += 1
        self.dropped += len(dropped)
        self.head_number = max(self.head_number, head.number)
        self._advanced.set()
        self._advanced = trio.Event()
        if dropped:
            event(log, logging.DEBUG, "pool re-validated", head=head.number,
                  dropped=len(dropped), held=len(self.pool))  # fmt: skip
