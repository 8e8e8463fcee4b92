"""Equivocation detection: remember each signer's first message of each kind per slot.

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


class EvidenceBook:
    """Per slot, per signer, the first authentic message of each kind."""

    __slots__ = ("_first", "_reported")

    def __init__(self) -> None:
        self._first: dict[int, dict[bytes, dict[VoteKind, SignedVote]]] = {}
        self._reported: dict[int, set[tuple[bytes, Offence]]] = {}

    def add(self, vote: SignedVote) -> Evidence | None:
        """Remember an *authentic* message; return new evidence if it proves an offence."""
        kinds = self._first.setdefault(vote.slot, {}).setdefault(vote.signer, {})
        kinds.setdefault(vote.kind, vote)
        earlier = kinds.get(_COUNTERPART[vote.kind])
        if earlier is None:
            return None
        offence = compute_offence(earlier, vote)
        if offence is None:
            return None
        reported = self._reported.setdefault(vote.slot, set())
        if (vote.signer, offence) in reported:
            return None
        reported.add((vote.signer, offence))
        return Evidence(earlier, vote)

    def prune_below(self, slot: int) -> None:
        """Forget slots below ``slot``."""
        for old in [s for s in self._first if s < slot]:
            del self._first[old]
        for old in [s for s in self._reported if s < slot]:
            del self._reported[old]

    def __len__(self) -> int:
        return len(self._first)
