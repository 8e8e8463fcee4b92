"""Range sync: a node far behind its peers (the node passes ``threshold``: more blocks than
its core's look-ahead covers) downloads the committed blocks it lacks in ranges
(``GetBlockRange``), proves each final with a finalization certificate checked against the
validator set of its epoch, re-executes it and has the driver commit it (docs/network.md,
"Range sync").

Why ranges: the fetch path (``_fetch``) walks parents one block at a time and the core can
only check certificates of the epochs whose sets it holds, so a node an epoch or more behind
cannot catch up through it. Here the sets come from the chain being synced: the set of epoch
``e`` is fixed once the boundary block of ``e - 2`` is committed
(``ChainService.validator_set``), so syncing epoch by epoch always has the set it needs.

Downloads run ahead of execution, from several peers at once (``_sync_download``); execution
is in height order, one chunk (at most ``MAX_RANGE`` blocks, never past an epoch's boundary
block) at a time:

1. take the next chunk's blocks (downloaded already, or fetched now if a short reply or the
   driver's own commits left a gap);
2. check the blocks are consecutive and chained to the committed head; take the prefix that
   ends at the last block carrying a certificate (the rest is carried into the next chunk);
   each certificate must finalize its own block and verify against the set of its epoch (a
   block without one is final because a later block of the prefix is);
3. execute the prefix in a worker thread under the chain lock (``Chain.execute_block``);
4. hand the driver :class:`RangeSynced` (the certificates): it commits through its one commit
   path (``FinalityCommitter``) and, at a boundary block, enters the next epoch
   (``ConsensusDriver._maybe_enter_epoch``); wait for the commit, then the next chunk.

A peer whose blocks do not chain, whose certificate does not verify or whose block does not
execute is disconnected, and its chunk asked of another peer. A peer that has nothing, or does
not answer in time, is just skipped. While it syncs, the node's ``ChainService.sync_progress``
says how far it is (``eth_syncing``, ``/health`` not ready) and a progress line (blocks/s,
ETA) is logged every few seconds.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import attrs
import trio

from moderntensor import offload
from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain, InvalidBlock, MissingParent
from moderntensor.chain.votes import VoteKind
from moderntensor.consensus import (
    BlockRef,
    Certificate,
    InvalidCertificate,
    SignatureVerifier,
    verify_certificate,
)
from moderntensor.node._logging import event
from moderntensor.node._sync_download import (
    MAX_RANGE,
    Downloads,
    Entry,
    RangeSize,
    RangeSource,
    fetch_chunk,
    plan_chunks,
)
from moderntensor.service import ChainService, SyncProgress

__all__ = ["RangeSource", "RangeSync", "RangeSynced"]

log = logging.getLogger("moderntensor.node")

CHECK_INTERVAL_S = 2.0
"""How often peers' heads are compared with ours."""
COMMIT_TIMEOUT_S = 30.0
"""How long the driver may take to commit a range before sync gives up this round."""
WINDOW = 8
"""Chunks downloaded or held ahead of execution (memory: a few MB each at most)."""
LOG_INTERVAL_S = 2.0
"""Trio seconds between two progress lines."""
MAX_CARRY = 4 * MAX_RANGE
"""Blocks held without a certificate proving them before the sync gives up this round."""


@attrs.frozen(slots=True)
class RangeSynced:
    """Blocks synced and executed here, proven final by these certificates (oldest first):
    the driver commits them and the blocks below them."""

    certificates: tuple[tuple[BlockRef, Certificate], ...]


