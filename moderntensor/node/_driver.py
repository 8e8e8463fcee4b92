"""The consensus driver: carries the Simplex core's actions out against chain, pool and service.

The core is pure (it takes ``now_ms`` and returns actions); this task owns the clock, runs
CPU-heavy block building and execution in a worker thread (so the event loop keeps serving
RPC), commits finalized blocks, and feeds validator sets of coming epochs back into the core.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from moderntensor.chain.blocks import Block
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
from moderntensor.crypto import Signature
from moderntensor.mempool import Mempool
from moderntensor.node._logging import event
from moderntensor.service import ChainService
from moderntensor.state.store import Column

__all__ = ["ConsensusDriver", "NetworkMessage", "consensus_config_for", "wall_clock_ms"]

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


@attrs.define
class _CoreSealer:
    """Signs a block's seal through the core (and so through slashing protection)."""

    core: SimplexCore
    address: bytes

    def sign_seal(self, slot: int, seal_hash: bytes) -> Signature:
        return self.core.sign_proposal(slot, seal_hash).signature


class ConsensusDriver:
    """One node's consensus loop; ``run`` is a long-lived nursery task."""

    def __init__(
        self,
        chain: Chain,
        pool: Mempool,
        service: ChainService,
        core: SimplexCore,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        outbound: trio.MemorySendChannel[NetworkMessage] | None = None,
    ) -> None:
        self.chain = chain
        self.pool = pool
        self.service = service
        self.core = core
        self.config = core.config
        self.clock = clock
        self.outbound = outbound
        self.deadline_ms: int | None = None
        self.evidence: dict[bytes, bytes] = {}  # encoded evidence waiting for a block
        self.last_finality_ms: int | None = None
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
        inbound: trio.MemoryReceiveChannel[NetworkMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Drive the core until cancelled: timers, inbound messages, actions."""
        await self.process(self.core.start(self.clock()))
        task_status.started()
        while True:
            message: NetworkMessage | None = None
            wait = 3600.0
            if self.deadline_ms is not None:
                wait = max(0.0, (self.deadline_ms - self.clock()) / 1000)
            with trio.move_on_after(wait):
                message = await inbound.receive()
            now = self.clock()
            if message is None:
                actions = self.core.on_tick(now)
            elif isinstance(message, Proposal):
                actions = self.core.on_proposal(message, now)
            elif isinstance(message, Certificate):
                actions = self.core.on_certificate(message, now)
            else:
                actions = self.core.on_vote(message, now)
            await self.process(actions)

    async def process(self, actions: list[Action]) -> None:
        """Carry out actions, feeding follow-up actions back in order."""
        queue: deque[Action] = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, SetTimer):
                self.deadline_ms = action.deadline_ms
            elif isinstance(action, BuildBlock):
                queue.extend(await self._build(action))
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

    def _send(self, message: NetworkMessage) -> None:
        if self.outbound is None:
            return
        try:
            self.outbound.send_nowait(message)
        except trio.WouldBlock:
            event(log, logging.WARNING, "outbound queue full, message dropped",
                  kind=type(message).__name__)  # fmt: skip

    async def _build(self, action: BuildBlock) -> list[Action]:
        parent = self.chain.get_header(action.parent.hash)
        if parent is None:
            event(log, logging.ERROR, "cannot build: parent unknown", slot=action.slot,
                  parent="0x" + action.parent.hash.hex())  # fmt: skip
            return []
        base_fee = self.chain.next_env(parent, action.slot, b"").base_fee
        candidates = self.pool.best_transactions(base_fee, self.chain.params.gas_limit)
        evidence = list(self.evidence)[:16]
        sealer = _CoreSealer(self.core, self.core.validator_id or b"")

        def build() -> ExecutedBlock:
            return self.chain.build_block(parent, action.slot, sealer, candidates, evidence)

        try:
            executed = await trio.to_thread.run_sync(build)
        except InvalidBlock as exc:  # e.g. evidence that another block already used
            event(log, logging.WARNING, "block building failed, retrying without evidence",
                  slot=action.slot, reason=exc.reason)  # fmt: skip
            self.evidence.clear()
            evidence = []
            executed = await trio.to_thread.run_sync(build)
        header = executed.block.header
        proposal = Proposal(
            slot=header.slot,
            block_hash=header.hash,
            parent_hash=header.parent_hash,
            seal_hash=header.seal_hash,
            proposer=header.proposer,
            signature=Signature.from_bytes(header.proposer_signature),
            payload=executed.block,
        )
        self._send(proposal)
        return self.core.on_proposal(proposal, self.clock())

    async def _execute(self, proposal: Proposal) -> list[Action]:
        if self.chain.get_pending(proposal.block_hash) is not None:
            return self.core.on_verdict(proposal.block_hash, True, self.clock())
        block = proposal.payload
        valid = False
        try:
            if not isinstance(block, Block):
                raise TypeError(f"payload is {type(block).__name__}, not a block")
            executed = await trio.to_thread.run_sync(self.chain.execute_block, block)
            valid = executed.block.hash == proposal.block_hash
        except InvalidBlock as exc:
            event(log, logging.WARNING, "invalid block proposed", slot=proposal.slot,
                  proposer="0x" + proposal.proposer.hex(), reason=exc.reason)  # fmt: skip
        except Exception as exc:  # a payload that is not a block at all
            event(log, logging.WARNING, "unusable proposal payload", slot=proposal.slot,
                  error=repr(exc))  # fmt: skip
        return self.core.on_verdict(proposal.block_hash, valid, self.clock())

    async def _finalize(self, action: Finalized) -> None:
        """Commit the newly final blocks (the database write runs in the worker thread), then
        tell the service and re-validate the pool, yielding between the steps."""
        committed = await trio.to_thread.run_sync(self._commit_final, action)
        if not committed:
            return
        now = self.clock()
        head = self.chain.head
        for executed in committed:
            self.service.on_block_committed(executed)
        self.service.on_finalized(head)
        for raw in {raw for e in committed for raw in e.block.evidence}:
            self.evidence.pop(raw, None)
        await trio.sleep(0)
        for executed in committed:
            self.pool.remove_included(executed.block.transactions)
        await trio.sleep(0)
        self.pool.on_new_head(self.chain.state_at(head), self.service.next_base_fee())
        self.add_known_validator_sets()
        for executed in committed:
            header = executed.block.header
            finality_ms = now - compute_slot_start_ms(self.config, header.slot)
            self.last_finality_ms = finality_ms
            event(log, logging.INFO, "block finalized", slot=header.slot,
                  height=header.number, txs=len(executed.block.transactions),
                  gas=header.gas_used, root="0x" + header.state_root.hex()[:12],
                  finality_ms=finality_ms, pool=len(self.pool))  # fmt: skip

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
