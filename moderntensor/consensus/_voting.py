"""The voting rules of one epoch: per-slot state, tallies, certificates, timeouts, the parent
rule, finality and pruning. :class:`~moderntensor.consensus.SimplexCore` builds on this and
adds the inputs, the epoch changes and restarts (split only to keep each module readable).
"""

from __future__ import annotations

from collections.abc import Iterable

from moderntensor.chain.blocks import Block
from moderntensor.chain.timing import compute_boundary_height
from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind

from ._certificates import Certificate, SignatureVerifier, build_certificate
from ._errors import ConsensusLocalError, SlashingRefused
from ._evidence import EvidenceBook
from ._messages import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    FetchCertificates,
    Finalized,
    Proposal,
    SetTimer,
    SigningRefused,
)
from ._params import ConsensusConfig
from ._parents import (
    choose_parent,
    extends_notarized,
    lacking_for,
    missing_slots,
    newest_notarized_after,
)
from ._protection import ProtectedSigner, Round
from ._quorum import is_quorum
from ._schedule import ValidatorSet, compute_leader, compute_slot_start_ms
from ._slot import Phase, _Slot
from ._sync import SyncGate

Message = Proposal | SignedVote | Certificate


__all__ = ["Message", "_Voting"]


class _Voting:
    """What one core knows and decides within an epoch (mutable, private)."""

    def __init__(
        self,
        config: ConsensusConfig,
        validator_sets: Iterable[ValidatorSet],
        finalized: BlockRef,
        signer: ProtectedSigner | None = None,
        verifier: SignatureVerifier | None = None,
        *,
        finalized_height: int = 0,
        synced: bool = False,
        finalization: Certificate | None = None,
    ) -> None:
        self.config = config
        self._sets = {vs.epoch: vs for vs in validator_sets}
        self.epoch = finalized_height // config.preset.epoch_length
        self.finalized = finalized
        self.view = finalized.slot + 1
        self._signer = signer
        self._verifier = verifier or SignatureVerifier(config.chain_id, config.genesis_hash)
        if signer is not None and (
            signer.chain_id != config.chain_id or signer.genesis_hash != config.genesis_hash
        ):
            raise ConsensusLocalError("signer is configured for another chain")
        self._slots: dict[int, _Slot] = {}
        self._blocks: dict[bytes, tuple[int, bytes]] = {}  # hash -> (slot, parent hash)
        self._heights: dict[bytes, int] = {finalized.hash: finalized_height}
        self._boundary_blocks: dict[bytes, Block] = {}  # the epoch's last block, if seen
        self._notarized: dict[bytes, int] = {finalized.hash: finalized.slot}
        self._book = EvidenceBook()
        self._leaders: dict[Round, bytes | None] = {}
        self._last_timer: int | None = None
        self._failed: str | None = None
        self._last_finalization: Certificate | None = finalization
        # the finalization that opened the epoch (kept for peers still in the previous one)
        opened_here = finalized_height == self.epoch * config.preset.epoch_length
        self._epoch_entry: Certificate | None = finalization if opened_here else None
        self._next_epoch: dict[tuple[object, ...], Message] = {}
        self._gate = SyncGate(synced)
        self._asked: set[Round] = set()  # rounds whose certificates we asked peers for
        self._asked_blocks: set[bytes] = set()

    @property
    def validator_id(self) -> bytes | None:
        """This core's validator id, or None for an observer."""
        return None if self._signer is None else self._signer.validator_id

    @property
    def round(self) -> Round:
        """(epoch, view): where this core votes."""
        return (self.epoch, self.view)

    def epoch_set(self, epoch: int) -> ValidatorSet | None:
        """The set of ``epoch``, if known (the one place the core looks sets up)."""
        return self._sets.get(epoch)

    def leader(self, slot: int, epoch: int | None = None) -> bytes | None:
        """The leader of ``slot`` in ``epoch`` (default: the current one), if its set is known."""
        key = (self.epoch if epoch is None else epoch, slot)
        if key not in self._leaders:
            vset = self.epoch_set(key[0])
            self._leaders[key] = None if vset is None else compute_leader(vset, slot)
        return self._leaders[key]

    def notarized(self) -> dict[bytes, int]:
        """Notarized blocks above the finalized one, plus the finalized block: hash -> slot."""
        return dict(self._notarized)

    def certificate(self, kind: VoteKind, slot: int) -> list[Certificate]:
        """The certificates of ``kind`` this core holds for a live slot of its epoch."""
        state = self._slots.get(slot)
        if state is None:
            return []
        if kind is VoteKind.NOTARIZE:
            return list(state.notarizations.values())
        cert = state.nullification if kind is VoteKind.NULLIFY else state.finalization
        return [] if cert is None else [cert]

    @property
    def last_finalization(self) -> Certificate | None:
        """The newest finalization certificate this core applied."""
        return self._last_finalization

    def _slot(self, slot: int) -> _Slot:
        state = self._slots.get(slot)
        if state is None:
            state = self._slots[slot] = _Slot()
            self._seed_from_record(slot, state)
        return state

    def _seed_from_record(self, slot: int, state: _Slot) -> None:
        """What the durable record says we signed in this round, signed again (identical
        bytes, RFC 6979), so a restarted core neither contradicts nor forgets it (L3)."""
        signer = self._signer
        if signer is None:
            return
        mark = signer.protection.signed_mark
        if mark is None or (self.epoch, slot) > mark:
            return  # nothing is recorded above the highest round we ever signed in
        record = signer.protection.record_of(self.epoch, slot)
        for kind in (VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE):
            signed = record.get(kind)
            if signed is None:
                continue
            vote = signer.sign(kind, self.epoch, slot, signed)
            self._verifier.remember(vote)
            state.remember_mine(vote)

    @property
    def synced(self) -> bool:
        """Whether this core may sign again (sync before sign, review H2)."""
        return self._gate.synced

    def _check_synced(self) -> None:
        self._gate.reached(self.round)

    def _has(self, cert: Certificate) -> bool:
        state = self._slots.get(cert.slot)
        if state is None:
            return False
        if cert.kind is VoteKind.NOTARIZE:
            return cert.block_hash in state.notarizations
        if cert.kind is VoteKind.NULLIFY:
            return state.nullification is not None
        return state.finalization is not None

    def _deadline_for(self, slot: int, now_ms: int) -> int:
        """A view times out ``timeout`` after we enter it (and no earlier than ``timeout``
        after its slot starts), as in the paper: a node back from an outage does not nullify
        every missed slot at once (review C1, H2)."""
        start = compute_slot_start_ms(self.config, slot)
        return max(now_ms, start) + self.config.preset.timeout_ms

    def _record(self, vote: SignedVote) -> list[Action]:
        evidence = self._book.add(vote)
        return [] if evidence is None else [EvidenceFound(evidence)]

    def _is_member(self) -> bool:
        vset = self.epoch_set(self.epoch)
        return (
            self._signer is not None
            and vset is not None
            and vset.stake_of(self._signer.validator_id) > 0
        )

    def _sign(self, kind: VoteKind, slot: int, block_hash: bytes, now_ms: int) -> list[Action]:
        """Sign through slashing protection, broadcast, and count our own vote."""
        vset = self.epoch_set(self.epoch)
        if self._signer is None or vset is None or not self._is_member():
            return []
        if not self._gate.synced:
            return []  # sync before sign (review H2)
        state = self._slot(slot)
        try:
            vote = self._signer.sign(kind, self.epoch, slot, block_hash)
        except SlashingRefused as exc:
            # The durable record wins (e.g. we voted before a restart); do not ask again.
            if kind is VoteKind.NOTARIZE and state.phase is Phase.VALID:
                state.move(Phase.INVALID)
            elif kind is VoteKind.NULLIFY:
                state.nullify_refused = True
            return [SigningRefused(kind, self.epoch, slot, exc.reason)]
        self._verifier.remember(vote)
        state.remember_mine(vote)
        return [Broadcast(vote), *self._count(vote, vset, now_ms)]

    def _count(self, vote: SignedVote, vset: ValidatorSet, now_ms: int) -> list[Action]:
        """Tally an authentic vote; a tally reaching quorum becomes a certificate."""
        if vote.epoch != self.epoch or vote.slot <= self.finalized.slot:
            return []  # (a vote of an epoch we just left is not counted in the new one)
        state = self._slot(vote.slot)
        stake = vset.stake_of(vote.signer)
        h = vote.block_hash
        if vote.kind is VoteKind.NULLIFY:
            if vote.signer in state.nullify_votes or state.nullification is not None:
                return []
            state.nullify_votes[vote.signer] = vote
            state.nullify_stake += stake
            reached = is_quorum(state.nullify_stake, vset.total_stake)
            votes: Iterable[SignedVote] = state.nullify_votes.values()
        else:
            by_hash, stakes, certs = (
                (state.notarize_votes, state.notarize_stake, state.notarizations)
                if vote.kind is VoteKind.NOTARIZE
                else (state.finalize_votes, state.finalize_stake, {})
            )
            bucket = by_hash.setdefault(h, {})
            if vote.signer in bucket:
                return []
            bucket[vote.signer] = vote
            stakes[h] = stakes.get(h, 0) + stake
            done = h in certs if vote.kind is VoteKind.NOTARIZE else state.finalization is not None
            reached = not done and is_quorum(stakes[h], vset.total_stake)
            votes = bucket.values()
        if not reached:
            return []
        cert = build_certificate(vote.kind, self.epoch, vote.slot, h, votes)
        if self._signer is not None:
            self._signer.protection.observe_certificate(self.epoch, vote.slot)
        return [Broadcast(cert), *self._apply(cert, now_ms)]

    def _apply(self, cert: Certificate, now_ms: int) -> list[Action]:
        """React to a verified certificate: notarize/nullify move the view, finalize commits."""
        slot, h = cert.slot, cert.block_hash
        epoch = self.epoch
        state = self._slot(slot)
        actions: list[Action] = []
        if cert.kind is VoteKind.NOTARIZE:
            if h in state.notarizations:
                return []
            state.notarizations[h] = cert
            self._notarized[h] = slot
            if state.my_nullify is None and state.my_finalize is None:
                actions += self._sign(VoteKind.FINALIZE, slot, h, now_ms)
        elif cert.kind is VoteKind.NULLIFY:
            if state.nullification is not None:
                return []
            state.nullification = cert
        else:
            if state.finalization is not None or slot <= self.finalized.slot:
                return []
            state.finalization = cert
            self._notarized.setdefault(h, slot)
            header_slot = self._blocks.get(h, (slot, b""))[0]  # differs for a re-proposal
            actions += self._finalize(BlockRef(header_slot, h), cert, now_ms)
        if self.epoch != epoch:  # what we signed finished the epoch: nothing more here
            return actions
        if slot >= self.view:
            actions += self._enter_view(slot + 1, now_ms)
        else:
            actions += self._progress(now_ms)
        return actions

    def _enter_view(self, view: int, now_ms: int) -> list[Action]:
        if view <= self.view:
            return []
        self.view = view
        self._asked = set()  # ask again in the new view if still missing
        self._asked_blocks = set()
        state = self._slot(view)
        if state.deadline is None:
            state.deadline = self._deadline_for(view, now_ms)
        far = view - self.config.preset.max_future_slots
        for old, st in self._slots.items():
            if old < far and st.nullification is not None:
                st.compact()
        self._check_synced()
        return self._progress(now_ms)

    def _time_out(self, now_ms: int) -> list[Action]:
        """No notarization in the view in time: NULLIFY it, and re-send what lets a peer
        that lost messages catch up: our votes, the certificate that brought us here, the
        newest finalization and our FINALIZE of the highest notarized slot (review M1)."""
        view = self.view
        state = self._slot(view)
        state.deadline = now_ms + self.config.preset.timeout_ms
        actions: list[Action] = []
        if state.my_nullify is None and not state.nullify_refused:
            actions += self._sign(VoteKind.NULLIFY, view, ZERO_HASH, now_ms)
        elif state.my_nullify is not None:
            actions.append(Broadcast(state.my_nullify))
        if state.my_notarize is not None:
            actions.append(Broadcast(state.my_notarize))
        resend = [*self._entry_certificates(view), self._last_finalization, self._epoch_entry]
        seen: set[int] = set()
        for cert in resend:
            if cert is not None and id(cert) not in seen:
                seen.add(id(cert))
                actions.append(Broadcast(cert))
        pending = [
            st.my_finalize
            for _, st in sorted(self._slots.items())
            if st.my_finalize is not None and st.finalization is None
        ]
        if pending:
            actions.append(Broadcast(pending[-1]))
        return actions

    def _progress(self, now_ms: int) -> list[Action]:
        """Do what the current view allows now: build a block, or vote on a pending one."""
        return self._maybe_build(now_ms) + self._try_notarize(now_ms)

    def _maybe_build(self, now_ms: int) -> list[Action]:
        view = self.view
        if self._signer is None or not self._gate.synced:
            return []
        if self.leader(view) != self._signer.validator_id:
            return []
        state = self._slot(view)
        if state.build_requested or state.my_nullify is not None:
            return []
        if now_ms < compute_slot_start_ms(self.config, view):
            return []
        parent = self._choose_parent(view)
        if parent is None:
            first = newest_notarized_after(self._slots, self.finalized, view)
            gaps = missing_slots(self._slots, first, view, lambda st: st.nullification is None)
            return self._fetch_gaps(gaps, "our block", view)
        height = self._heights.get(parent.hash)
        if height is None:  # notarized, but we never saw it: get it before building on it
            if state.fetch_requested:
                return []
            state.fetch_requested = True
            return [FetchBlock(parent.hash, f"parent for our block in slot {view}")]
        boundary = compute_boundary_height(self.epoch, self.config.preset.epoch_length)
        if height >= boundary:
            # The epoch's last block is notarized but not final: no block may follow it in
            # this epoch, so propose that block again in this slot (docs/consensus.md).
            return self._repropose(view, parent.hash, now_ms)
        state.build_requested = True
        return [BuildBlock(self.epoch, view, parent)]

    def _choose_parent(self, slot: int) -> BlockRef | None:
        return choose_parent(self._slots, self.finalized, slot)

    def _extends_notarized(self, proposal: Proposal) -> bool:
        """The parent rule (one method, so the mutation tests can replace it)."""
        return extends_notarized(
            self._slots, self._notarized, self.finalized, proposal.parent_hash, proposal.slot
        )

    def _fetch_gaps(self, slots: list[int], why: str, slot: int) -> list[Action]:
        """Ask peers for the certificates of ``slots`` (a node that restarted, or jumped
        views, lacks them; Commonware's resolver does the same): each round once per view,
        at most 16, newest first."""
        wanted: list[Action] = []
        for t in slots[:16]:
            if (self.epoch, t) not in self._asked:
                self._asked.add((self.epoch, t))
                wanted.append(FetchCertificates(self.epoch, t, f"{why} in slot {slot}"))
        return wanted

    def _fetch_for(self, proposal: Proposal) -> list[Action]:
        """What the view's proposal lacks to check out (:func:`lacking_for`), asked once."""
        lacking = lacking_for(self._slots, self._notarized, self._blocks, proposal)
        if isinstance(lacking, bytes):
            if lacking in self._asked_blocks:
                return []
            self._asked_blocks.add(lacking)
            return [FetchBlock(lacking, f"parent of slot {proposal.slot}")]
        return self._fetch_gaps(*lacking, proposal.slot)

    def _try_notarize(self, now_ms: int) -> list[Action]:
        """Ask to execute the view's proposal once its parent checks out; vote once valid."""
        state = self._slots.get(self.view)
        if state is None or state.proposal is None:
            return []
        if state.my_notarize is not None or state.my_nullify is not None:
            return []
        if state.phase is Phase.PROPOSED:
            if not self._extends_notarized(state.proposal):
                return self._fetch_for(state.proposal)
            state.move(Phase.EXECUTING)
            return [ExecuteBlock(state.proposal)]
        if state.phase is Phase.VALID:
            return self._sign(VoteKind.NOTARIZE, self.view, state.proposal.block_hash, now_ms)
        return []

    def _finalize(self, block: BlockRef, cert: Certificate, now_ms: int) -> list[Action]:
        """Commit ``block`` and its known ancestors above the old finalized block; prune; and
        when ``block`` is the epoch's boundary block, enter the next epoch."""
        ancestors: list[BlockRef] = []
        complete = False
        cursor = block.hash
        while cursor in self._blocks:
            parent = self._blocks[cursor][1]
            if parent == self.finalized.hash:
                complete = True
                break
            known = self._blocks.get(parent)
            if known is None or known[0] <= self.finalized.slot:
                break
            ancestors.append(BlockRef(known[0], parent))
            cursor = parent
        ancestors.reverse()
        self.finalized = block
        self._last_finalization = cert
        self._prune()
        actions: list[Action] = [Finalized(block, cert, tuple(ancestors), complete)]
        if not complete:
            actions.append(FetchBlock(block.hash, f"finalized slot {block.slot} not linked"))
        boundary = compute_boundary_height(self.epoch, self.config.preset.epoch_length)
        if self._heights.get(block.hash) == boundary:
            actions += self._enter_epoch(self.epoch + 1, block, now_ms)
        return actions

    def _prune(self) -> None:
        fin = self.finalized
        self._slots = {s: st for s, st in self._slots.items() if s > fin.slot}
        self._notarized = {h: s for h, s in self._notarized.items() if s > fin.slot}
        self._notarized[fin.hash] = fin.slot
        self._blocks = {h: v for h, v in self._blocks.items() if v[0] > fin.slot}
        self._heights = {
            h: n for h, n in self._heights.items() if h in self._notarized or h in self._blocks
        }
        self._boundary_blocks = {
            h: b for h, b in self._boundary_blocks.items() if h in self._heights
        }
        self._leaders = {k: v for k, v in self._leaders.items() if k[1] > fin.slot}
        window = self.config.preset.evidence_window
        self._book.prune_below(self.epoch - 1, max(fin.slot, self.view) - window)
        if self._signer is not None:
            self._signer.protection.forget_cache_below(self.epoch, fin.slot)

    def _entry_certificates(self, view: int) -> list[Certificate]:
        state = self._slots.get(view - 1)
        if state is None:
            return []
        certs = list(state.notarizations.values())
        if state.nullification is not None:
            certs.append(state.nullification)
        return certs

    def wake_at(self, now_ms: int) -> int | None:
        """When the core next wants :meth:`on_tick`: its view's timeout, or the start of its
        slot if it leads it. A shell that handles actions in nested calls (entering an epoch
        while it works through an earlier list) asks this after a batch instead of trusting
        the last :class:`SetTimer` it saw."""
        state = self._slots.get(self.view)
        deadline = None if state is None else state.deadline
        if (
            self._signer is not None
            and (state is None or not state.build_requested)
            and self.leader(self.view) == self._signer.validator_id
        ):
            start = compute_slot_start_ms(self.config, self.view)
            if start > now_ms:
                deadline = start if deadline is None else min(deadline, start)
        return deadline

    def _finish(self, actions: list[Action], now_ms: int) -> list[Action]:
        """Append a :class:`SetTimer` when the next wake-up time changed."""
        self._slot(self.view)
        deadline = self.wake_at(now_ms)
        if deadline is not None and deadline != self._last_timer:
            self._last_timer = deadline
            actions.append(SetTimer(deadline))
        return actions

    def _enter_epoch(self, epoch: int, boundary: BlockRef, now_ms: int) -> list[Action]:
        """Start ``epoch`` after its boundary block (:class:`SimplexCore` implements it)."""
        raise NotImplementedError

    def _repropose(self, view: int, block_hash: bytes, now_ms: int) -> list[Action]:
        """Propose the epoch's last block again (:class:`SimplexCore` implements it)."""
        raise NotImplementedError
