"""What the chain service shows of the other parts of the node, as protocols the node fills
in (consensus status, peers and network counters) and the sync progress: the RPC reads these
through ``ChainService`` without importing the consensus driver or the network (layering)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

__all__ = [
    "ConsensusFacts",
    "ConsensusView",
    "NetworkFacts",
    "NetworkView",
    "PeerFacts",
    "SyncProgress",
]


class ConsensusFacts(Protocol):
    """What a running node knows about consensus right now (read-only attributes; the node's
    ``ConsensusStatus`` is one)."""

    @property
    def slot(self) -> int:
        """The wall-clock slot."""

    @property
    def epoch(self) -> int:
        """The epoch the node votes in (epochs count blocks, so not a function of the slot)."""

    @property
    def view(self) -> int:
        """The slot the node votes in."""

    @property
    def synced(self) -> bool:
        """False while a validator waits to learn where the network is before it signs."""

    @property
    def finalized_slot(self) -> int:
        """The slot of the newest block consensus finalized (it may not be committed yet)."""

    @property
    def last_finality_ms(self) -> int | None:
        """From the start of the newest committed final block's slot to its commit."""

    @property
    def evidence_pending(self) -> int:
        """Equivocation proofs waiting to be included in a block."""

    @property
    def event_loop_lag_s(self) -> float | None:
        """The longest event-loop stall of the last minute or two."""

    @property
    def blocks_built(self) -> int:
        """Blocks this node built since it started."""


class ConsensusView(Protocol):
    """Consensus facts for the ``mt_*`` RPC methods and metrics; the node supplies it."""

    def status(self) -> ConsensusFacts: ...


class PeerFacts(Protocol):
    """One connected peer, as ``mt_peers`` shows it (the network's ``PeerInfo`` is one)."""

    @property
    def peer_id(self) -> str: ...
    @property
    def address(self) -> str | None:
        """Its multiaddr (where it can be dialed), if known."""

    @property
    def direction(self) -> str:
        """``inbound`` or ``outbound``."""

    @property
    def connected_since(self) -> float:
        """Unix seconds."""

    @property
    def score(self) -> float: ...
    @property
    def head_number(self) -> int:
        """As last known (its latest status answer, else its handshake)."""

    @property
    def head_hash(self) -> bytes: ...
    @property
    def finalized_slot(self) -> int: ...
    @property
    def protocol_version(self) -> int: ...


class NetworkFacts(Protocol):
    """The network's counters for ``/metrics`` (the network's ``NetworkStats`` is one)."""

    @property
    def counts(self) -> dict[str, float]:
        """Plain gauges and counters by name (``inbound``, ``delivered``, ``bans``...)."""

    @property
    def disconnects(self) -> dict[tuple[str, str], int]:
        """Ended sessions and refused connections by (reason, by whom: ``us``/``peer``)."""


class NetworkView(Protocol):
    """The peer-to-peer network for ``mt_peers`` and metrics; the node supplies it."""

    def peer_facts(self) -> Sequence[PeerFacts]: ...
    def stats(self) -> NetworkFacts: ...


@attrs.frozen(slots=True)
class SyncProgress:
    """Where a catching-up node is: the figures of ``eth_syncing`` and ``/health``."""

    starting: int
    """The head when this sync began."""
    current: int
    highest: int
    """The highest head a peer reported."""
    blocks_per_s: float
    eta_s: float | None
    """Seconds to reach ``highest`` at the current rate (None: no rate yet)."""
