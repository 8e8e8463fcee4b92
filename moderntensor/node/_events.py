"""What flows into the consensus driver and out to the network, and the one clock read.

The driver's inbox carries :data:`DriverEvent`: ticks (the ticker), built blocks (the
producer), fetched blocks and certificates (the fetcher), and from the network its messages
(:data:`NetworkMessage`) and peers' :class:`PeerStatus`. The driver broadcasts
:data:`NetworkMessage` on its outbound channel.
"""

from __future__ import annotations

import time

import attrs

from moderntensor.chain.votes import Evidence, SignedVote
from moderntensor.consensus import Certificate, Proposal, Round
from moderntensor.node._fetch import BlocksFetched, CertificatesFetched, FetchFailed
from moderntensor.node._producer import BlockBuilt
from moderntensor.node._sync import RangeSynced
from moderntensor.node._ticker import Tick

__all__ = ["DriverEvent", "NetworkMessage", "PeerStatus", "wall_clock_ms"]

NetworkMessage = SignedVote | Certificate | Proposal | Evidence
"""What the network delivers to the driver and the driver broadcasts."""


@attrs.frozen(slots=True)
class PeerStatus:
    """A peer's status (the network sends it): the highest round (epoch, slot) of a
    certificate it holds (None for none) and the votes of ours it still holds
    (``SimplexCore.votes_of``). The core merges those into its slashing-protection record
    and, until its round passes the highest certified round reported, signs nothing new
    (sync before sign)."""

    certified: Round | None
    own_votes: tuple[SignedVote, ...] = ()


DriverEvent = (
    Tick
    | BlockBuilt
    | BlocksFetched
    | FetchFailed
    | CertificatesFetched
    | PeerStatus
    | RangeSynced
    | NetworkMessage
)
"""What the driver's inbox carries."""


def wall_clock_ms() -> int:
    """The node's one clock read (the ticker and the driver take it): unix milliseconds."""
    return int(time.time() * 1000)
