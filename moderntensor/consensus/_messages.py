"""What goes into the voting core and what comes out: frozen data, no behaviour (STYLE rule 2).

Inputs are the arguments of :class:`~moderntensor.consensus.SimplexCore` methods; outputs are
the actions below, returned as a list for the Trio shell to carry out in order.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

import attrs

from moderntensor.chain.blocks import Block, Header
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.votes import Evidence, SignedVote, VoteKind
from moderntensor.crypto import Signature

from ._certificates import Certificate

__all__ = [
    "Action",
    "BlockRef",
    "Broadcast",
    "BuildBlock",
    "EpochEntered",
    "EvidenceFound",
    "ExecuteBlock",
    "FetchBlock",
    "FetchCertificates",
    "Finalized",
    "Proposal",
    "SetTimer",
    "SigningRefused",
    "Verdict",
]


def _hash32(_inst: object, attr: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{attr.name} must be 32 bytes")


@attrs.frozen(slots=True)
class BlockRef:
    """A block by slot and (full header) hash."""

    slot: int
    hash: bytes = attrs.field(validator=_hash32)


class Verdict(enum.Enum):
    """What executing a proposed block showed.

    MISSING is not final: the block's parent (or an older ancestor) is not here yet. The core
    asks for it with :class:`FetchBlock` and waits for a final VALID or INVALID verdict.
    """

    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"


@attrs.frozen(slots=True)
class Proposal:
    """A leader's block as the core sees it: its fields are read from the block's header.

    ``Proposal(block)`` is how a proposal is made, so the slot, parent, seal hash, proposer
    and signature the core checks are always the ones of the block it asks the shell to
    execute (review H1): no decoder can pair one block with another block's fields.

    The one other kind, :meth:`repropose`, is how an epoch finishes (docs/consensus.md,
    "Epochs"): no block may follow the epoch's boundary block inside the epoch, so when that
    block is notarized but its slot cannot finalize it, a later leader proposes the *same*
    block again in its own slot. It signs PROPOSE over (epoch, its slot, the block's seal
    hash); its slot, id and signature are the only fields not taken from the header, and the
    signature binds them.
    """

    block: Block
    round_slot: int | None = None
    round_proposer: bytes | None = None
    round_signature: Signature | None = None
    _signature: Signature | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @classmethod
    def repropose(cls, block: Block, slot: int, proposer: bytes, signature: Signature) -> Proposal:
        """The leader of ``slot`` proposes ``block`` (its epoch's boundary block) again."""
        if slot <= block.header.slot:
            raise ValueError(f"re-proposal slot {slot} is not after the block's slot")
        return cls(block, slot, proposer, signature)

    @property
    def is_reproposal(self) -> bool:
        return self.round_slot is not None

    @property
    def header(self) -> Header:
        return self.block.header

    @property
    def slot(self) -> int:
        """The slot (round) the proposal is for."""
        return self.block.header.slot if self.round_slot is None else self.round_slot

    @property
    def height(self) -> int:
        return self.block.header.number

    @property
    def block_hash(self) -> bytes:
        return self.block.header.hash

    @property
    def parent_hash(self) -> bytes:
        """The block it extends; a re-proposal counts as an empty child of its block."""
        return self.block.header.hash if self.is_reproposal else self.block.header.parent_hash

    @property
    def seal_hash(self) -> bytes:
        return self.block.header.seal_hash

    @property
    def proposer(self) -> bytes:
        if self.round_proposer is not None:
            return self.round_proposer
        return self.block.header.proposer

    @property
    def signature(self) -> Signature:
        """The proposer's signature (the header's, or the re-proposer's).

        Raises:
            InvalidSignature: the header's signature bytes are malformed.
        """
        if self.round_signature is not None:
            return self.round_signature
        sig = self._signature
        if sig is None:
            sig = Signature.from_bytes(self.block.header.proposer_signature)
            object.__setattr__(self, "_signature", sig)
        return sig

    def epoch(self, epoch_length: int) -> int:
        """The epoch of the block (epochs count blocks: ``chain.timing``)."""
        return compute_block_epoch(self.height, epoch_length)

    def propose_vote(self, epoch_length: int) -> SignedVote:
        """The signed PROPOSE message inside the proposal (what equivocation evidence uses).

        Raises:
            InvalidSignature: the header's signature bytes are malformed.
        """
        return SignedVote(
            VoteKind.PROPOSE,
            self.epoch(epoch_length),
            self.slot,
            self.seal_hash,
            self.proposer,
            self.signature,
        )


@attrs.frozen(slots=True)
class Broadcast:
    """Send a vote, certificate or (re-)proposal to every peer (gossip deduplicates)."""

    message: SignedVote | Certificate | Proposal


@attrs.frozen(slots=True)
class ExecuteBlock:
    """Execute the proposed block and report with ``on_verdict(block_hash, verdict, now)``."""

    proposal: Proposal


@attrs.frozen(slots=True)
class FetchBlock:
    """Get the block with this hash (and its missing ancestors) from peers, then execute it.

    Emitted for a MISSING verdict and for a finalized block this node cannot link to its
    chain (``Finalized.complete`` False); ``reason`` is for the log.
    """

    block_hash: bytes
    reason: str


@attrs.frozen(slots=True)
class FetchCertificates:
    """Get the certificates of round (``epoch``, ``slot``) from peers and feed them back with
    ``on_certificate`` (a missing nullification or notarization keeps us from building on,
    or voting for, a block); ``reason`` is for the log."""

    epoch: int
    slot: int
    reason: str


@attrs.frozen(slots=True)
class EpochEntered:
    """The core moved to ``epoch``: its first view follows ``boundary``, the finalized last
    block of the previous epoch (the shell adds the set of ``epoch + 1`` when it has it)."""

    epoch: int
    boundary: BlockRef


@attrs.frozen(slots=True)
class BuildBlock:
    """We lead ``slot`` of ``epoch``: build a block on ``parent``, sign it with
    ``sign_proposal``, then feed it back as a proposal (and gossip it). A block whose height
    falls outside ``epoch`` (the parent is the epoch's boundary block) must not be built."""

    epoch: int
    slot: int
    parent: BlockRef


@attrs.frozen(slots=True)
class Finalized:
    """``block`` is final (``certificate`` proves it), and so are ``ancestors`` (oldest first).

    ``ancestors`` are the blocks between the previous finalized block and ``block`` that this
    core knows; ``complete`` is False when it could not link ``block`` back to the previous
    finalized block (the shell then fetches the missing blocks by hash through sync).
    """

    block: BlockRef
    certificate: Certificate
    ancestors: tuple[BlockRef, ...]
    complete: bool


@attrs.frozen(slots=True)
class EvidenceFound:
    """Two signed messages proving an equivocation: gossip it and include it in a block."""

    evidence: Evidence


@attrs.frozen(slots=True)
class SetTimer:
    """Call ``on_tick(now)`` once the clock reaches ``deadline_ms`` (replaces earlier timers)."""

    deadline_ms: int


@attrs.frozen(slots=True)
class SigningRefused:
    """Slashing protection refused a signature (normal after a restore; log it)."""

    kind: VoteKind
    epoch: int
    slot: int
    reason: str


Action: TypeAlias = (
    Broadcast
    | ExecuteBlock
    | BuildBlock
    | Finalized
    | EvidenceFound
    | SetTimer
    | SigningRefused
    | FetchBlock
    | FetchCertificates
    | EpochEntered
)
