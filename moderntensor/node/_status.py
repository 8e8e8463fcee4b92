"""What the node tells the RPC about consensus: one frozen value per question asked.

The ``mt_*`` methods and ``/metrics`` read it through the service layer's
:class:`~moderntensor.service.ConsensusFacts` protocol, so the RPC never imports the node.
"""

from __future__ import annotations

import attrs

__all__ = ["ConsensusStatus"]


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
