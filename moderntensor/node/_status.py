"""What the node tells the RPC about consensus: one frozen value per question asked.

The ``mt_*`` methods and ``/metrics`` read it through the service layer's
:class:`~moderntensor.service.ConsensusFacts` protocol, so the RPC never imports the node.
"""

from __future__ import annotations

import logging

import attrs

from moderntensor.consensus import SimplexCore
from moderntensor.node._logging import event

__all__ = [
    "WHY_NOT_SIGNING_EVERY_MS",
    "ConsensusStatus",
    "say_why_not_signing",
]


log = logging.getLogger("moderntensor.node")


@attrs.frozen(slots=True)
class ConsensusStatus:
    """A snapshot of the consensus driver's facts (plus the node's own, filled in by the
    supervisor).

    Attributes:
        slot: the wall-clock slot (``chain.timing.compute_slot_at``).
        epoch: the epoch the core votes in; epochs count blocks, so this is the epoch of
            the block after the newest finalized one, not a function of ``slot``.
        view: the slot the core votes in.
        synced: False while a validator waits to learn where the network is before it
            signs anything new (sync before sign).
        finalized_slot: the slot of the newest block the core finalized (its commit may
            still wait for the block itself).
        last_finality_ms: from the start of the newest committed final block's slot to its
            commit; None before the first one.
        evidence_pending: equivocation proofs waiting to be included in a block.
        event_loop_lag_s: the longest event-loop stall of the last minute or two.
        blocks_built: blocks this node built since it started.
    """

    slot: int
    epoch: int
    view: int
    synced: bool
    finalized_slot: int
    last_finality_ms: int | None
    evidence_pending: int
    event_loop_lag_s: float | None = None
    blocks_built: int = 0

    @classmethod
    def of(
        cls, core: SimplexCore, slot: int, last_finality_ms: int | None, evidence_pending: int
    ) -> ConsensusStatus:
        """The driver's facts: what the core says, plus the wall-clock slot."""
        return cls(
            slot=slot,
            epoch=core.epoch,
            view=core.view,
            synced=core.synced,
            finalized_slot=core.finalized.slot,
            last_finality_ms=last_finality_ms,
            evidence_pending=evidence_pending,
        )


WHY_NOT_SIGNING_EVERY_MS = 10_000


def say_why_not_signing(core: SimplexCore, peers: int) -> bool:
    """A validator that may not sign yet says why (an operator whose node never makes a block
    should not have to guess: no peers, or peers ahead). Returns whether it said anything."""
    if core.validator_id is None or core.synced:
        return False
    event(log, logging.WARNING, "not signing yet: waiting for peers' status",
          peers=peers, view=core.view, epoch=core.epoch,
          hint="no peer connected: check [p2p] bootstrap and that the other validators "
          "are up" if peers == 0 else "catching up with the peers' certificates")  # fmt: skip
    return True
