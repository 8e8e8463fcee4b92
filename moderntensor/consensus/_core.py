"""The voting core: one sans-I/O Simplex state machine per validator (or observer).

Every public method takes the input and ``now_ms`` and returns a list of actions; it never
reads a clock, sleeps or touches a socket. The only side effect is slashing protection's
durable write, which must happen before a signature exists (see ``_protection``).

The core works in one epoch at a time (``epoch``); the messages of the previous epoch only
feed evidence, those of the next one wait in a bounded buffer until the core enters it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from moderntensor.chain.blocks import Block
from moderntensor.chain.timing import compute_boundary_height
from moderntensor.chain.votes import ZERO_HASH, SignedVote, VoteKind
from moderntensor.crypto import InvalidSignature

from ._certificates import Certificate, SignatureVerifier, build_certificate, verify_certificate
from ._errors import ConsensusLocalError, ConsensusRemoteError, InvalidMessage, SlashingRefused
from ._evidence import EvidenceBook
from ._messages import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    EpochEntered,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    FetchCertificates,
    Finalized,
    Proposal,
    SetTimer,
    SigningRefused,
    Verdict,
)
from ._params import ConsensusConfig
from ._protection import ProtectedSigner, Round
from ._quorum import is_quorum
from ._schedule import ValidatorSet, compute_leader, compute_slot_start_ms
from ._slot import CoreFailed, Phase, _guarded, _Slot

__all__ = ["CoreFailed", "SimplexCore"]

Message = Proposal | SignedVote | Certificate
MAX_NEXT_EPOCH_BUFFER = 4096
"""Verified messages of the next epoch held until the core enters it (oldest kept)."""


class SimplexCore:
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
        self.synced = synced
        self.frontier: Round | None = None  # the highest certificate round peers reported
        self._status_seen = synced
        self._asked: set[Round] = set()  # rounds whose certificates we asked peers for
        self._asked_blocks: set[bytes] = set()
        self._sign_floor: Round | None = None  # after a lossy restart: sign only above it

    # ----------------------------------------------------------------- reads

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

    # ---------------------------------------------------------------- inputs

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
        self, certified: Round | None, current: Round | None, now_ms: int
    ) -> list[Action]:
        """Peers report where they are: the highest round of a certificate they hold
        (``certified``) and the highest round they vote in (``current``); None for nothing.

        Until this core's round is past ``certified`` it signs nothing new (sync before
        sign). If our own record does not reach ``current`` (a restore from a backup, a wiped
        data dir, a long absence, or a crash before we voted in that round: we cannot tell
        which), we also sign nothing but NULLIFY at or below ``current``, the round in which
        peers may hold votes of ours that the record lost (review H2). NULLIFY stays allowed
        so that a network of restarted nodes moves on (at the cost of that one round).
        """
        self._status_seen = True
        if certified is not None and (self.frontier is None or certified > self.frontier):
            self.frontier = certified
        mark = None if self._signer is None else self._signer.protection.signed_mark
        newest = max((r for r in (certified, current) if r is not None), default=None)
        intact = mark is not None and (newest is None or mark >= newest)
        floor = self._sign_floor
        if not intact and current is not None and (floor is None or current > floor):
            self._sign_floor = current
        self._check_synced()
        return self._finish(self._progress(now_ms), now_ms)

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

    # ------------------------------------------------------------- internals

    def _check_member(self, vset: ValidatorSet, vote: SignedVote) -> None:
        """Raises InvalidMessage unless the vote's signer is in its epoch's set."""
        if vset.stake_of(vote.signer) == 0:
            raise InvalidMessage(f"vote signer 0x{vote.signer.hex()} is not in the set", vote)

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
        record = signer.protection.record_of(self.epoch, slot)
        for kind in (VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE):
            signed = record.get(kind)
            if signed is None:
                continue
            vote = signer.sign(kind, self.epoch, slot, signed)
            self._verifier.remember(vote)
            state.remember_mine(vote)

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
        for slot in range(first, mark[1] + 1):
            state = self._slot(slot)
            for vote in (state.my_notarize, state.my_nullify, state.my_finalize):
                if vote is not None:
                    actions.append(Broadcast(vote))
                    if vset is not None:
                        actions += self._count(vote, vset, now_ms)
        return actions

    def _check_synced(self) -> None:
        if self.synced or not self._status_seen:
            return
        if self.frontier is None or (self.epoch, self.view) > self.frontier:
            self.synced = True

    def _may_sign(self, kind: VoteKind, slot: int) -> bool:
        """Sync before sign; at or below the floor of a lossy restart only NULLIFY (on a
        timeout), which lets a network of restored nodes move on: peers hold no
        certificate of that round, so a lost FINALIZE there is the one thing it could
        contradict, and that needs a notarization nobody else saw."""
        floor = self._sign_floor
        if not self.synced:
            return False
        return floor is None or (self.epoch, slot) > floor or kind is VoteKind.NULLIFY

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
        if not self._may_sign(kind, slot):
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
        if vote.slot <= self.finalized.slot:
            return []
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
            if cert.epoch != self.epoch:  # we entered the next epoch: nothing more here
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
        if self._signer is None or not self._may_sign(VoteKind.PROPOSE, view):
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
            return self._fetch_parent_gaps(view)
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

    def _fetch_gaps(
        self, first: int, slot: int, why: str, need: Callable[[_Slot], bool]
    ) -> list[Action]:
        """Ask peers for the certificates of the slots in ``[first, slot)`` where ``need``
        says one is missing (a node that restarted, or jumped views, lacks them; Commonware's
        resolver does the same). Each round is asked once per view, at most 16, newest first.
        """
        wanted: list[Action] = []
        for t in range(slot - 1, first - 1, -1):
            state = self._slots.get(t)
            if state is not None and not need(state):
                continue
            key = (self.epoch, t)
            if key not in self._asked:
                self._asked.add(key)
                wanted.append(FetchCertificates(self.epoch, t, f"{why} in slot {slot}"))
            if len(wanted) >= 16:
                break
        return wanted

    def _fetch_parent_gaps(self, view: int) -> list[Action]:
        """Our slot: the certificates between the newest notarized block and ``view``."""
        first = self.finalized.slot + 1
        for t in range(view - 1, self.finalized.slot, -1):
            state = self._slots.get(t)
            if state is not None and state.notarizations:
                first = t + 1
                break
        return self._fetch_gaps(
            first, view, "our block", lambda st: st.nullification is None and not st.notarizations
        )

    def _fetch_for(self, proposal: Proposal) -> list[Action]:
        """What the view's proposal lacks to check out: its parent (if we never saw it), the
        parent's notarization, or the nullifications between."""
        if proposal.parent_hash not in self._notarized:
            parent = self._blocks.get(proposal.parent_hash)
            if parent is not None:
                return self._fetch_gaps(
                    parent[0], parent[0] + 1, "parent", lambda st: not st.notarizations
                )
            if proposal.parent_hash in self._asked_blocks:
                return []
            self._asked_blocks.add(proposal.parent_hash)
            return [FetchBlock(proposal.parent_hash, f"parent of slot {proposal.slot}")]
        parent_slot = self._notarized[proposal.parent_hash]
        return self._fetch_gaps(
            parent_slot + 1, proposal.slot, "proposal", lambda st: st.nullification is None
        )

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
