"""The voting core: one sans-I/O Simplex state machine per validator (or observer).

Every public method takes the input and ``now_ms`` and returns a list of actions; it never
reads a clock, sleeps or touches a socket. The only side effect is slashing protection's
durable write, which must happen before a signature exists (see ``_protection``).

The core works in one epoch at a time (``epoch``); the messages of the previous epoch only
feed evidence, those of the next one wait in a bounded buffer until the core enters it.
"""

from __future__ import annotations

from collections.abc import Sequence

from moderntensor.chain.blocks import Block
from moderntensor.chain.timing import compute_boundary_height
from moderntensor.chain.votes import SignedVote, VoteKind
from moderntensor.crypto import InvalidSignature

from ._certificates import Certificate, verify_certificate
from ._errors import ConsensusLocalError, ConsensusRemoteError, InvalidMessage, SlashingRefused
from ._messages import (
    Action,
    BlockRef,
    Broadcast,
    EpochEntered,
    FetchBlock,
    Proposal,
    SigningRefused,
    Verdict,
)
from ._protection import Round
from ._schedule import ValidatorSet
from ._slot import CoreFailed, Phase, _guarded
from ._voting import Message, _Voting

MAX_NEXT_EPOCH_BUFFER = 4096
"""Verified messages of the next epoch held until the core enters it (oldest kept)."""


__all__ = ["CoreFailed", "SimplexCore"]


