"""Range sync: a node more than a couple of epochs behind its peers downloads the committed
blocks it lacks in ranges (``GetBlockRange``), proves each final with a finalization
certificate checked against the validator set of its epoch, re-executes it and has the
driver commit it (docs/network.md, "Range sync").

Why ranges: the fetch path (``_fetch``) walks parents one block at a time and the core can
only check certificates of the epochs whose sets it holds, so a node an epoch or more behind
cannot catch up through it. Here the sets come from the chain being synced: the set of epoch
``e`` is fixed once the boundary block of ``e - 2`` is committed
(``ChainService.validator_set``), so syncing epoch by epoch always has the set it needs.

One range at a time, never past the boundary block of the epoch of its first block:

1. ask a peer that is ahead for ``start = head + 1`` .. the boundary (at most
   ``MAX_RANGE_BLOCKS``);
2. check the blocks are consecutive and chained to the committed head; take the prefix that
   ends at the last block carrying a certificate; each certificate must finalize its own
   block and verify against the set of its epoch (a block without one is final because a
   later block of the prefix is);
3. execute the prefix in a worker thread under the chain lock (``Chain.execute_block``);
4. hand the driver :class:`RangeSynced` (the certificates): it commits through its one commit
   path (``FinalityCommitter``) and, at a boundary block, enters the next epoch
   (``ConsensusDriver._maybe_enter_epoch``); wait for the commit, then the next range.

A peer whose range does not chain, whose certificate does not verify or whose block does not
execute is disconnected, and the range asked of another peer. A peer that has nothing, or
does not answer in time, is just skipped; a range not answered in time makes the next one
half as long (full blocks: reading, sending and decoding 128 of them can take longer than a
request may), and a range answered quickly the next one twice as long.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain, InvalidBlock, MissingParent
from moderntensor.chain.timing import compute_block_epoch, compute_boundary_height
from moderntensor.chain.votes import VoteKind
from moderntensor.consensus import (
    BlockRef,
    Certificate,
    InvalidCertificate,
    SignatureVerifier,
    verify_certificate,
)
from moderntensor.node._logging import event
from moderntensor.service import ChainService

__all__ = ["RangeSource", "RangeSync", "RangeSynced"]

log = logging.getLogger("moderntensor.node")

MAX_RANGE = 128
"""Blocks asked for in one request at most (the wire cap, ``MAX_RANGE_BLOCKS``)."""
FAST_REPLY_S = 0.5
"""A range answered this fast: the next one may be twice as long (up to ``MAX_RANGE``)."""
CHECK_INTERVAL_S = 2.0
"""How often peers' heads are compared with ours."""
COMMIT_TIMEOUT_S = 30.0
"""How long the driver may take to commit a range before sync gives up this round."""


class RangeSource(Protocol):
    """Peers to sync from (``moderntensor.network.PeerManager``; fakes in tests)."""

    async def heads(self) -> list[tuple[Any, int]]:
        """(peer, committed head height) of the peers that answered."""

    async def fetch_range(self, peer: Any, start: int, count: int) -> Any:
        """A ``BlockRange`` (``.blocks``: (block, certificate or None) pairs), or None."""

    def punish(self, peer: Any, reason: str) -> None:
        """Disconnect ``peer``: it sent something provably wrong."""


@attrs.frozen(slots=True)
class RangeSynced:
    """Blocks synced and executed here, proven final by these certificates (oldest first):
    the driver commits them and the blocks below them."""

    certificates: tuple[tuple[BlockRef, Certificate], ...]


class _Refused(Exception):
    """The peer's range is provably wrong (it is disconnected)."""


