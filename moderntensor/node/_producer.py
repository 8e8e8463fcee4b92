"""The block producer: builds this node's block when the consensus core asks for one.

The driver sends a :class:`BuildRequest` when the core emits
:class:`~moderntensor.consensus.BuildBlock` (this node leads the slot). The producer takes the
best pool transactions up to the gas limit, executes them in a worker thread (the CPU-heavy
part: execution and hashing the state), signs the seal on the event loop through the core (and
so through slashing protection, which is not thread-safe) and sends the proposal, built from
the block itself (``Proposal(block)``), back to the driver as :class:`BlockBuilt`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence

import attrs
import trio

from moderntensor import offload
from moderntensor.chain.blocks import Header
from moderntensor.chain.chain import BlockDraft, Chain, InvalidBlock
from moderntensor.chain.constants import MAX_BLOCK_EVIDENCE, TX_GAS
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.transactions import Transaction
from moderntensor.consensus import BlockRef, ConsensusError, Proposal, SimplexCore
from moderntensor.mempool import Mempool
from moderntensor.node._logging import event
from moderntensor.node._pool_service import MempoolService

__all__ = ["BlockBuilt", "BlockProducer", "BuildRequest"]

log = logging.getLogger("moderntensor.node")

SLICE = 1024
"""Candidate transactions taken per event-loop step (about 3 ms of work)."""
BUDGET_CHECK_EVERY = 128
"""Candidates executed between two looks at the clock while drafting."""
MIN_CANDIDATES = 1024
"""The fewest candidates taken from the pool once a draft ran out of time (see ``build``)."""


def until_deadline(candidates: Sequence[Transaction], deadline: float) -> Iterator[Transaction]:
    """``candidates`` in order, stopping at the first check (every ``BUDGET_CHECK_EVERY``) past
    ``deadline`` (``time.monotonic``); the first check comes after ``BUDGET_CHECK_EVERY``, so
    a block never stays empty for want of time."""
    for i, tx in enumerate(candidates):
        if i and i % BUDGET_CHECK_EVERY == 0 and time.monotonic() > deadline:
            return
        yield tx


@attrs.frozen(slots=True)
class BuildRequest:
    """Build on ``parent`` for ``slot`` of ``epoch``, including ``evidence`` (encoded) if
    still valid. A block whose height is outside ``epoch`` is not built."""

    epoch: int
    slot: int
    parent: BlockRef
    evidence: tuple[bytes, ...] = ()


@attrs.frozen(slots=True)
class BlockBuilt:
    """The answer to a :class:`BuildRequest`: a signed proposal, or None if none was made.

    ``dropped_evidence`` lists only evidence no block on this fork can ever include
    (malformed, proving nothing, not a validator's, already used or too old, or a second proof
    of an offence the block includes; :meth:`Chain.select_evidence`), so the driver stops
    offering it. Usable evidence the block had no room for is not in it: the driver offers it
    again.
    """

    slot: int
    proposal: Proposal | None
    dropped_evidence: tuple[bytes, ...] = ()
    build_ms: float = 0.0
    select_ms: float = 0.0  # taking the candidates from the pool (part of build_ms)
    draft_ms: float = 0.0  # executing them in the draft (part of build_ms)


class BlockProducer:
    """One node's block builder; ``run`` is a long-lived nursery task."""

    def __init__(
        self,
        chain: Chain,
        pool: Mempool,
        core: SimplexCore,
        chain_lock: trio.CapacityLimiter,
        pool_service: MempoolService,
        *,
        catch_up_s: float = 0.25,
        draft_budget_s: float | None = None,
    ) -> None:
        self.chain = chain
        self.pool = pool
        self.core = core
        self.chain_lock = chain_lock  # one worker thread at a time touches the chain
        self.pool_service = pool_service
        self.catch_up_s = catch_up_s  # longest wait for the pool to follow the chain
        self.draft_budget_s = draft_budget_s  # None: up to the gas limit, however long
        self.take: int | None = None  # candidates the next block takes (None: all that fit)
        self.built = 0

    async def run(
        self,
        requests: trio.MemoryReceiveChannel[BuildRequest],
        results: trio.MemorySendChannel[BlockBuilt],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer build requests until cancelled."""
        task_status.started()
        async for request in requests:
            await results.send(await self.build(request))

    async def build(self, request: BuildRequest) -> BlockBuilt:
        """Build, sign and return one proposal; failures are logged and answered with None."""
        started = trio.current_time()
        parent = self.chain.get_header(request.parent.hash)
        if parent is None:
            event(log, logging.ERROR, "cannot build: parent unknown", slot=request.slot,
                  parent="0x" + request.parent.hash.hex())  # fmt: skip
            return BlockBuilt(request.slot, None)
        if compute_block_epoch(parent.number + 1, self.chain.params.epoch_length) != request.epoch:
            event(log, logging.DEBUG, "not building: the block would leave the epoch",
                  slot=request.slot, epoch=request.epoch, height=parent.number + 1)  # fmt: skip
            return BlockBuilt(request.slot, None)
        proposer = self.core.validator_id
        if proposer is None:
            return BlockBuilt(request.slot, None)
        base_fee = self.chain.next_env(parent, request.slot, b"").base_fee
        candidates = await self._candidates(parent, base_fee, self.take)
        selected = trio.current_time()
        try:
            draft, dropped = await self._draft(
                parent, request.slot, proposer, candidates, request.evidence
            )
        except InvalidBlock as exc:
            event(log, logging.ERROR, "block building failed", slot=request.slot,
                  reason=exc.reason)  # fmt: skip
            return BlockBuilt(request.slot, None)
        drafted = trio.current_time()
        self._adjust_take(draft, len(candidates), budgeted=self._budget() is not None)
        if dropped:
            event(log, logging.INFO, "evidence dropped", slot=request.slot,
                  dropped=len(dropped), offered=len(request.evidence))  # fmt: skip
        try:
            vote = self.core.sign_proposal(request.slot, draft.seal_hash)
        except ConsensusError as exc:  # the slot or epoch moved on, or protection refused
            event(log, logging.WARNING, "block not signed", slot=request.slot,
                  reason=str(exc))  # fmt: skip
            return BlockBuilt(request.slot, None, dropped)
        async with self.chain_lock:
            executed = self.chain.seal_block(draft, vote.signature)
        self.built += 1
        build_ms = (trio.current_time() - started) * 1000
        return BlockBuilt(request.slot, Proposal(executed.block), dropped, build_ms,
                          (selected - started) * 1000, (drafted - selected) * 1000)  # fmt: skip

    def _budget(self) -> float | None:
        """The draft's time budget: none in the simulator (offload inline, virtual time)."""
        return None if offload.is_inline() else self.draft_budget_s

    def _adjust_take(self, draft: BlockDraft, taken: int, *, budgeted: bool) -> None:
        """How many candidates the next block takes from the pool: taking them is event-loop
        work (tens of microseconds each), so once a draft ran out of time with room left in
        the block, about twice what it used (at least ``MIN_CANDIDATES``); while the drafts
        use all they are given, twice as many each time, up to no limit again."""
        used = len(draft.transactions)
        room = draft.header.gas_used + TX_GAS <= draft.header.gas_limit
        if budgeted and used < taken and room:
            self.take = max(MIN_CANDIDATES, 2 * used)
        elif self.take is not None and taken >= self.take:
            self.take = 2 * self.take if 2 * self.take < 16 * MIN_CANDIDATES else None

    async def _candidates(
        self, parent: Header, base_fee: int, limit: int | None = None
    ) -> list[Transaction]:
        """The pool's best transactions for a block on ``parent`` (at most ``limit``), a slice
        per event-loop step.

        Transactions that ``parent`` or its ancestors already include are left out: the
        pool has dropped those of committed blocks once the mempool service caught up with
        the committed head (waited for, briefly), and those of executed blocks not yet
        committed are skipped by nonce.
        """
        with trio.move_on_after(self.catch_up_s):
            await self.pool_service.caught_up(self.chain.head.number)
        after = self._uncommitted_nonces(parent)
        candidates: list[Transaction] = []
        best = self.pool.iter_best_transactions(base_fee, self.chain.params.gas_limit, after)
        for tx in best:
            candidates.append(tx)
            if len(candidates) == limit:
                break
            if len(candidates) % SLICE == 0:
                await trio.sleep(0)
        return candidates

    def _uncommitted_nonces(self, parent: Header) -> dict[bytes, int]:
        """Per sender, the nonce after its transactions in ``parent`` and the ancestors that
        are executed but not committed (the pool cannot have dropped those yet)."""
        after: dict[bytes, int] = {}
        executed = self.chain.get_pending(parent.hash)
        while executed is not None:
            for tx in executed.block.transactions:
                if tx.nonce >= after.get(tx.sender, 0):
                    after[tx.sender] = tx.nonce + 1
            executed = self.chain.get_pending(executed.block.header.parent_hash)
        return after

    async def _draft(
        self,
        parent: Header,
        slot: int,
        proposer: bytes,
        candidates: list[Transaction],
        offered: tuple[bytes, ...],
    ) -> tuple[BlockDraft, tuple[bytes, ...]]:
        """:meth:`_select_and_draft` in a worker thread (one at a time on the chain), within
        the draft budget (counted from when the thread holds the chain)."""
        budget = self._budget()
        return await offload.run_sync(
            self._select_and_draft,
            parent,
            slot,
            proposer,
            candidates,
            offered,
            budget,
            limiter=self.chain_lock,
        )

    def _select_and_draft(
        self,
        parent: Header,
        slot: int,
        proposer: bytes,
        candidates: list[Transaction],
        offered: tuple[bytes, ...],
        budget_s: float | None = None,
    ) -> tuple[BlockDraft, tuple[bytes, ...]]:
        """Draft a block with the usable part of ``offered``; returns it and the dropped part.

        Evidence is judged item by item first (:meth:`Chain.select_evidence`), so one bad item
        costs nothing but its own place. Should the block still fail with the selected
        evidence (the selection and the block rule disagree: a bug), the block is built
        without evidence as a last resort and nothing is reported dropped, so the driver
        keeps offering all of it.

        Raises:
            InvalidBlock: no block can be built on ``parent`` (not for its evidence).
        """
        usable, dropped = self.chain.select_evidence(parent, offered, MAX_BLOCK_EVIDENCE)
        txs: Iterable[Transaction] = candidates
        if budget_s is not None:
            txs = until_deadline(candidates, time.monotonic() + budget_s)
        try:
            return self.chain.draft_block(parent, slot, proposer, txs, usable), dropped
        except InvalidBlock as exc:
            if not usable:
                raise
            event(log, logging.ERROR, "selected evidence made the block invalid; building "
                  "without evidence", slot=slot, reason=exc.reason)  # fmt: skip
            return self.chain.draft_block(parent, slot, proposer, candidates, ()), ()
