"""Byzantine validators: each is a real node whose outgoing frames pass through an actor
that holds its consensus key *without* slashing protection, and rewrites, adds or withholds
frames per destination (``SimNetwork.tamper``).

* ``equivocator``: to every odd-numbered peer it sends, instead of its own proposal, another
  block of the same slot (the same block with other extra data, re-signed: as valid as the
  first), and its NOTARIZE and FINALIZE votes for that other block (for a block not its own:
  a NOTARIZE for a block that does not exist). Split along a partition of the honest nodes by
  parity, each side sees a leader and a voter that back its own block. The honest nodes
  relay both halves, see two signatures for one slot and report evidence; the validator must
  be slashed, exactly once.
* ``withholder``: sends none of its NOTARIZE, FINALIZE or NULLIFY votes (it still proposes).
* ``spammer``: adds, to every frame it sends, a vote of its own for a slot far in the future.
* ``silent``: sends nothing at all after the handshake (a crashed validator that looks up).
* ``block-withholder``: sends its own proposals only to a bare quorum of the validators
  (itself and the lowest-numbered others); the rest see the block notarized and must fetch it.
* ``replayer``: after each frame it sends, sends again one it sent 100 frames earlier (old
  votes, certificates, proposals): they must be ignored, never counted twice.
* ``mismatch``: sends each of its proposals as a re-proposal whose slot is not the one its
  signature covers: every honest node must refuse it (and drop the sender), never vote on it.
* ``invalid-parent``: as leader, sends instead of its block one built (with its node's own
  chain: validly signed, it executes fine) on the *grandparent*, skipping the notarized or
  final block of the slot before, which no nullification covers; its NOTARIZE backs that
  block. Honest nodes must refuse to notarize it (review M6), and finality must go on.
* ``doppelganger``: its key runs on a second node too (``_cluster``: its own data directory
  and slashing protection); the actor itself changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain, InvalidBlock
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.consensus import Proposal
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.network import MessageType, decode_message, encode_message, peek_type

__all__ = ["BEHAVIOURS", "Actor", "make_actor"]

Actor = Callable[[int, bytes], list[bytes]]
BEHAVIOURS = (
    "equivocator", "withholder", "spammer", "block-withholder", "replayer", "mismatch",
    "silent", "invalid-parent", "doppelganger",
)  # fmt: skip
REPLAY_LAG = 100
"""Frames between one sent and its replay (``replayer``)."""
_CONSENSUS = {MessageType.VOTE, MessageType.PROPOSAL, MessageType.CERTIFICATE}
_HANDSHAKE = {MessageType.HELLO, MessageType.HELLO_ACK}


@attrs.define
class _Signer:
    key: PrivateKey
    chain_id: int
    genesis_hash: bytes
    epoch_length: int

    def vote(self, kind: VoteKind, epoch: int, slot: int, block_hash: bytes) -> SignedVote:
        return sign_vote(self.key, self.chain_id, self.genesis_hash, kind, epoch, slot, block_hash)

    def other_block(self, proposal: Proposal) -> Proposal:
        """The same slot's block with other extra data, signed by the same leader."""
        block = proposal.block
        header = attrs.evolve(block.header, extra_data=b"equivocation", proposer_signature=b"")
        epoch = proposal.epoch(self.epoch_length)
        sig = self.vote(VoteKind.PROPOSE, epoch, header.slot, header.seal_hash).signature
        signed = attrs.evolve(header, proposer_signature=sig.to_bytes())
        return Proposal(Block(signed, block.transactions, block.evidence))

    def skipping_block(self, proposal: Proposal, chain: Chain | None) -> Proposal | None:
        """A block of the proposal's slot built on its parent's parent (an empty one, executed
        and signed like any), or None where there is none to build: the parent is genesis or
        unknown, or the block would fall into another epoch than the proposal's."""
        header = proposal.block.header
        parent = None if chain is None else chain.get_header(header.parent_hash)
        if chain is None or parent is None or parent.number == 0:
            return None
        grand = chain.get_header(parent.parent_hash)
        epoch = compute_block_epoch(parent.number, self.epoch_length)
        if grand is None or epoch != compute_block_epoch(header.number, self.epoch_length):
            return None
        try:
            draft = chain.draft_block(grand, header.slot, self.key.address, ())
        except InvalidBlock:
            return None
        sig = self.vote(VoteKind.PROPOSE, epoch, header.slot, draft.seal_hash).signature
        signed = attrs.evolve(draft.header, proposer_signature=sig.to_bytes())
        return Proposal(Block(signed, draft.transactions, draft.evidence))


