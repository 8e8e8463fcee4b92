"""The voting core: one sans-I/O Simplex state machine per validator (or observer).

Every public method takes the input and ``now_ms`` and returns a list of actions; it never
reads a clock, sleeps or touches a socket. The only side effect is slashing protection's
durable write, which must happen before a signature exists (see ``_protection``).
"""

from __future__ import annotations

from collections.abc import Iterable

from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind

from ._certificates import Certificate, SignatureVerifier, build_certificate, verify_certificate
from ._errors import ConsensusLocalError, InvalidMessage, SlashingRefused
from ._evidence import EvidenceBook
from ._messages import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    EvidenceFound,
    ExecuteBlock,
    Finalized,
    Proposal,
    SetTimer,
    SigningRefused,
)
from ._params import ConsensusConfig
from ._protection import ProtectedSigner
from ._quorum import is_quorum
from ._schedule import ValidatorSet, compute_leader, compute_slot_start_ms
from ._slot import CoreFailed, _guarded, _Slot

__all__ = ["CoreFailed", "SimplexCore"]


class SimplexCore:
    """One validator's (or an observer's, with ``signer=None``) view of Simplex consensus.

    Args:
        config: chain identity, genesis time and preset.
        validator_sets: the sets of the epochs known so far (more via
            :meth:`add_validator_set`); messages for an epoch without a set are ignored.
        finalized: the last finalized block (the genesis block, slot 0, on a fresh chain).
        signer: this validator's key behind slashing protection; None to only follow.
        verifier: a signature cache (may be shared by cores of one process).
    """

    def __init__(
        self,
        config: ConsensusConfig,
        validator_sets: Iterable[ValidatorSet],
        finalized: BlockRef,
        signer: ProtectedSigner | None = None,
        verifier: SignatureVerifier | None = None,
    ) -> None:
        self.config = config
        self._sets = {vs.epoch: vs for vs in validator_sets}
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
        self._notarized: dict[bytes, int] = {finalized.hash: finalized.slot}
        self._book = EvidenceBook()
        self._leaders: dict[int, bytes | None] = {}
        self._last_timer: int | None = None
        self._failed: str | None = None

    # ----------------------------------------------------------------- reads

    @property
    def validator_id(self) -> bytes | None:
        """This core's validator id, or None for an observer."""
        return None if self._signer is None else self._signer.validator_id

    def validator_set(self, slot: int) -> ValidatorSet | None:
        """The set of the epoch of ``slot``, if known."""
        return self._sets.get(slot // self.config.preset.epoch_length)

    def leader(self, slot: int) -> bytes | None:
        """The leader of ``slot``, if its epoch's set is known."""
        if slot not in self._leaders:
            vset = self.validator_set(slot)
            self._leaders[slot] = None if vset is None else compute_leader(vset, slot)
        return self._leaders[slot]

    def notarized(self) -> dict[bytes, int]:
        """Notarized blocks above the finalized one, plus the finalized block: hash -> slot."""
        return dict(self._notarized)

    def certificate(self, kind: VoteKind, slot: int) -> list[Certificate]:
        """The certificates of ``kind`` this core holds for a live slot."""
        state = self._slots.get(slot)
        if state is None:
            return []
        if kind is VoteKind.NOTARIZE:
            return list(state.notarizations.values())
        cert = state.nullification if kind is VoteKind.NULLIFY else state.finalization
        return [] if cert is None else [cert]

    # ---------------------------------------------------------------- inputs

    def add_validator_set(self, validator_set: ValidatorSet) -> None:
        """Learn the set of another epoch (the shell computes it by the validator-set rule)."""
        self._sets[validator_set.epoch] = validator_set
        first = validator_set.epoch * self.config.preset.epoch_length
        for slot in range(first, first + self.config.preset.epoch_length):
            self._leaders.pop(slot, None)

    @_guarded
    def start(self, now_ms: int) -> list[Action]:
        """Enter the first slot after the finalized block: arm the timer, build if leader."""
        state = self._slot(self.view)
        if state.deadline is None:
            state.deadline = self._deadline_for(self.view, now_ms)
        return self._finish(self._progress(now_ms), now_ms)

    @_guarded
    def on_proposal(self, proposal: Proposal, now_ms: int) -> list[Action]:
        """A block proposal from the network (or our own, after :meth:`sign_proposal`).

        Raises:
            InvalidMessage: the proposer is not the slot's leader, or the signature is not its.
        """
        slot = proposal.slot
        if self._ignored(slot):
            return []
        if proposal.proposer != self.leader(slot):
            raise InvalidMessage(f"proposer is not the leader of slot {slot}", proposal)
        vote = proposal.propose_vote()
        if not self._verifier.is_authentic(vote):
            raise InvalidMessage(
                f"proposal for slot {slot}: signature is not the leader's", proposal
            )
        actions = self._record(vote)
        if slot > self.finalized.slot:
            state = self._slot(slot)
            if state.proposal is None:
                state.proposal = proposal
                self._blocks.setdefault(proposal.block_hash, (slot, proposal.parent_hash))
                actions += self._try_notarize(now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_verdict(self, block_hash: bytes, valid: bool, now_ms: int) -> list[Action]:
        """The shell executed a block we asked about (:class:`ExecuteBlock`)."""
        known = self._blocks.get(block_hash)
        state = None if known is None else self._slots.get(known[0])
        if known is None or state is None or state.proposal is None:
            return []
        if state.proposal.block_hash != block_hash or state.verdict is not None:
            return []
        state.verdict = valid
        return self._finish(self._try_notarize(now_ms), now_ms)

    @_guarded
    def on_vote(self, vote: SignedVote, now_ms: int) -> list[Action]:
        """A signed vote from the network (any kind; a PROPOSE only feeds evidence).

        Raises:
            InvalidMessage: the signer is not in the slot's set, or the signature is not its.
        """
        if self._ignored(vote.slot):
            return []
        vset = self.validator_set(vote.slot)
        if vset is None:
            return []
        if vset.stake_of(vote.signer) == 0:
            raise InvalidMessage(f"vote signer 0x{vote.signer.hex()} is not in the set", vote)
        if not self._verifier.is_authentic(vote):
            raise InvalidMessage(f"vote signature is not 0x{vote.signer.hex()}'s", vote)
        actions = self._record(vote)
        if vote.kind is not VoteKind.PROPOSE and vote.slot > self.finalized.slot:
            actions += self._count(vote, vset, now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_certificate(self, cert: Certificate, now_ms: int) -> list[Action]:
        """A certificate from the network (or from sync).

        Raises:
            InvalidCertificate: not a quorum of authentic votes of the slot's epoch set.
        """
        if cert.slot <= self.finalized.slot:
            return []
        vset = self.validator_set(cert.slot)
        if vset is None or self._has(cert):
            return []
        verify_certificate(cert, vset, self._verifier)
        actions: list[Action] = []
        if cert.slot <= self.view + self.config.preset.max_future_slots:
            for vote in cert.votes():
                actions += self._record(vote)
        actions.append(Broadcast(cert))
        actions += self._apply(cert, now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_tick(self, now_ms: int) -> list[Action]:
        """The timer fired (or any clock tick): build if leading, nullify on timeout."""
        actions = self._maybe_build(now_ms)
        view = self.view
        state = self._slot(view)
        if state.deadline is None:
            state.deadline = self._deadline_for(view, now_ms)
        if now_ms >= state.deadline and not state.notarizations and state.nullification is None:
            state.deadline = now_ms + self.config.preset.timeout_ms
            if state.my_nullify is None:
                actions += self._sign(VoteKind.NULLIFY, view, ZERO_HASH, now_ms)
            else:  # retransmit what we said, and why we are in this slot
                actions.append(Broadcast(state.my_nullify))
                if state.my_notarize is not None:
                    actions.append(Broadcast(state.my_notarize))
                actions += [Broadcast(c) for c in self._entry_certificates(view)]
        return self._finish(actions, now_ms)

    @_guarded
    def sign_proposal(self, slot: int, seal_hash: bytes) -> SignedVote:
        """Sign the seal hash of the block built for a :class:`BuildBlock` we issued.

        Raises:
            ConsensusLocalError: we are not a validator, or did not ask for a block in ``slot``.
            SlashingRefused: we already signed another proposal for ``slot``.
        """
        state = self._slots.get(slot)
        if self._signer is None or state is None or not state.build_requested:
            raise ConsensusLocalError(f"no block was requested for slot {slot}")
        vote = self._signer.sign(VoteKind.PROPOSE, slot, seal_hash)
        self._verifier.remember(vote)
        return vote

    # ------------------------------------------------------------- internals

    def _slot(self, slot: int) -> _Slot:
        state = self._slots.get(slot)
        if state is None:
            state = self._slots[slot] = _Slot()
        return state

    def _ignored(self, slot: int) -> bool:
        """Too old even for evidence, or too far ahead to hold state for."""
        preset = self.config.preset
        return (
            slot < self.finalized.slot - preset.evidence_window
            or slot > self.view + preset.max_future_slots
            or self.validator_set(slot) is None
        )

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
        """A slot times out ``timeout`` after its start, and at once if that is past: a node
        that was down (or far behind) nullifies the slots it missed without waiting a full
        timeout on each, so it catches up with the wall clock instead of falling further back.
        """
        start = compute_slot_start_ms(self.config, slot)
        return max(now_ms, start + self.config.preset.timeout_ms)

    def _record(self, vote: SignedVote) -> list[Action]:
        evidence = self._book.add(vote)
        return [] if evidence is None else [EvidenceFound(evidence)]

    def _is_member(self, slot: int) -> bool:
        vset = self.validator_set(slot)
        return (
            self._signer is not None
            and vset is not None
            and vset.stake_of(self._signer.validator_id) > 0
        )

    def _sign(self, kind: VoteKind, slot: int, block_hash: bytes, now_ms: int) -> list[Action]:
        """Sign through slashing protection, broadcast, and count our own vote."""
        vset = self.validator_set(slot)
        if self._signer is None or vset is None or not self._is_member(slot):
            return []
        state = self._slot(slot)
        try:
            vote = self._signer.sign(kind, slot, block_hash)
        except SlashingRefused as exc:
            # The durable record wins (e.g. we voted before a restart); do not ask again.
            if kind is VoteKind.NOTARIZE:
                state.verdict = False
            return [SigningRefused(kind, slot, exc.reason)]
        self._verifier.remember(vote)
        if kind is VoteKind.NOTARIZE:
            state.my_notarize = vote
        elif kind is VoteKind.NULLIFY:
            state.my_nullify = vote
        else:
            state.my_finalize = vote
        return [Broadcast(vote), *self._count(vote, vset, now_ms)]

    def _count(self, vote: SignedVote, vset: ValidatorSet, now_ms: int) -> list[Action]:
        """Tally an authentic vote; a tally reaching quorum becomes a certificate."""
        state = self._slot(vote.slot)
        stake = vset.stake_of(vote.signer)
        h = vote.block_hash
        if vote.kind is VoteKind.NULLIFY:
            if vote.signer in state.nullify_votes:
                return []
            state.nullify_votes[vote.signer] = vote
            state.nullify_stake += stake
            reached = state.nullification is None and is_quorum(
                state.nullify_stake, vset.total_stake
            )
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
        cert = build_certificate(vote.kind, vote.slot, h, votes)
        return [Broadcast(cert), *self._apply(cert, now_ms)]

    def _apply(self, cert: Certificate, now_ms: int) -> list[Action]:
        """React to a verified certificate: notarize/nullify move the view, finalize commits."""
        slot, h = cert.slot, cert.block_hash
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
            actions += self._finalize(BlockRef(slot, h), cert)
        if slot >= self.view:
            actions += self._enter_view(slot + 1, now_ms)
        else:
            actions += self._progress(now_ms)
        return actions

    def _enter_view(self, view: int, now_ms: int) -> list[Action]:
        if view <= self.view:
            return []
        self.view = view
        state = self._slot(view)
        if state.deadline is None:
            state.deadline = self._deadline_for(view, now_ms)
        return self._progress(now_ms)

    def _progress(self, now_ms: int) -> list[Action]:
        """Do what the current view allows now: build a block, or vote on a pending one."""
        return self._maybe_build(now_ms) + self._try_notarize(now_ms)

    def _maybe_build(self, now_ms: int) -> list[Action]:
        view = self.view
        if self._signer is None or self.leader(view) != self._signer.validator_id:
            return []
        state = self._slot(view)
        if state.build_requested or state.my_nullify is not None:
            return []
        if now_ms < compute_slot_start_ms(self.config, view):
            return []
        parent = self._choose_parent(view)
        if parent is None:
            return []
        state.build_requested = True
        return [BuildBlock(view, parent)]

    def _choose_parent(self, slot: int) -> BlockRef | None:
        """The latest notarized block such that every slot after it (before ``slot``) is
        nullified in our view; None while a certificate in between is missing."""
        for t in range(slot - 1, self.finalized.slot, -1):
            state = self._slots.get(t)
            if state is not None and state.notarizations:
                return BlockRef(t, min(state.notarizations))
            if state is None or state.nullification is None:
                return None
        return self.finalized

    def _extends_notarized(self, proposal: Proposal) -> bool:
        """The parent is notarized (or final), older, and every slot between is nullified."""
        parent_slot = self._notarized.get(proposal.parent_hash)
        if parent_slot is None or not self.finalized.slot <= parent_slot < proposal.slot:
            return False
        for t in range(parent_slot + 1, proposal.slot):
            state = self._slots.get(t)
            if state is None or state.nullification is None:
                return False
        return True

    def _try_notarize(self, now_ms: int) -> list[Action]:
        """Ask to execute the view's proposal once its parent checks out; vote once valid."""
        state = self._slots.get(self.view)
        if state is None or state.proposal is None:
            return []
        if state.my_notarize is not None or state.my_nullify is not None:
            return []
        if not state.executing:
            if not self._extends_notarized(state.proposal):
                return []
            state.executing = True
            return [ExecuteBlock(state.proposal)]
        if state.verdict:
            return self._sign(VoteKind.NOTARIZE, self.view, state.proposal.block_hash, now_ms)
        return []

    def _finalize(self, block: BlockRef, cert: Certificate) -> list[Action]:
        """Commit ``block`` and its known ancestors above the old finalized block; prune."""
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
        self._prune()
        return [Finalized(block, cert, tuple(ancestors), complete)]

    def _prune(self) -> None:
        fin = self.finalized
        self._slots = {s: st for s, st in self._slots.items() if s > fin.slot}
        self._notarized = {h: s for h, s in self._notarized.items() if s > fin.slot}
        self._notarized[fin.hash] = fin.slot
        self._blocks = {h: v for h, v in self._blocks.items() if v[0] > fin.slot}
        self._leaders = {s: v for s, v in self._leaders.items() if s > fin.slot}
        self._book.prune_below(fin.slot - self.config.preset.evidence_window)
        if self._signer is not None:
            self._signer.protection.forget_cache_below(fin.slot)

    def _entry_certificates(self, view: int) -> list[Certificate]:
        state = self._slots.get(view - 1)
        if state is None:
            return []
        certs = list(state.notarizations.values())
        if state.nullification is not None:
            certs.append(state.nullification)
        return certs

    def _finish(self, actions: list[Action], now_ms: int) -> list[Action]:
        """Append a :class:`SetTimer` when the next wake-up time changed."""
        state = self._slot(self.view)
        deadline = state.deadline
        if (
            self._signer is not None
            and not state.build_requested
            and self.leader(self.view) == self._signer.validator_id
        ):
            start = compute_slot_start_ms(self.config, self.view)
            if start > now_ms:
                deadline = start if deadline is None else min(deadline, start)
        if deadline is not None and deadline != self._last_timer:
            self._last_timer = deadline
            actions.append(SetTimer(deadline))
        return actions