class SimplexCore(_Voting):
    """One validator's (or an observer's, with ``signer=None``) view of Simplex consensus.

    Args:
        config: chain identity, genesis time and preset.
        validator_sets: the sets of the epochs known so far (more via
            :meth:`add_validator_set`); messages of an epoch without a set are ignored.
        finalized: the last finalized block (the genesis block, slot 0, on a fresh chain).
        signer: this validator's key behind slashing protection; None to only follow.
        verifier: a signature cache (may be shared by cores of one process).
        finalized_height: the height of ``finalized``; the core works in the epoch of the
            next block, ``finalized_height // epoch_length``.
        synced: True when this node knows it is at the network's head (a fresh network, or
            a validator whose own stake is a quorum); otherwise it signs nothing new until
            :meth:`on_status` and certificates show where the network is (review H2).
        finalization: the stored certificate that finalized ``finalized``, re-sent on
            timeouts from the first one on (review M1) so peers behind can follow.
    """

    def add_validator_set(self, validator_set: ValidatorSet) -> None:
        """Learn the set of another epoch (the shell computes it by the validator-set rule)."""
        self._sets[validator_set.epoch] = validator_set
        for key in [k for k in self._leaders if k[0] == validator_set.epoch]:
            del self._leaders[key]

    @_guarded
    def start(self, now_ms: int) -> list[Action]:
        """Enter the first slot after the finalized block: arm the timer, re-send what the
        slashing-protection record says we signed above it (review M2), build if leader."""
        state = self._slot(self.view)
        if state.deadline is None:
            state.deadline = self._deadline_for(self.view, now_ms)
        actions = self._resend_recorded(now_ms)
        self._check_synced()
        return self._finish(actions + self._progress(now_ms), now_ms)

    @_guarded
    def on_status(
        self, certified: Round | None, own_votes: Sequence[SignedVote], now_ms: int
    ) -> list[Action]:
        """A peer's status: the highest round of a certificate it holds (None for none) and
        the votes of *ours* it still holds (:meth:`votes_of`).

        The votes are merged into our slashing-protection record first: a node whose record
        was lost (restored from a backup, a wiped data dir) then refuses anything that would
        contradict what peers can show (review H2). Until this core's round is past
        ``certified`` it signs nothing new (sync before sign).
        """
        signer = self._signer
        if signer is not None:
            for vote in own_votes:
                if vote.signer != signer.validator_id or not self._verifier.is_authentic(vote):
                    continue  # not ours, or not really signed: nothing to learn
                record = signer.protection.record_of(vote.epoch, vote.slot)
                if record.get(vote.kind) == vote.block_hash:
                    continue  # already in the record
                conflict = signer.protection.learn(
                    vote.kind, vote.epoch, vote.slot, vote.block_hash
                )
                state = self._slots.get(vote.slot)
                if conflict is None and vote.epoch == self.epoch and state is not None:
                    state.remember_mine(vote)
        self._gate.on_status(certified)
        self._gate.reached(self.round)
        return self._finish(self._progress(now_ms), now_ms)

    def votes_of(self, validator_id: bytes) -> list[SignedVote]:
        """What this core holds of a validator's messages, for its status after a restart:
        the evidence book, and what waits in the next-epoch buffer (proposals, votes, and the
        votes inside certificates)."""
        held = self._book.votes_of(validator_id)
        for message in self._next_epoch.values():
            if isinstance(message, Proposal):
                if message.proposer == validator_id:
                    held.append(message.propose_vote(self.config.preset.epoch_length))
            elif isinstance(message, Certificate):
                held += [v for v in message.votes() if v.signer == validator_id]
            elif message.signer == validator_id:
                held.append(message)
        return held

    @_guarded
    def enter_epoch(self, epoch: int, boundary: BlockRef, now_ms: int) -> list[Action]:
        """The shell committed ``boundary``, the finalized last block of epoch ``epoch - 1``
        (used when the core finalized it without knowing its height, or after sync).

        ``boundary.slot`` must be the block's *header* slot, not the slot of the round that
        finalized it (a re-proposal's is later): every node starts the epoch at the view after
        it (docs/consensus.md, "Epochs")."""
        if epoch <= self.epoch:
            return []
        return self._finish(self._enter_epoch(epoch, boundary, now_ms), now_ms)

    @_guarded
    def on_block(self, block: Block, now_ms: int) -> list[Action]:
        """The shell holds ``block`` (fetched from a peer, or executed): learn its slot,
        parent and height, which the core needs to build on it or to propose it again."""
        header = block.header
        if header.slot > self.finalized.slot:
            self._blocks.setdefault(block.hash, (header.slot, header.parent_hash))
        if header.slot > self.finalized.slot or block.hash == self.finalized.hash:
            self._heights[block.hash] = header.number
        if header.number == compute_boundary_height(self.epoch, self.config.preset.epoch_length):
            self._boundary_blocks[block.hash] = block
        return self._finish(self._progress(now_ms), now_ms)

    @_guarded
    def on_proposal(self, proposal: Proposal, now_ms: int) -> list[Action]:
        """A block proposal from the network (or our own, after :meth:`sign_proposal`).

        Raises:
            InvalidMessage: the proposer is not the slot's leader, or the header's signature
                is not its.
        """
        preset = self.config.preset
        epoch, slot = proposal.epoch(preset.epoch_length), proposal.slot
        where = self._classify(epoch, slot)
        if where is None or self.epoch_set(epoch) is None:
            return []
        if proposal.proposer != self.leader(slot, epoch):
            raise InvalidMessage(f"proposer is not the leader of slot {slot}", proposal)
        boundary = compute_boundary_height(epoch, preset.epoch_length)
        if proposal.is_reproposal and proposal.height != boundary:
            raise InvalidMessage(
                f"re-proposal in slot {slot} of a block that is not its epoch's last", proposal
            )
        try:
            vote = proposal.propose_vote(preset.epoch_length)
        except InvalidSignature:
            raise InvalidMessage(f"proposal for slot {slot}: malformed signature") from None
        if not self._verifier.is_authentic(vote):
            raise InvalidMessage(
                f"proposal for slot {slot}: signature is not the leader's", proposal
            )
        if where == "next":
            self._buffer(("proposal", proposal.block_hash), proposal)
            return []
        actions = self._record(vote)
        if where == "current" and slot > self.finalized.slot:
            actions += self._accept(proposal, now_ms)
        elif proposal.block_hash == self.finalized.hash:  # final before its proposal came
            self._heights[proposal.block_hash] = proposal.height
            actions += self._progress(now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_verdict(self, block_hash: bytes, verdict: Verdict, now_ms: int) -> list[Action]:
        """The shell executed a block we asked about (:class:`ExecuteBlock`).

        MISSING (an ancestor is not here) is not final: the core asks for the parent with
        :class:`FetchBlock` and waits for VALID or INVALID (review M3). INVALID in the
        current view nullifies at once instead of waiting for the timeout (review L4).
        """
        executing = [
            (slot, st)
            for slot, st in sorted(self._slots.items())
            if st.phase is Phase.EXECUTING
            and st.proposal is not None
            and st.proposal.block_hash == block_hash
        ]
        if not executing:
            return []
        if verdict is Verdict.MISSING:
            slot = executing[0][0]
            parent = self._blocks[block_hash][1]  # the header's parent, also for re-proposals
            return [FetchBlock(parent, f"parent of slot {slot}")]
        actions: list[Action] = []
        for slot, state in executing:
            state.move(Phase.VALID if verdict is Verdict.VALID else Phase.INVALID)
            if verdict is Verdict.INVALID and slot == self.view:
                actions += self._time_out(now_ms)
        actions += self._try_notarize(now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_vote(self, vote: SignedVote, now_ms: int) -> list[Action]:
        """A signed vote from the network (any kind; a PROPOSE only feeds evidence).

        Raises:
            InvalidMessage: the signer is not in its epoch's set, or the signature is not its.
        """
        where = self._classify(vote.epoch, vote.slot)
        vset = self.epoch_set(vote.epoch)
        if where is None or vset is None:
            return []
        self._check_member(vset, vote)
        if not self._verifier.is_authentic(vote):
            raise InvalidMessage(f"vote signature is not 0x{vote.signer.hex()}'s", vote)
        if where == "next":
            key = ("vote", vote.kind, vote.slot, vote.block_hash, vote.signer)
            self._buffer(key, vote)
            return []
        actions = self._record(vote)
        if where == "current" and vote.kind is not VoteKind.PROPOSE:
            if vote.slot > self.finalized.slot:
                actions += self._count(vote, vset, now_ms)
            if (
                vote.kind is VoteKind.NULLIFY
                and vote.slot == self.view
                and vote.signer == self.leader(self.view)
            ):  # the leader gave up its own slot: no block is coming (review L4)
                actions += self._time_out(now_ms)
        return self._finish(actions, now_ms)

    @_guarded
    def on_certificate(self, cert: Certificate, now_ms: int) -> list[Action]:
        """A certificate from the network (or from the shell's journal, or sync).

        Raises:
            InvalidCertificate: not a quorum of authentic votes of its epoch's set.
        """
        vset = self.epoch_set(cert.epoch)
        if vset is None or not self.epoch <= cert.epoch <= self.epoch + 1:
            return []
        if cert.epoch == self.epoch and (cert.slot <= self.finalized.slot or self._has(cert)):
            return []
        verify_certificate(cert, vset, self._verifier)
        if cert.epoch > self.epoch:
            self._buffer(("cert", cert.kind, cert.slot, cert.block_hash), cert)
            return []
        if self._signer is not None:
            self._signer.protection.observe_certificate(cert.epoch, cert.slot)
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
        state = self._slot(self.view)
        if state.deadline is None:
            state.deadline = self._deadline_for(self.view, now_ms)
        if now_ms >= state.deadline and not state.notarizations and state.nullification is None:
            actions += self._time_out(now_ms)
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
        vote = self._signer.sign(VoteKind.PROPOSE, self.epoch, slot, seal_hash)
        self._verifier.remember(vote)
        return vote

    def _classify(self, epoch: int, slot: int) -> str | None:
        """Where a message of round (epoch, slot) goes: ``current`` (vote with it),
        ``previous`` (evidence only), ``next`` (buffer until we enter that epoch) or None
        (too old even for evidence, or too far ahead to hold state for)."""
        preset = self.config.preset
        if slot < self.finalized.slot - preset.evidence_window:
            return None
        if epoch == self.epoch:
            return "current" if slot <= self.view + preset.max_future_slots else None
        if epoch == self.epoch - 1:
            return "previous"
        return "next" if epoch == self.epoch + 1 else None

    def _buffer(self, key: tuple[object, ...], message: Message) -> None:
        if key not in self._next_epoch and len(self._next_epoch) < MAX_NEXT_EPOCH_BUFFER:
            self._next_epoch[key] = message

    def _resend_recorded(self, now_ms: int) -> list[Action]:
        """Broadcast the votes the record holds for recent rounds of this epoch above the
        finalized slot, and count them again (a whole network that crashed between FINALIZE
        and commit finishes the slot this way, review M2)."""
        signer = self._signer
        mark = None if signer is None else signer.protection.signed_mark
        if mark is None or mark[0] != self.epoch or mark[1] <= self.finalized.slot:
            return []
        vset = self.epoch_set(self.epoch)
        first = max(self.finalized.slot + 1, mark[1] - self.config.preset.max_future_slots)
        actions: list[Action] = []
        epoch = self.epoch
        for slot in range(first, mark[1] + 1):
            if self.epoch != epoch:
                break  # what we counted finished the epoch
            state = self._slot(slot)
            for vote in (state.my_notarize, state.my_nullify, state.my_finalize):
                if vote is not None:
                    actions.append(Broadcast(vote))
                    if vset is not None:
                        actions += self._count(vote, vset, now_ms)
        return actions

    def _enter_epoch(self, epoch: int, boundary: BlockRef, now_ms: int) -> list[Action]:
        """Start ``epoch`` with views again just after its boundary block (docs/consensus.md,
        "Epochs"); replay what the buffer holds for it."""
        if self.epoch_set(epoch) is None:
            return []  # the shell calls enter_epoch again once it adds the set
        self.epoch = epoch
        self.finalized = boundary
        self.view = boundary.slot + 1
        self._epoch_entry = self._last_finalization
        self._slots = {}
        self._blocks = {}
        self._heights = {boundary.hash: epoch * self.config.preset.epoch_length}
        self._boundary_blocks = {}
        self._notarized = {boundary.hash: boundary.slot}
        self._leaders = {k: v for k, v in self._leaders.items() if k[0] >= epoch}
        self._prune()
        state = self._slot(self.view)
        state.deadline = self._deadline_for(self.view, now_ms)
        self._check_synced()
        actions: list[Action] = [EpochEntered(epoch, boundary)]
        buffered = list(self._next_epoch.values())
        self._next_epoch = {}
        for message in buffered:
            actions += self._replay(message, now_ms)
        return actions + self._progress(now_ms)

    def _replay(self, message: Message, now_ms: int) -> list[Action]:
        try:
            if isinstance(message, Proposal):
                return self.on_proposal(message, now_ms)
            if isinstance(message, Certificate):
                return self.on_certificate(message, now_ms)
            return self.on_vote(message, now_ms)
        except ConsensusRemoteError:
            return []

    def _repropose(self, view: int, block_hash: bytes, now_ms: int) -> list[Action]:
        signer = self._signer
        original = self._boundary_blocks.get(block_hash)
        if signer is None or original is None:
            return []
        state = self._slot(view)
        state.build_requested = True
        try:
            vote = signer.sign(VoteKind.PROPOSE, self.epoch, view, original.header.seal_hash)
        except SlashingRefused as exc:
            return [SigningRefused(VoteKind.PROPOSE, self.epoch, view, exc.reason)]
        self._verifier.remember(vote)
        again = Proposal.repropose(original, view, vote.signer, vote.signature)
        return [Broadcast(again), *self._record(vote), *self._accept(again, now_ms)]

    def _accept(self, proposal: Proposal, now_ms: int) -> list[Action]:
        """The first authentic proposal of a live slot from its leader becomes the slot's."""
        state = self._slot(proposal.slot)
        if state.proposal is not None:
            return []
        state.proposal = proposal
        state.move(Phase.PROPOSED)
        header = proposal.block.header
        self._blocks.setdefault(proposal.block_hash, (header.slot, header.parent_hash))
        self._heights[proposal.block_hash] = proposal.height
        if proposal.height == compute_boundary_height(self.epoch, self.config.preset.epoch_length):
            self._boundary_blocks[proposal.block_hash] = proposal.block
        return self._try_notarize(now_ms)

    def _check_member(self, vset: ValidatorSet, vote: SignedVote) -> None:
        """Raises InvalidMessage unless the vote's signer is in its epoch's set."""
        if vset.stake_of(vote.signer) == 0:
            raise InvalidMessage(f"vote signer 0x{vote.signer.hex()} is not in the set", vote)
