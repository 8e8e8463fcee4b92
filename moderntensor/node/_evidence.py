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

from moderntensor.chain.staking import get_validator_by_id
from moderntensor.chain.votes import (
    Evidence,
    InvalidEvidence,
    decode_evidence,
    encode_evidence,
    evidence_id,
    verify_evidence,
)
from moderntensor.codec import DecodeError
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._logging import event
from moderntensor.state.statedb import StateDB

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

    def __init__(
        self,
        journal: ConsensusJournal,
        chain_id: int,
        genesis_hash: bytes,
        limit: int = MAX_PENDING_EVIDENCE,
    ) -> None:
        self.journal = journal
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
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

    def add_from_peer(self, evidence: Evidence, state: StateDB) -> bool:
        """A peer's proof: kept if it proves an offence on this chain by a validator
        registered in ``state`` (the committed head's); False if already held or no room.

        Raises:
            InvalidEvidence: it proves nothing, or not against a registered validator.
        """
        offender = verify_evidence(evidence, self.chain_id, self.genesis_hash)
        if get_validator_by_id(state, offender) is None:
            raise InvalidEvidence(f"0x{offender.hex()} is not a registered validator")
        if not self.add(evidence):
            return False
        event(log, logging.WARNING, "equivocation reported by a peer",
              validator="0x" + offender.hex(), epoch=evidence.first.epoch,
              slot=evidence.first.slot)  # fmt: skip
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