class RangeSync:
    """One node's range sync; ``run`` is a long-lived nursery task."""

    def __init__(
        self,
        chain: Chain,
        service: ChainService,
        chain_lock: trio.CapacityLimiter,
        verifier: SignatureVerifier,
        source: RangeSource,
        inbox: trio.MemorySendChannel[RangeSynced],
        *,
        threshold: int | None = None,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.chain = chain
        self.service = service
        self.chain_lock = chain_lock
        self.verifier = verifier
        self.source = source
        self.inbox = inbox
        self.epoch_length = chain.params.epoch_length
        self.threshold = 2 * self.epoch_length if threshold is None else threshold
        self.interval_s = interval_s
        self.syncing = False
        self.synced_blocks = 0
        self.refused = 0
        # Blocks asked for next. A range of full blocks can take longer to read, send and
        # decode (every sender recovered) than a request may take: 128 blocks of 100
        # transfers timed out again and again on a busy 2-core machine, and sync never
        # started. A range without an answer halves it; a fast answer doubles it.
        self.range_size = MAX_RANGE

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.sync_once()
            await trio.sleep(self.interval_s)

    async def sync_once(self) -> int:
        """Sync if a peer is ahead by more than the threshold; returns the blocks synced."""
        heads = await self.source.heads()
        best = max((h for _, h in heads), default=0)
        start_height = self.chain.head.number
        if best - start_height <= self.threshold:
            return 0
        self.syncing = True
        started = trio.current_time()
        synced = 0
        event(log, logging.INFO, "sync started", head=start_height, target=best,
              peers=len(heads))  # fmt: skip
        bad: set[int] = set()
        try:
            while True:
                head = self.chain.head.number
                if head >= best:  # reached: are peers further on now?
                    heads = await self.source.heads()
                    best = max((h for _, h in heads), default=0)
                    if best - head <= 1:
                        break
                ahead = [p for p, h in heads if h > head and id(p) not in bad]
                if not ahead:
                    break
                done = 0
                for peer in ahead:
                    try:
                        done = await self._sync_range(peer, best)
                    except _Refused as exc:
                        self.refused += 1
                        bad.add(id(peer))
                        event(log, logging.WARNING, "sync peer refused", reason=str(exc),
                              height=head + 1)  # fmt: skip
                        self.source.punish(peer, str(exc))
                        continue
                    if done:
                        break
                if not done:
                    break
                synced += done
                self.synced_blocks += done
                elapsed = max(trio.current_time() - started, 1e-6)
                rate = synced / elapsed
                remaining = max(0, best - self.chain.head.number)
                event(log, logging.INFO, "sync progress", height=self.chain.head.number,
                      target=best, remaining=remaining, blocks_per_s=round(rate, 1),
                      eta_s=round(remaining / rate, 1) if rate else None)  # fmt: skip
        finally:
            self.syncing = False
        event(log, logging.INFO, "sync finished", head=self.chain.head.number, blocks=synced,
              seconds=round(trio.current_time() - started, 2))  # fmt: skip
        return synced

    async def _sync_range(self, peer: Any, best: int) -> int:
        """One range from ``peer``, checked, executed and committed; the blocks committed
        (0: the peer had nothing usable, or the driver did not commit in time).

        Raises:
            _Refused: the peer's range is provably wrong.
        """
        head = self.chain.head
        start = head.number + 1
        boundary = compute_boundary_height(compute_block_epoch(start, self.epoch_length),
                                           self.epoch_length)  # fmt: skip
        count = max(1, min(self.range_size, boundary - start + 1, best - start + 1))
        asked = trio.current_time()
        reply = await self.source.fetch_range(peer, start, count)
        if reply is None:  # no answer in time: ask for fewer blocks next time
            self.range_size = max(1, count // 2)
            event(log, logging.INFO, "sync range timed out", start=start, count=count,
                  next_count=self.range_size)  # fmt: skip
            return 0
        if not reply.blocks:
            return 0
        if trio.current_time() - asked < FAST_REPLY_S:
            self.range_size = min(MAX_RANGE, 2 * self.range_size)
        if self.chain.head.hash != head.hash:  # committed meanwhile (the driver's own path)
            return 0
        proven = self.check_range(head.hash, start, list(reply.blocks))
        if not proven:
            return 0
        blocks = [b for b, _ in reply.blocks[: proven[-1][0] + 1]]
        try:
            await trio.to_thread.run_sync(self._execute, blocks, limiter=self.chain_lock)
        except (InvalidBlock, MissingParent) as exc:
            raise _Refused(f"block does not execute: {exc}") from None
        target = blocks[-1]
        certs = tuple((BlockRef(blocks[i].header.slot, blocks[i].hash), cert) for i, cert in proven)
        await self.inbox.send(RangeSynced(certs))
        with trio.move_on_after(COMMIT_TIMEOUT_S):
            while self.chain.head.number < target.number:
                await trio.sleep(0.005)
        return max(0, self.chain.head.number - head.number)

    def check_range(
        self, parent: bytes, start: int, entries: list[tuple[Block, Certificate | None]]
    ) -> list[tuple[int, Certificate]]:
        """The (index, certificate) of every verified certificate of a range, or [] if it
        carries none whose epoch's set is known here.

        Raises:
            _Refused: blocks not consecutive or not chained to ``parent``, or a certificate
                that is not a finalization of its block or does not verify.
        """
        proven: list[tuple[int, Certificate]] = []
        for i, (block, cert) in enumerate(entries):
            if block.number != start + i or block.header.parent_hash != parent:
                raise _Refused(f"block {block.number} is not next after {start + i - 1}")
            parent = block.hash
            if cert is None:
                continue
            if cert.kind is not VoteKind.FINALIZE or cert.block_hash != block.hash:
                raise _Refused(f"certificate of block {block.number} is not its finalization")
            vset = self.service.validator_set(cert.epoch)
            if vset is None:  # a later epoch: the range's end is proven by an earlier one
                break
            try:
                verify_certificate(cert, vset, self.verifier)
            except InvalidCertificate as exc:
                raise _Refused(f"certificate of block {block.number}: {exc}") from None
            proven.append((i, cert))
        return proven

    def _execute(self, blocks: list[Block]) -> None:
        """Runs in the worker thread: execute each block on its (executed) parent."""
        for block in blocks:
            if self.chain.get_header(block.hash) is None:
                self.chain.execute_block(block)
