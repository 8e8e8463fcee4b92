"""The consensus driver: feeds the Simplex core and carries its actions out.

The core is pure (it takes ``now_ms`` and returns actions). The driver reads one inbox --
ticks from the :class:`~moderntensor.node._ticker.Ticker`, blocks from the
:class:`~moderntensor.node._producer.BlockProducer`, messages from the network -- and routes
the core's actions: timers to the ticker, build requests to the producer, proposals from
others to execution (a worker thread), finalized blocks to the database (a worker thread),
new heads to the mempool service, broadcasts to the network. It also feeds validator sets of
coming epochs back into the core.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.chain import Chain, ExecutedBlock, InvalidBlock
from moderntensor.chain.genesis import Genesis
from moderntensor.chain.staking import get_validators
from moderntensor.chain.votes import encode_evidence
from moderntensor.consensus import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    Certificate,
    ConsensusConfig,
    ConsensusRemoteError,
    EvidenceFound,
    ExecuteBlock,
    Finalized,
    Preset,
    Proposal,
    SetTimer,
    SignedVote,
    SigningRefused,
    SimplexCore,
    ValidatorSet,
    compute_epoch,
    compute_epoch_seed,
    compute_slot_start_ms,
    compute_snapshot_slot,
    compute_validator_set,
    encode_certificate,
)
from moderntensor.node._logging import event
from moderntensor.node._producer import BlockBuilt, BuildRequest
from moderntensor.node._ticker import Tick, Ticker
from moderntensor.service import ChainService
from moderntensor.state.store import Column

__all__ = [
    "ConsensusDriver",
    "DriverEvent",
    "NetworkMessage",
    "consensus_config_for",
    "wall_clock_ms",
]

log = logging.getLogger("moderntensor.node")

NetworkMessage = SignedVote | Certificate | Proposal
_CERT_PREFIX = b"cert/finalize/"


def wall_clock_ms() -> int:
    """The ticker's one clock read: unix time in milliseconds."""
    return int(time.time() * 1000)


def consensus_config_for(genesis: Genesis, genesis_hash: bytes) -> ConsensusConfig:
    """The consensus parameters of a network, from its genesis (timeout: two slots)."""
    slot_ms = genesis.consensus.slot_duration_ms
    preset = Preset(
        slot_duration_ms=slot_ms,
        epoch_length=genesis.consensus.epoch_length,
        timeout_ms=max(2 * slot_ms, 200),
        max_validators=genesis.consensus.max_validators,
        evidence_window=max(64, 2 * genesis.consensus.epoch_length),
        max_future_slots=64,
    )
    return ConsensusConfig(genesis.chain_id, genesis_hash, genesis.genesis_time * 1000, preset)


DriverEvent = Tick | BlockBuilt | SignedVote | Certificate | Proposal
"""What the driver's inbox carries: ticks, our own built blocks, and network messages."""


