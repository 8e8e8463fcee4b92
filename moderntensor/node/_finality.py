"""Committing finalized blocks: the newest finalized block and every executed block between it
and the committed head, oldest first, each in one write batch with its finalization
certificate (review L1), in a worker thread under the chain lock.

A finalized block may not be committable yet: the core can finalize a block this node never
received (its votes and certificates arrived, the block did not). Then the walk from the
block down to the head stops at the first block missing here; the driver fetches it, and
commits once it arrives (review M3). Meanwhile the newest *other* finalized block whose path
is all here is committed: a node range-syncing across an epoch boundary learns of the
network's newest certificate (now verifiable) hundreds of blocks before it has the blocks up
to it, and must go on committing the ranges it proves final (they would wait for ever
otherwise: the fetch walks back at most a few hundred blocks).
"""

from __future__ import annotations

import trio

from moderntensor import offload
from moderntensor.chain.blocks import Header
from moderntensor.chain.chain import Chain, ExecutedBlock
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.consensus import BlockRef, Certificate
from moderntensor.node._journal import ConsensusJournal

__all__ = ["FinalityCommitter", "FinalityConflict"]


class FinalityConflict(Exception):
    """A finalized block does not extend the committed chain: more than a third of the stake
    equivocated, or a bug. The node stops rather than follow either side."""


class FinalityCommitter:
    """What consensus finalized and the node has not committed yet, and how it gets there."""

    def __init__(
        self, chain: Chain, journal: ConsensusJournal, chain_lock: trio.CapacityLimiter
    ) -> None:
        self.chain = chain
        self.journal = journal
        self.chain_lock = chain_lock  # one worker thread at a time touches the chain
        self.target: BlockRef | None = None  # the newest finalized block not committed yet
        self._certs: dict[bytes, Certificate] = {}  # its finalization, and older ones

    def add(self, block: BlockRef, certificate: Certificate) -> None:
        """Consensus finalized ``block`` (``certificate`` proves it)."""
        self._certs[block.hash] = certificate
        if self.target is None or block.slot > self.target.slot:
            self.target = block

    async def commit(self) -> tuple[list[ExecutedBlock], bytes | None]:
        """Commit as far as the blocks here allow.

        Returns:
            The blocks committed (oldest first) and the hash of the first block missing on
            the way to the target (None once the target is committed).

        Raises:
            FinalityConflict: the target does not descend from the committed head.
        """
        target = self.target
        if target is None:
            return [], None
        committed, gap = await offload.run_sync(
            self._commit_path, target.hash, limiter=self.chain_lock
        )
        if gap is None:
            self.target, self._certs = None, {}
        return committed, gap

    def _commit_path(self, target: bytes) -> tuple[list[ExecutedBlock], bytes | None]:
        """Runs in the worker thread (see :meth:`commit`)."""
        head = self.chain.head
        path, gap = self._path(target, head)
        if gap is not None:  # commit the newest finalized block that is all here, if any
            ready = [e for h in self._certs if h != target and
                     (e := self.chain.get_pending(h)) is not None]  # fmt: skip
            if ready:
                best = max(ready, key=lambda e: (e.block.number, e.block.hash))
                path, _ = self._path(best.block.hash, head)
        self._write(path)
        return path, gap

    def _path(self, top: bytes, head: Header) -> tuple[list[ExecutedBlock], bytes | None]:
        """The executed blocks from the head (exclusive) up to the finalized ``top``, oldest
        first, or the first one missing here."""
        path: list[ExecutedBlock] = []
        cursor = top
        while cursor != head.hash:
            executed = self.chain.get_pending(cursor)
            if executed is None:
                header = self.chain.chaindb.get_header(cursor)
                if header is None:
                    return [], cursor
                canonical = self.chain.chaindb.get_canonical_hash(header.number) == cursor
                if cursor == top and canonical:
                    return [], None  # committed before (e.g. replayed after a restart)
                raise FinalityConflict(f"finalized 0x{top.hex()} forks at 0x{cursor.hex()}")
            if executed.block.number <= head.number:
                raise FinalityConflict(f"finalized 0x{top.hex()} forks below the head")
            path.append(executed)
            cursor = executed.block.header.parent_hash
        path.reverse()
        return path, None

    def _write(self, path: list[ExecutedBlock]) -> None:
        """Commit ``path`` (oldest first), each block in one batch with its certificate."""
        for executed in path:
            block = executed.block
            extra = [self.journal.block_delete(block.hash)]
            cert = self._certs.pop(block.hash, None)
            if cert is not None:
                extra.append(self.journal.finalization_write(block.number, cert))
            self.chain.commit(executed, finalized=True, extra=extra)
        if path:
            head = self.chain.head
            self.journal.committed(e.block.hash for e in path)
            self.chain.prune_pending(head.number)
            self.journal.forget_blocks_through(head.number)
            epoch = compute_block_epoch(head.number, self.chain.params.epoch_length)
            self.journal.prune_certificates((epoch, head.slot))
