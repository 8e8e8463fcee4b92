"""The consensus driver: feeds the Simplex core and carries its actions out.

The core is pure (it takes ``now_ms`` and returns actions). The driver reads one inbox --
ticks from the :class:`~moderntensor.node._ticker.Ticker`, blocks from the
:class:`~moderntensor.node._producer.BlockProducer`, answers from the
:class:`~moderntensor.node._fetch.BlockFetchService`, messages and peer status from the
network -- and routes the core's actions: timers to the ticker, build requests to the
producer, proposals from others to execution (a worker thread), missing blocks to the
fetcher, finalized blocks to the database (a worker thread), new heads to the mempool service,
broadcasts (votes, certificates, evidence) to the network. It also feeds each epoch's
validator set (:meth:`ChainService.validator_set`) to the core.

Durability (review M2, L1): a block is stored in the journal (fsynced) before the core hears
it is valid, so before NOTARIZE is signed, and our own block before the core sees it at
all; every certificate the core broadcasts is journaled; a finalization certificate is
written in the batch that commits its block. On start the driver executes the stored blocks
again, starts the core (which re-sends what slashing protection says it signed) and replays
the journaled certificates, so a node (or a whole network) that crashed between FINALIZE and
commit finishes the slot.

Back-pressure (review §2 item 8): the inbox is bounded, and every sender *awaits* ``send``.
While the driver executes a block or commits one (worker threads it waits for), messages
queue in the inbox; when it is full, senders wait: the ticker (its tick is late, never
lost), the producer and the fetcher (their result waits), and the network's per-peer readers
(which then stop reading from their peers: TCP back-pressure). Nothing is dropped. The only
``send_nowait`` calls go *out* of the driver (build and fetch requests, outbound messages),
so no two tasks can wait on each other.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import assert_never

import trio

from moderntensor import offload
from moderntensor._notarized import notarized_path
from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.chain import Chain, ExecutedBlock, InvalidBlock, MissingParent
from moderntensor.chain.constants import MAX_BLOCK_EVIDENCE
from moderntensor.chain.timing import compute_block_epoch, compute_boundary_height
from moderntensor.chain.votes import (
    Evidence,
    InvalidEvidence,
    decode_evidence,
    evidence_id,
)
from moderntensor.consensus import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    Certificate,
    ConsensusRemoteError,
    EpochEntered,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    FetchCertificates,
    Finalized,
    Proposal,
    SetTimer,
    SigningRefused,
    SimplexCore,
    Verdict,
    compute_slot_at,
    compute_slot_start_ms,
)
from moderntensor.node._events import DriverEvent, NetworkMessage, PeerStatus, wall_clock_ms
from moderntensor.node._evidence import EvidencePool
from moderntensor.node._fetch import (
    BlocksFetched,
    CertificateRequest,
    CertificatesFetched,
    FetchFailed,
    FetchQueue,
    FetchRequest,
)
from moderntensor.node._finality import FinalityCommitter
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._logging import event
from moderntensor.node._producer import BlockBuilt, BuildRequest
from moderntensor.node._restore import restore_blocks
from moderntensor.node._status import (
    WHY_NOT_SIGNING_EVERY_MS,
    ConsensusStatus,
    say_why_not_signing,
)
from moderntensor.node._sync import RangeSynced
from moderntensor.node._ticker import Tick, Ticker
from moderntensor.service import ChainService

__all__ = ["ConsensusDriver"]

log = logging.getLogger("moderntensor.node")


class ConsensusDriver:
    """One node's consensus loop; ``run`` is a long-lived nursery task.

    It is the only caller of the core's input methods (``on_tick``, ``on_proposal``,
    ``on_vote``, ...), so the core needs no locking; the producer signs through
    :meth:`SimplexCore.sign_proposal`, a call that never awaits. :meth:`handle` takes one
    inbox item (tests drive it step by step).
    """

    def __init__(
        self,
        chain: Chain,
        service: ChainService,
        core: SimplexCore,
        ticker: Ticker,
        chain_lock: trio.CapacityLimiter,
        journal: ConsensusJournal,
        *,
        build_requests: trio.MemorySendChannel[BuildRequest],
        new_heads: trio.MemorySendChannel[Header],
        fetch_requests: trio.MemorySendChannel[FetchRequest | CertificateRequest] | None = None,
        outbound: trio.MemorySendChannel[NetworkMessage] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.chain = chain
        self.service = service
        self.core = core
        self.config = core.config
        self.epoch_length = core.config.preset.epoch_length
        self.ticker = ticker
        self.chain_lock = chain_lock  # one worker thread at a time touches the chain
        self.journal = journal
        self.build_requests = build_requests
        self.new_heads = new_heads
        self.fetches = FetchQueue(fetch_requests)  # no channel: no block source (no network)
        self.outbound = outbound
        self.clock = clock
        self.evidence = EvidencePool(journal, self.config.chain_id, self.config.genesis_hash)
        self.last_finality_ms: int | None = None
        self.rejected_messages = 0
        self._last_unsynced_log = -(10**18)
        self.missing_verdicts = 0  # proposals whose parent was not here (fetched, then run)
        # proposals that got MISSING, by the parent they wait for, then by block hash
        self._waiting: dict[bytes, dict[bytes, Proposal]] = {}
        self.finality = FinalityCommitter(chain, journal, chain_lock)
        self._final_gap: bytes | None = None  # the block the newest final one waits for
        self._arrived = (b"", 0.0)  # the last proposal from the network and when it came
        self.add_known_validator_sets()

    # -- validator sets -------------------------------------------------------------------

    def add_known_validator_sets(self) -> None:
        """Give the core the sets of the epochs around its own that the committed chain fixes
        (the previous one, for evidence; the next one, which it needs to leave its epoch)."""
        for epoch in range(max(0, self.core.epoch - 1), self.core.epoch + 2):
            if self.core.epoch_set(epoch) is None:
                vset = self.service.validator_set(epoch)
                if vset is not None:
                    self.core.add_validator_set(vset)

    # -- the loop -------------------------------------------------------------------------

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[DriverEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Restore what the journal holds, start the core, then drive it until cancelled."""
        await self.start()
        task_status.started()
        async for item in inbox:
            await self.handle(item)

    async def start(self) -> None:
        """Execute the stored pending blocks again, gossip the stored evidence again, start
        the core, replay the journaled certificates of the rounds above the committed head
        (review M2, M4)."""
        restored = await restore_blocks(self.chain, self.journal, self.chain_lock)
        for raw in self.evidence.pending(len(self.evidence)):  # lost in flight, maybe
            self._send(decode_evidence(raw))
        await self.process(self.core.start(self.clock()))
        for block in restored:  # the core learns what it may build on or propose again
            await self.process(self.core.on_block(block, self.clock()))
        head = self.chain.head
        after = (compute_block_epoch(head.number, self.epoch_length), head.slot)
        replayed = 0
        for cert in self.journal.certificates_after(after):
            try:
                actions = self.core.on_certificate(cert, self.clock())
            except ConsensusRemoteError as exc:  # e.g. of a set this node no longer uses
                event(log, logging.DEBUG, "journaled certificate rejected", slot=cert.slot,
                      reason=str(exc))  # fmt: skip
                continue
            replayed += 1
            await self.process(actions)
        if replayed:
            event(log, logging.INFO, "certificates replayed", count=replayed,
                  view=self.core.view, finalized_slot=self.core.finalized.slot)  # fmt: skip

    async def handle(self, item: DriverEvent) -> None:
        """Feed one inbox item to the core and carry out what it asks for."""
        now = self.clock()
        try:
            if isinstance(item, Tick):
                actions = self.core.on_tick(now)
                self.fetches.retry(lambda h: self.chain.get_header(h) is not None)
                quiet = now - self._last_unsynced_log < WHY_NOT_SIGNING_EVERY_MS
                if not quiet and say_why_not_signing(self.core, self.service.peer_count()):
                    self._last_unsynced_log = now
            elif isinstance(item, BlockBuilt):
                actions = await self._on_built(item)
            elif isinstance(item, BlocksFetched):
                self.fetches.answered(item.requested)
                actions = []
                for block_hash in dict.fromkeys((*item.executed, item.requested)):
                    block = self._held(block_hash)
                    if block is not None:  # the core learns its slot, parent and height
                        actions += self.core.on_block(block, self.clock())
                actions += await self._on_available()
            elif isinstance(item, FetchFailed):
                self.fetches.answered(item.requested)
                event(log, logging.WARNING, "block fetch failed",
                      block="0x" + item.requested.hex(), reason=item.reason)  # fmt: skip
                actions = []
            elif isinstance(item, CertificatesFetched):
                self.fetches.answered_round((item.epoch, item.slot))
                actions = await self._feed_certificates(item.certificates)
            elif isinstance(item, RangeSynced):  # proven final by sync: commit them
                for ref, certificate in item.certificates:
                    self.finality.add(ref, certificate)
                actions = await self._commit_final()
            elif isinstance(item, PeerStatus):
                actions = self.core.on_status(item.certified, item.own_votes, now)
            elif isinstance(item, Proposal):
                self._arrived = (item.block_hash, trio.current_time())
                actions = self.core.on_proposal(item, now)
            elif isinstance(item, Certificate):
                actions = self.core.on_certificate(item, now)
            elif isinstance(item, Evidence):
                self.evidence.add_from_peer(item, self.chain.state_at(self.chain.head))
                actions = []
            else:
                actions = self.core.on_vote(item, now)
        except (ConsensusRemoteError, InvalidEvidence) as exc:  # a peer's fault, not ours
            self.rejected_messages += 1
            event(log, logging.DEBUG, "message rejected", kind=type(item).__name__,
                  reason=str(exc))  # fmt: skip
            return
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
                if isinstance(action.message, Certificate):
                    self.journal.record_certificate(action.message)
                self._send(action.message)
            elif isinstance(action, Finalized):
                queue.extend(await self._on_finalized(action))
            elif isinstance(action, FetchBlock):
                queue.extend(await self._want(action.block_hash, action.reason))
            elif isinstance(action, FetchCertificates):
                queue.extend(await self._want_certificates(action))
            elif isinstance(action, EpochEntered):
                self._on_epoch_entered(action)
            elif isinstance(action, EvidenceFound):
                self._on_evidence_found(action.evidence)
            elif isinstance(action, SigningRefused):
                event(log, logging.WARNING, "signing refused by slashing protection",
                      kind=action.kind.name, epoch=action.epoch, slot=action.slot,
                      reason=action.reason)  # fmt: skip
            else:  # mypy proves this unreachable: a new kind of action must be handled here
                assert_never(action)
        self.service.set_notarized(
            notarized_path(self.core.notarized(), self.chain.get_pending, self.chain.head)
        )

    # -- blocks: ours, others', missing ones ----------------------------------------------

    def _request_build(self, action: BuildBlock) -> None:
        if self.chain.get_header(action.parent.hash) is None:  # notarized, never seen here
            event(log, logging.WARNING, "cannot build: parent not here", slot=action.slot,
                  parent="0x" + action.parent.hash.hex())  # fmt: skip
            self.fetches.want(action.parent.hash, f"parent to build slot {action.slot} on")
            return
        evidence = self.evidence.pending(2 * MAX_BLOCK_EVIDENCE)
        request = BuildRequest(action.epoch, action.slot, action.parent, evidence)
        try:
            self.build_requests.send_nowait(request)
        except trio.WouldBlock:  # still building an earlier slot's block: this slot is lost
            event(log, logging.WARNING, "producer busy, slot skipped", slot=action.slot)

    async def _on_built(self, built: BlockBuilt) -> list[Action]:
        self.evidence.forget(built.dropped_evidence)
        if built.proposal is None:
            return []
        # Durable before the core sees it, so before anything is signed for it (M2).
        started = trio.current_time()
        await offload.run_sync(self.journal.store_block, built.proposal.block)
        self._send(built.proposal)
        block = built.proposal.block
        event(log, logging.INFO, "block built", slot=built.slot, height=block.number,
              txs=len(block.transactions), build_ms=round(built.build_ms),
              select_ms=round(built.select_ms), draft_ms=round(built.draft_ms),
              store_ms=round((trio.current_time() - started) * 1000))  # fmt: skip
        return self.core.on_proposal(built.proposal, self.clock())

    async def _execute(self, proposal: Proposal) -> list[Action]:
        """Execute a proposed block and tell the core: VALID (after storing it durably, so
        before NOTARIZE is signed), INVALID, or MISSING (its parent is not here: fetched,
        then executed again)."""
        block_hash = proposal.block_hash
        started = trio.current_time()
        arrived = self._arrived[1] if self._arrived[0] == block_hash else started
        lock_busy = self.chain_lock.borrowed_tokens > 0
        if self.chain.get_pending(block_hash) is None:
            try:
                await offload.run_sync(
                    self.chain.execute_block, proposal.block, limiter=self.chain_lock
                )
            except MissingParent as exc:
                self.missing_verdicts += 1
                event(log, logging.INFO, "proposal waits for its parent", slot=proposal.slot,
                      parent="0x" + exc.parent_hash.hex())  # fmt: skip
                self._waiting.setdefault(exc.parent_hash, {})[block_hash] = proposal
                return self.core.on_verdict(block_hash, Verdict.MISSING, self.clock())
            except InvalidBlock as exc:
                event(log, logging.WARNING, "invalid block proposed", slot=proposal.slot,
                      proposer="0x" + proposal.proposer.hex(), reason=exc.reason)  # fmt: skip
                return self.core.on_verdict(block_hash, Verdict.INVALID, self.clock())
        executed_at = trio.current_time()
        await offload.run_sync(self.journal.store_block, proposal.block)
        event(log, logging.INFO, "block executed", slot=proposal.slot,
              height=proposal.block.number, txs=len(proposal.block.transactions),
              waited_ms=round((started - arrived) * 1000), lock_busy=lock_busy,
              execute_ms=round((executed_at - started) * 1000),
              store_ms=round((trio.current_time() - executed_at) * 1000))  # fmt: skip
        return self.core.on_verdict(block_hash, Verdict.VALID, self.clock())

    async def _want(self, block_hash: bytes, reason: str) -> list[Action]:
        """The core wants a block: fetch it, unless it is here (then tell the core, and go on
        with what waited for it)."""
        block = self._held(block_hash)
        if block is None:
            self.fetches.want(block_hash, reason)
            return []
        return self.core.on_block(block, self.clock()) + await self._on_available()

    async def _want_certificates(self, action: FetchCertificates) -> list[Action]:
        """The core lacks a round's certificates: from the journal if it has them (a
        restart), else from peers."""
        rnd = (action.epoch, action.slot)
        journaled = self.journal.certificates_of(rnd)
        if journaled:
            return await self._feed_certificates(journaled)
        self.fetches.want_round(rnd, action.reason)
        return []

    async def _feed_certificates(self, certificates: Iterable[Certificate]) -> list[Action]:
        """Certificates from the journal or from peers: verified by the core, one by one."""
        actions: list[Action] = []
        for cert in certificates:
            try:
                actions += self.core.on_certificate(cert, self.clock())
            except ConsensusRemoteError as exc:
                self.rejected_messages += 1
                event(log, logging.DEBUG, "fetched certificate rejected", slot=cert.slot,
                      reason=str(exc))  # fmt: skip
        return actions

    def _held(self, block_hash: bytes) -> Block | None:
        """The block, if this node has it: executed (pending) or committed."""
        executed = self.chain.get_pending(block_hash)
        return executed.block if executed is not None else self.chain.chaindb.get_block(block_hash)

    async def _on_available(self) -> list[Action]:
        """Blocks arrived: execute the proposals that waited for them, commit final blocks."""
        ready = [p for p in self._waiting if self.chain.get_header(p) is not None]
        actions: list[Action] = []
        for parent in ready:
            self.fetches.forget(parent)
            for proposal in self._waiting.pop(parent).values():
                actions += await self._execute(proposal)
        return actions + await self._commit_final()

    # -- finality -------------------------------------------------------------------------

    async def _on_finalized(self, action: Finalized) -> list[Action]:
        self.finality.add(action.block, action.certificate)
        return await self._commit_final()

    async def _commit_final(self) -> list[Action]:
        """Commit the newest finalized block and the blocks between it and the head; fetch
        the first one missing, if any; enter the next epoch if the head is its boundary."""
        target = self.finality.target
        if target is None:
            return []
        started = trio.current_time()
        committed, gap = await self.finality.commit()
        commit_ms = round((trio.current_time() - started) * 1000)
        self._final_gap = gap
        if gap is not None:
            self.fetches.want(gap, f"ancestor of finalized slot {target.slot}")
        if committed:
            await self._after_commit(committed, commit_ms)
        return self._maybe_enter_epoch()

    async def _after_commit(self, committed: list[ExecutedBlock], commit_ms: int) -> None:
        """Tell the service, the evidence pool and the mempool service; log each block."""
        now = self.clock()
        head = self.chain.head
        for executed in committed:
            self.service.on_block_committed(executed)
        self.service.on_finalized(head)
        self.evidence.forget(raw for e in committed for raw in e.block.evidence)
        self.add_known_validator_sets()
        fin_slot = self.core.finalized.slot
        for parent, waiting in list(self._waiting.items()):  # their slots are decided now
            kept = {h: p for h, p in waiting.items() if p.slot > fin_slot}
            if kept:
                self._waiting[parent] = kept
            else:
                del self._waiting[parent]
                if parent != self._final_gap:  # still wanted to commit a final block
                    self.fetches.forget(parent)
        await self.new_heads.send(head)
        for executed in committed:
            header = executed.block.header
            finality_ms = now - compute_slot_start_ms(self.config, header.slot)
            self.last_finality_ms = finality_ms
            event(log, logging.INFO, "block finalized", slot=header.slot,
                  height=header.number, txs=len(executed.block.transactions),
                  gas=header.gas_used, root="0x" + header.state_root.hex()[:12],
                  finality_ms=finality_ms, commit_ms=commit_ms,
                  pool=len(self.service.pool))  # fmt: skip

    def _maybe_enter_epoch(self) -> list[Action]:
        """The committed head is the boundary block of the core's epoch, and the core did
        not enter the next epoch itself (it finalized the block without having seen it, or
        lacked the next set then): enter it now."""
        head = self.chain.head
        if head.number != compute_boundary_height(self.core.epoch, self.epoch_length):
            return []
        self.add_known_validator_sets()
        # The header's slot, never the slot of the round that finalized it (a re-proposal's
        # is later): every node must start the next epoch at the same view.
        boundary = BlockRef(head.slot, head.hash)
        return self.core.enter_epoch(self.core.epoch + 1, boundary, self.clock())

    def _on_epoch_entered(self, action: EpochEntered) -> None:
        self.add_known_validator_sets()
        vset = self.core.epoch_set(action.epoch)
        me = self.core.validator_id
        event(log, logging.INFO, "epoch entered", epoch=action.epoch,
              boundary_height=compute_boundary_height(action.epoch - 1, self.epoch_length),
              boundary_slot=action.boundary.slot,
              boundary="0x" + action.boundary.hash.hex()[:16],
              validators=0 if vset is None else len(vset),
              total_stake=0 if vset is None else vset.total_stake,
              set_hash="" if vset is None else "0x" + vset.set_hash.hex()[:16],
              member=vset is not None and me is not None and vset.stake_of(me) > 0,
              next_set_known=self.core.epoch_set(action.epoch + 1) is not None)  # fmt: skip

    # -- evidence and the network ---------------------------------------------------------

    def _on_evidence_found(self, evidence: Evidence) -> None:
        """Our core caught an equivocation: keep it (persisted) and gossip it, once."""
        if not self.evidence.add(evidence):
            return
        self._send(evidence)
        first, second = evidence.first, evidence.second
        event(log, logging.WARNING, "equivocation detected",
              validator="0x" + first.signer.hex(), epoch=first.epoch, slot=first.slot,
              kinds=f"{first.kind.name}+{second.kind.name}",
              evidence_id="0x" + evidence_id(evidence).hex())  # fmt: skip

    def _send(self, message: NetworkMessage) -> None:
        if self.outbound is None:
            return
        try:
            self.outbound.send_nowait(message)
        except trio.WouldBlock:  # the network is behind; it re-syncs by timeouts' re-sends
            event(log, logging.WARNING, "outbound queue full, message dropped",
                  kind=type(message).__name__)  # fmt: skip

    # -- start ----------------------------------------------------------------------------

    def status(self) -> ConsensusStatus:
        """Facts for the ``mt_*`` RPC methods and the metrics."""
        slot = compute_slot_at(self.config, self.clock())
        return ConsensusStatus.of(self.core, slot, self.last_finality_ms, len(self.evidence))
