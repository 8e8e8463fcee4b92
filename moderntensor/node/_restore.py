"""After a restart: execute again the blocks the consensus journal kept above the head, so the
chain has every block this node voted for before the crash (the driver does this first)."""

from __future__ import annotations

import logging

import trio

from moderntensor import offload
from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain, InvalidBlock
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._logging import event

__all__ = ["restore_blocks"]

log = logging.getLogger("moderntensor.node")


async def restore_blocks(
    chain: Chain, journal: ConsensusJournal, chain_lock: trio.CapacityLimiter
) -> list[Block]:
    """Execute the journal's pending blocks above the head again, lowest first; returns them
    (a block that no longer executes is dropped from the journal, with a warning)."""
    head = chain.head
    blocks = journal.stored_blocks()
    journal.forget_blocks(b.hash for b in blocks if b.number <= head.number)
    restored: list[Block] = []
    for block in blocks:
        if block.number <= head.number or chain.get_header(block.hash) is not None:
            continue
        try:
            await offload.run_sync(chain.execute_block, block, limiter=chain_lock)
        except InvalidBlock as exc:  # its parent lost, or rules changed under it
            event(log, logging.WARNING, "stored block dropped", number=block.number,
                  block="0x" + block.hash.hex(), reason=exc.reason)  # fmt: skip
            journal.forget_blocks([block.hash])
            continue
        restored.append(block)
    if restored:
        event(log, logging.INFO, "pending blocks restored", count=len(restored),
              head=head.number)  # fmt: skip
    return restored