def _own(message: object, key: PrivateKey) -> bool:
    if isinstance(message, SignedVote):
        return message.signer == key.address
    return (
        isinstance(message, Proposal)
        and not message.is_reproposal
        and (message.proposer == key.address)
    )


def make_actor(
    behaviour: str, key: PrivateKey, chain_id: int, genesis_hash: bytes, epoch_length: int,
    validators: int = 4, chain: Callable[[], Chain | None] = lambda: None,
) -> Actor:  # fmt: skip
    """The frame rewriter of one byzantine validator among ``validators``; ``chain`` gives
    its node's chain while it runs (``invalid-parent`` builds with it)."""
    signer = _Signer(key, chain_id, genesis_hash, epoch_length)
    history: list[bytes] = []
    quorum = validators * 2 // 3 + 1  # a bare quorum of equal stakes, itself included
    others: dict[bytes, bytes] = {}  # its block -> the other block it showed the odd half
    others_block: dict[bytes, Proposal] = {}
    tried: set[bytes] = set()
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r} (one of {', '.join(BEHAVIOURS)})")

    def act(dst: int, frame: bytes) -> list[bytes]:
        kind = peek_type(frame)
        if behaviour == "doppelganger":
            return [frame]
        if behaviour == "silent":
            return [frame] if kind in _HANDSHAKE or kind == MessageType.DISCONNECT else []
        if behaviour == "replayer":
            if kind in _HANDSHAKE:
                return [frame]
            history.append(frame)
            if len(history) > REPLAY_LAG:
                return [frame, history.pop(0)]
            return [frame]
        if kind not in _CONSENSUS:
            return [frame]
        message = decode_message(frame)
        if not _own(message, key):
            return [frame]
        if behaviour == "withholder":
            return [] if isinstance(message, SignedVote) and message.kind in (
                VoteKind.NOTARIZE, VoteKind.FINALIZE, VoteKind.NULLIFY) else [frame]  # fmt: skip
        if behaviour == "block-withholder":
            if isinstance(message, Proposal) and dst >= quorum - 1:
                return []  # only the quorum - 1 lowest-numbered others get it
            return [frame]
        if behaviour == "mismatch":
            if isinstance(message, Proposal):
                sig = message.signature
                shifted = Proposal.repropose(message.block, message.slot + 1, key.address, sig)
                return [encode_message(shifted)]
            return [frame]
        if behaviour == "invalid-parent":
            assert isinstance(message, SignedVote | Proposal)
            return _skip_parent(message, frame)
        if behaviour == "spammer":
            assert isinstance(message, SignedVote | Proposal)
            far = message.slot + 10_000
            extra = signer.vote(VoteKind.NOTARIZE, 0, far, keccak256(b"spam%d" % far))
            return [frame, encode_message(extra)]
        if dst % 2 == 0:  # equivocator: the even half gets the real thing
            return [frame]
        if isinstance(message, SignedVote) and message.kind in (VoteKind.NOTARIZE,
                                                                 VoteKind.FINALIZE):  # fmt: skip
            other = others.get(message.block_hash)
            if other is None:  # not its own block: a vote for a block that does not exist
                if message.kind is VoteKind.FINALIZE:
                    return [frame]
                other = keccak256(b"equivocation" + message.block_hash)
            return [encode_message(signer.vote(message.kind, message.epoch, message.slot,
                                               other))]  # fmt: skip
        if isinstance(message, Proposal):
            alternative = others_block.get(message.block_hash)
            if alternative is None:
                alternative = others_block[message.block_hash] = signer.other_block(message)
                others[message.block_hash] = alternative.block_hash
            return [encode_message(alternative)]
        return [frame]

    def _skip_parent(message: Proposal | SignedVote, frame: bytes) -> list[bytes]:
        if isinstance(message, Proposal) and not message.is_reproposal:
            if message.block_hash not in tried:  # built once, shown to every peer
                tried.add(message.block_hash)
                alternative = signer.skipping_block(message, chain())
                if alternative is not None:
                    others_block[message.block_hash] = alternative
                    others[message.block_hash] = alternative.block_hash
            alternative = others_block.get(message.block_hash)
            return [frame if alternative is None else encode_message(alternative)]
        if isinstance(message, SignedVote) and message.kind is VoteKind.NOTARIZE:
            other = others.get(message.block_hash)
            if other is not None:  # it backs the block it showed, not the one it built
                vote = signer.vote(message.kind, message.epoch, message.slot, other)
                return [encode_message(vote)]
        return [frame]

    return act