class ConsensusDriver:
    """One node's consensus loop; ``run`` is a long-lived nursery task.

    It is the only caller of the core's input methods (``on_tick``, ``on_proposal``,
    ``on_vote``, ...), so the core needs no locking; the producer signs through
    :meth:`SimplexCore.sign_proposal`, a call that never awaits.
    """

    def __init__(
        self,
        chain: Chain,
        service: ChainService,
        core: SimplexCore,
        ticker: Ticker,
        chain_lock: trio.CapacityLimiter,
        *,
        build_requests: trio.MemorySendChannel[BuildRequest],
        new_heads: trio.MemorySendChannel[Header],
        outbound: trio.MemorySendChannel[NetworkMessage] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.chain = chain
        self.service = service
        self.core = core
        self.config = core.config
        self.ticker = ticker
        self.chain_lock = chain_lock  # one worker thread at a time touches the chain
        self.build_requests = build_requests
        self.new_heads = new_heads
        self.outbound = outbound
        self.clock = clock
        self.evidence: dict[bytes, bytes] = {}  # encoded evidence waiting for a block
        self.last_finality_ms: int | None = None
        self.rejected_messages = 0
        self.add_known_validator_sets()

    # -- validator sets -------------------------------------------------------------------

    def validator_set_for(self, epoch: int) -> ValidatorSet | None:
        """The set of ``epoch`` by the rule in docs/consensus.md, or None if not yet fixed."""
        snapshot_slot = compute_snapshot_slot(self.config, epoch)
        head = self.chain.head  # the committed head is the last finalized block
        if head.slot < snapshot_slot:
            return None
        header = head
        if epoch > 1:
            lo, hi = 0, head.number  # highest canonical block with slot <= snapshot_slot
            while lo < hi:
                mid = (lo + hi + 1) // 2
                mid_header = self.chain.chaindb.get_header_by_number(mid)
                if mid_header is not None and mid_header.slot <= snapshot_slot:
                    lo = mid
                else:
                    hi = mid - 1
            found = self.chain.chaindb.get_header_by_number(lo)
            if found is None:
                return None
            header = found
        else:
            genesis = self.chain.chaindb.get_header_by_number(0)
            if genesis is None:
                return None
            header = genesis
        records = get_validators(self.chain.state_at(header))
        seed = compute_epoch_seed(self.config.genesis_hash, epoch, header.hash)
        g = self.chain.genesis.consensus
        return compute_validator_set(records, epoch, seed, g.max_validators, g.min_stake)

    def add_known_validator_sets(self) -> None:
        """Give the core every set that the finalized chain fixes (through two epochs ahead)."""
        current = compute_epoch(self.config, self.chain.head.slot)
        for epoch in range(max(0, current - 1), current + 3):
            if self.core.validator_set(epoch * self.config.preset.epoch_length) is None:
                vset = self.validator_set_for(epoch)
                if vset is not None:
                    self.core.add_validator_set(vset)

    # -- the loop -------------------------------------------------------------------------

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[DriverEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Drive the core until cancelled: ticks, built blocks, network messages."""
        await self.process(self.core.start(self.clock()))
        task_status.started()
        async for item in inbox:
            now = self.clock()
            try:
                if isinstance(item, Tick):
                    actions = self.core.on_tick(now)
                elif isinstance(item, BlockBuilt):
                    actions = self._on_built(item, now)
                elif isinstance(item, Proposal):
                    actions = self.core.on_proposal(item, now)
                elif isinstance(item, Certificate):
                    actions = self.core.on_certificate(item, now)
                else:
                    actions = self.core.on_vote(item, now)
            except ConsensusRemoteError as exc:  # a peer's fault: never the node's
                self.rejected_messages += 1
                event(log, logging.DEBUG, "message rejected", kind=type(item).__name__,
                      reason=str(exc))  # fmt: skip
                continue
            await self.process(actions)

    async def process(self, actions: list[Action]) -> None:
        """Carry out actions, feeding follow-up actions back in order."""
        queue: deque[Action] = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, SetTimer):
                self.ticker.set_deadline(action.deadline_ms)
            elif isinstance(action, BuildBlock):
                self._request_build(action)
            elif isinstance(action, ExecuteBlock):
                queue.extend(await self._execute(action.proposal))
            elif isinstance(action, Broadcast):
                self._send(action.message)
            elif isinstance(action, Finalized):
                await self._finalize(action)
            elif isinstance(action, EvidenceFound):
                raw = encode_evidence(action.evidence)
                self.evidence.setdefault(raw, raw)
                event(log, logging.WARNING, "equivocation detected",
                      validator="0x" + action.evidence.first.signer.hex(),
                      slot=action.evidence.first.slot)  # fmt: skip
            elif isinstance(action, SigningRefused):
                event(log, logging.WARNING, "signing refused by slashing protection",
                      kind=action.kind.name, slot=action.slot, reason=action.reason)  # fmt: skip

    def _request_build(self, action: BuildBlock) -> None:
        request = BuildRequest(action.slot, action.parent, tuple(self.evidence)[:16])
        try:
            self.build_requests.send_nowait(request)
        except trio.WouldBlock:  # still building an earlier slot's block: this slot is lost
            event(log, logging.WARNING, "producer busy, slot skipped", slot=action.slot)

    def _on_built(self, built: BlockBuilt, now: int) -> list[Action]:
        for raw in built.dropped_evidence:
            self.evidence.pop(raw, None)
        if built.proposal is None:
            return []
        self._send(built.proposal)
        return self.core.on_proposal(built.proposal, now)

    def _send(self, message: NetworkMessage) -> None:
        if self.outbound is None:
            return
        try:
            self.outbound.send_nowait(message)
        except trio.WouldBlock:
            event(log, logging.WARNING, "outbound queue full, message dropped",
                  kind=type(message).__name__)  # fmt: skip

    async def _execute(self, proposal: Proposal) -> list[Action]:
        if self.chain.get_pending(proposal.block_hash) is not None:
            return self.core.on_verdict(proposal.block_hash, True, self.clock())
        block = proposal.payload
        valid = False
        try:
            if not isinstance(block, Block):
                raise TypeError(f"payload is {type(block).__name__}, not a block")
            executed = await trio.to_thread.run_sync(
                self.chain.execute_block, block, limiter=self.chain_lock
            )
            valid = executed.block.hash == proposal.block_hash
        except InvalidBlock as exc:
            event(log, logging.WARNING, "invalid block proposed", slot=proposal.slot,
                  proposer="0x" + proposal.proposer.hex(), reason=exc.reason)  # fmt: skip
        except Exception as exc:  # a payload that is not a block at all
            event(log, logging.WARNING, "unusable proposal payload", slot=proposal.slot,
                  error=repr(exc))  # fmt: skip
        return self.core.on_verdict(proposal.block_hash, valid, self.clock())

    async def _finalize(self, action: Finalized) -> None:
        """Commit the newly final blocks (the database write runs in a worker thread), then
        tell the service and hand the new head to the mempool service."""
        committed = await trio.to_thread.run_sync(
            self._commit_final, action, limiter=self.chain_lock
        )
        if not committed:
            return
        now = self.clock()
        head = self.chain.head
        for executed in committed:
            self.service.on_block_committed(executed)
        self.service.on_finalized(head)
        for raw in {raw for e in committed for raw in e.block.evidence}:
            self.evidence.pop(raw, None)
        self.add_known_validator_sets()
        await self.new_heads.send(head)
        for executed in committed:
            header = executed.block.header
            finality_ms = now - compute_slot_start_ms(self.config, header.slot)
            self.last_finality_ms = finality_ms
            event(log, logging.INFO, "block finalized", slot=header.slot,
                  height=header.number, txs=len(executed.block.transactions),
                  gas=header.gas_used, root="0x" + header.state_root.hex()[:12],
                  finality_ms=finality_ms, pool=len(self.service.pool))  # fmt: skip

    def _commit_final(self, action: Finalized) -> list[ExecutedBlock]:
        """Runs in the worker thread: write each final block, then its certificate."""
        committed: list[ExecutedBlock] = []
        for ref in (*action.ancestors, action.block):
            committed += self._commit(ref)
        if committed:
            number = self.chain.head.number
            batch = self.chain.db.batch()
            key = _CERT_PREFIX + number.to_bytes(8, "big")
            batch.put(Column.CONSENSUS, key, encode_certificate(action.certificate))
            self.chain.db.write(batch)
            self.chain.prune_pending(number)
        return committed

    def _commit(self, ref: BlockRef) -> list[ExecutedBlock]:
        head = self.chain.head
        if ref.slot <= head.slot and self.chain.chaindb.get_header(ref.hash) is not None:
            return []  # already committed
        executed = self.chain.get_pending(ref.hash)
        if executed is None or executed.block.header.parent_hash != head.hash:
            event(log, logging.ERROR, "finalized block not executed here; sync needed",
                  slot=ref.slot, block="0x" + ref.hash.hex())  # fmt: skip
            return []
        self.chain.commit(executed, finalized=True)
        return [executed]

    def status(self) -> dict[str, Any]:
        """Facts for the ``mt_*`` RPC methods (keys as moderntensor.rpc._mt reads them)."""
        now = self.clock()
        slot = max(0, now - self.config.genesis_time_ms) // self.config.preset.slot_duration_ms
        latency = None if self.last_finality_ms is None else self.last_finality_ms / 1000
        return {
            "slot": slot,
            "epoch": compute_epoch(self.config, slot),
            "vote_latency_seconds": latency,
            "finality": {
                "view": self.core.view,
                "lastFinalityMs": self.last_finality_ms,
                "evidencePending": len(self.evidence),
            },
        }
