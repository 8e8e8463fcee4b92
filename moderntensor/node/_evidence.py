"""Equivocation proofs waiting for a block: keyed by offence, persisted, never silently lost.

The pool is keyed by :func:`~moderntensor.chain.votes.evidence_id`, which names the
*offence* (signer, kind of offence, round), so two proofs of one offence are one entry and
can never poison each other in a block (review M4). Each entry is in the journal until a
committed block includes its offence or the producer finds it can never be included; a
restarted node loads them again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from moderntensor.chain.votes import (
    Evidence,
    InvalidEvidence,
    decode_evidence,
    encode_evidence,
    evidence_id,
)
from moderntensor.codec import DecodeError
from moderntensor.node._journal import ConsensusJournal

__all__ = ["EvidencePool"]

log = logging.getLogger("moderntensor.node")

MAX_PENDING_EVIDENCE = 1024
"""Offences held at once; beyond it new ones wait for room (a block takes 64 per slot)."""


def _id_of(raw: bytes) -> bytes | None:
    try:
        return evidence_id(decode_evidence(raw))
    except (DecodeError, InvalidEvidence):
        return None


class EvidencePool:
    """Pending proofs by evidence id, mirrored in the journal (loaded at start)."""

    def __init__(self, journal: ConsensusJournal, limit: int = MAX_PENDING_EVIDENCE) -> None:
        self.journal = journal
        self.limit = limit
        self._items: dict[bytes, bytes] = {}
        stale = []
        for eid, raw in journal.evidence().items():
            if _id_of(raw) == eid:
                self._items[eid] = raw
            else:
                stale.append(eid)
        journal.forget_evidence(stale)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, eid: bytes) -> bool:
        return eid in self._items

    def add(self, evidence: Evidence) -> bool:
        """Keep a proof (the caller verified its signatures); False if its offence is
        already held, or the pool is full.

        Raises:
            InvalidEvidence: the two messages do not conflict.
        """
        eid = evidence_id(evidence)
        if eid in self._items or len(self._items) >= self.limit:
            return False
        raw = encode_evidence(evidence)
        self.journal.store_evidence(eid, raw)
        self._items[eid] = raw
        return True

    def pending(self, count: int) -> tuple[bytes, ...]:
        """Up to ``count`` encoded proofs, oldest first."""
        return tuple(itertools.islice(self._items.values(), count))

    def forget(self, raws: Iterable[bytes]) -> int:
        """Drop the offences these proofs prove (a committed block included one, or it can
        never be included); returns how many entries went."""
        gone = [eid for raw in raws if (eid := _id_of(raw)) is not None and eid in self._items]
        for eid in gone:
            del self._items[eid]
        self.journal.forget_evidence(gone)
        return len(gone)
