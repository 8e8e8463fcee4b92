"""Equivocation detection: remember each signer's first message of each kind per round.

Any later message that conflicts with a remembered one (see ``chain.votes.compute_offence``)
becomes :class:`~moderntensor.chain.votes.Evidence`, reported once per offence.
"""

from __future__ import annotations

from moderntensor.chain.votes import Evidence, Offence, SignedVote, VoteKind, compute_offence

__all__ = ["EvidenceBook"]

# The kind a new message is compared with: the same kind for proposals and notarizations (a
# different hash is the offence), the opposite one for nullify/finalize.
_COUNTERPART = {
    VoteKind.PROPOSE: VoteKind.PROPOSE,
    VoteKind.NOTARIZE: VoteKind.NOTARIZE,
    VoteKind.NULLIFY: VoteKind.FINALIZE,
    VoteKind.FINALIZE: VoteKind.NULLIFY,
}


Round = tuple[int, int]


class EvidenceBook:
    """Per round (epoch, slot), per signer, the first authentic message of each kind.

    The core prunes rounds that fall out of its evidence window, measured from its *view* as
    well as from its finalized slot, so the book stays bounded while finality stalls
    (review L6).
    """

    __slots__ = ("_first", "_reported")

    def __init__(self) -> None:
        self._first: dict[Round, dict[bytes, dict[VoteKind, SignedVote]]] = {}
        self._reported: dict[Round, set[tuple[bytes, Offence]]] = {}

    def add(self, vote: SignedVote) -> Evidence | None:
        """Remember an *authentic* message; return new evidence if it proves an offence."""
        rnd = (vote.epoch, vote.slot)
        kinds = self._first.setdefault(rnd, {}).setdefault(vote.signer, {})
        kinds.setdefault(vote.kind, vote)
        earlier = kinds.get(_COUNTERPART[vote.kind])
        if earlier is None or earlier is vote:
            return None  # nothing to compare with, or the first of its kind
        if earlier.kind is vote.kind and earlier.block_hash == vote.block_hash:
            return None  # the same message again
        offence = compute_offence(earlier, vote)
        if offence is None:
            return None
        reported = self._reported.setdefault(rnd, set())
        if (vote.signer, offence) in reported:
            return None
        reported.add((vote.signer, offence))
        return Evidence(earlier, vote)

    def votes_of(self, signer: bytes) -> list[SignedVote]:
        """Every message of ``signer`` this book holds (the first of each kind per round),
        in round order: what a restarted validator's peers give back to it."""
        out: list[SignedVote] = []
        for rnd in sorted(self._first):
            out.extend(self._first[rnd].get(signer, {}).values())
        return out

    def prune_below(self, min_epoch: int, min_slot: int) -> None:
        """Forget rounds of epochs below ``min_epoch`` and of slots below ``min_slot``."""
        for book in (self._first, self._reported):
            for old in [r for r in book if r[0] < min_epoch or r[1] < min_slot]:
                del book[old]

    def __len__(self) -> int:
        return len(self._first)