class _Refused(Exception):
    """The entries are provably wrong from ``index`` on."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


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
        window: int = WINDOW,
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
        self.window = window
        self.synced_blocks = 0
        self.refused = 0
        self.size = RangeSize()
        """Blocks one request asks for, adapted to how fast peers answer."""
        self.peers_used: set[int] = set()
        """Ids of the peers chunks came from (how parallel the last syncs were)."""
        self._began = 0.0
        self._starting = 0
        self._synced = 0
        self._logged = 0.0

    @property
    def syncing(self) -> bool:
        return self.service.sync_progress is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.sync_once()
            await trio.sleep(self.interval_s)

    async def sync_once(self) -> int:
        """Sync if a peer is ahead by more than the threshold; returns the blocks synced."""
        heads = await self.source.heads()
        best = max((h for _, h in heads), default=0)
        self._starting = self.chain.head.number
        if best - self._starting <= self.threshold:
            return 0
        self._began = self._logged = trio.current_time()
        self._synced = 0
        self._publish(best)
        event(log, logging.INFO, "sync started", head=self._starting, target=best,
              peers=len(heads))  # fmt: skip
        bad: set[int] = set()
        try:
            while True:
                head = self.chain.head.number
                ahead = [(p, h) for p, h in heads if h > head and id(p) not in bad]
                if not ahead or not await self._sync_to(ahead, best, bad):
                    break
                heads = await self.source.heads()  # the chain went on meanwhile
                best = max((h for _, h in heads), default=0)
                if best - self.chain.head.number <= 1:
                    break
        finally:
            self.service.sync_progress = None
        event(log, logging.INFO, "sync finished", head=self.chain.head.number,
              blocks=self._synced, peers=len(self.peers_used),
              seconds=round(trio.current_time() - self._began, 2))  # fmt: skip
        return self._synced

    async def _sync_to(self, peers: list[tuple[Any, int]], best: int, bad: set[int]) -> int:
        """Sync up to ``best`` from ``peers``; the blocks committed."""
        pending = deque(plan_chunks(self.chain.head.number + 1, best, self.epoch_length))
        downloads = Downloads(self.source, peers, list(pending), window=self.window, bad=bad,
                              size=self.size)  # fmt: skip
        synced = failures = 0
        carry: list[Entry] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(downloads.run)
            while self.chain.head.number < best and failures <= 2 * len(peers):
                head = self.chain.head
                want = head.number + 1 + len(carry)
                while pending and pending[0].end < want:
                    downloads.release(pending.popleft().start)
                peer, got = None, []
                if pending and pending[0].start <= want:
                    chunk = pending.popleft()
                    fetched = await downloads.get(chunk.start)
                    downloads.release(chunk.start)
                    if id(fetched.peer) not in bad:  # else refused meanwhile: ask again
                        peer, got = fetched.peer, fetched.entries[want - chunk.start :]
                if not got:  # a gap: a short reply, a refused peer, the driver's own commits
                    gap = plan_chunks(want, best, self.epoch_length)[0]
                    peer, got = await fetch_chunk(self.source, peers, gap, failures, bad,
                                                  self.size)  # fmt: skip
                if not got:
                    break  # no peer has the next blocks
                entries, carried = carry + got, len(carry)
                try:
                    done = await self._apply(head.hash, head.number + 1, entries)
                except _Refused as exc:
                    failures += 1
                    carry = []
                    if exc.index >= carried and peer is not None:  # else: whose fault is unclear
                        self._refuse(peer, bad, str(exc), head.number + 1)
                    continue
                if done is None:  # no certificate yet: carry them into the next chunk
                    carry = entries
                    if len(carry) > MAX_CARRY:
                        break
                    continue
                committed, carry = done
                if not committed:
                    break  # the driver did not commit in time: try again later
                if peer is not None:
                    self.peers_used.add(id(peer))
                synced += committed
                self._synced += committed
                self.synced_blocks += committed
                self._publish(best)
            nursery.cancel_scope.cancel()
        return synced

    async def _apply(
        self, parent: bytes, start: int, entries: list[Entry]
    ) -> tuple[int, list[Entry]] | None:
        """Check, execute and have the driver commit the proven prefix of ``entries``: the
        blocks committed and the unproven rest; None if nothing in them is proven yet.

        Raises:
            _Refused: the entries are provably wrong.
        """
        proven = self.check_range(parent, start, entries)
        if not proven:
            return None
        last = proven[-1][0]
        blocks = [b for b, _ in entries[: last + 1]]
        try:
            await offload.run_sync(self._execute, blocks, limiter=self.chain_lock)
        except (InvalidBlock, MissingParent) as exc:
            raise _Refused(0, f"block does not execute: {exc}") from None
        certs = tuple((BlockRef(blocks[i].header.slot, blocks[i].hash), cert) for i, cert in proven)
        before = self.chain.head.number
        await self.inbox.send(RangeSynced(certs))
        with trio.move_on_after(COMMIT_TIMEOUT_S):
            while self.chain.head.number < blocks[-1].number:
                await trio.sleep(0.005)
        return max(0, self.chain.head.number - before), entries[last + 1 :]

    def _refuse(self, peer: Any, bad: set[int], reason: str, height: int) -> None:
        self.refused += 1
        bad.add(id(peer))
        event(log, logging.WARNING, "sync peer refused", reason=reason, height=height)
        self.source.punish(peer, reason)

    def _publish(self, best: int) -> None:
        """Update ``sync_progress`` and, every ``LOG_INTERVAL_S``, log a progress line."""
        now = trio.current_time()
        current = self.chain.head.number
        rate = self._synced / max(now - self._began, 1e-6)
        remaining = max(0, best - current)
        eta = remaining / rate if rate > 0 else None
        self.service.sync_progress = SyncProgress(self._starting, current, max(best, current),
                                                  rate, eta)  # fmt: skip
        if self._synced and now - self._logged >= LOG_INTERVAL_S:
            self._logged = now
            event(log, logging.INFO, "sync progress", height=current, target=best,
                  remaining=remaining, blocks_per_s=round(rate, 1),
                  eta_s=None if eta is None else round(eta, 1))  # fmt: skip

    def check_range(
        self, parent: bytes, start: int, entries: list[Entry]
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
                raise _Refused(i, f"block {block.number} is not next after {start + i - 1}")
            parent = block.hash
            if cert is None:
                continue
            if cert.kind is not VoteKind.FINALIZE or cert.block_hash != block.hash:
                raise _Refused(i, f"certificate of block {block.number} is not its finalization")
            vset = self.service.validator_set(cert.epoch)
            if vset is None:  # a later epoch: the range's end is proven by an earlier one
                break
            try:
                verify_certificate(cert, vset, self.verifier)
            except InvalidCertificate as exc:
                raise _Refused(i, f"certificate of block {block.number}: {exc}") from None
            proven.append((i, cert))
        return proven

    def _execute(self, blocks: list[Block]) -> None:
        """Runs in the worker thread: execute each block on its (executed) parent."""
        for block in blocks:
            if self.chain.get_header(block.hash) is None:
                self.chain.execute_block(block)
