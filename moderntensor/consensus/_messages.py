"""What goes into the voting core and what comes out: frozen data, no behaviour (STYLE rule 2).

Inputs are the arguments of :class:`~moderntensor.consensus.SimplexCore` methods; outputs are
the actions below, returned as a list for the Trio shell to carry out in order.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from moderntensor.chain.votes import Evidence, SignedVote, VoteKind
from moderntensor.crypto import Signature

from ._certificates import Certificate

__all__ = [
    "Action",
    "BlockRef",
    "Broadcast",
    "BuildBlock",
    "EvidenceFound",
    "ExecuteBlock",
    "Finalized",
    "Proposal",
    "SetTimer",
    "SigningRefused",
]


def _hash32(_inst: object, attr: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{attr.name} must be 32 bytes")


@attrs.frozen(slots=True)
class BlockRef:
    """A block by slot and (full header) hash."""

    slot: int
    hash: bytes = attrs.field(validator=_hash32)


@attrs.frozen(slots=True)
class Proposal:
    """A leader's block as the core sees it.

    The shell derives ``block_hash`` (keccak of the full header), ``seal_hash`` (keccak of the
    header without the proposer signature) and ``parent_hash`` from the header it decoded, so
    they belong together; the core checks ``signature`` over the PROPOSE digest of
    (``slot``, ``seal_hash``). ``payload`` is the block itself, opaque to the core and handed
    back in :class:`ExecuteBlock`.
    """

    slot: int
    block_hash: bytes = attrs.field(validator=_hash32)
    parent_hash: bytes = attrs.field(validator=_hash32)
    seal_hash: bytes = attrs.field(validator=_hash32)
    proposer: bytes
    signature: Signature
    payload: object = attrs.field(default=None, eq=False, repr=False)

    def propose_vote(self) -> SignedVote:
        """The signed PROPOSE message inside the proposal (what equivocation evidence uses)."""
        return SignedVote(
            VoteKind.PROPOSE, self.slot, self.seal_hash, self.proposer, self.signature
        )


@attrs.frozen(slots=True)
class Broadcast:
    """Send a vote or certificate to every peer (the gossip layer deduplicates)."""

    message: SignedVote | Certificate


@attrs.frozen(slots=True)
class ExecuteBlock:
    """Execute the proposed block and report with ``on_verdict(block_hash, valid, now)``."""

    proposal: Proposal


@attrs.frozen(slots=True)
class BuildBlock:
    """We lead ``slot``: build a block on ``parent``, sign it with ``sign_proposal``, then feed
    it back as a proposal (and gossip it)."""

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
    """Slashing protection refused a signature (normal after a restart; log it)."""

    kind: VoteKind
    slot: int
    reason: str


Action: TypeAlias = (
    Broadcast | ExecuteBlock | BuildBlock | Finalized | EvidenceFound | SetTimer | SigningRefused
)
