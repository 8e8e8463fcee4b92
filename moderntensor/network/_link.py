"""What the network needs from the node's consensus side, as a protocol: the network never
imports the node (DESIGN.md §2); the node implements this over its driver's inbox, its core
and its journal (``moderntensor.node._network.NodeLink``); tests use fakes."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

from moderntensor.chain.votes import Evidence, SignedVote
from moderntensor.consensus import Certificate, Proposal, Round
from moderntensor.network._handshake import LocalStatus

__all__ = ["ConsensusLink", "ConsensusMessage", "GossipVerdict"]

ConsensusMessage = SignedVote | Certificate | Proposal | Evidence
"""What the driver broadcasts and the network delivers to it."""


class GossipVerdict(enum.Enum):
    """What a node makes of a consensus message before it relays it (gossipsub's verdicts)."""

    ACCEPT = "accept"
    """Valid as far as can be told now: delivered and relayed."""
    IGNORE = "ignore"
    """Cannot be used here now (too old, too far ahead, an epoch whose set is unknown):
    neither delivered nor relayed; the sender is not blamed."""
    REJECT = "reject"
    """Provably invalid (a proposer that is not the slot's leader, a signer outside the
    set, a certificate that does not verify): dropped, and the sender disconnected and
    scored down (an honest node screens before it relays, so it never sends one)."""


class ConsensusLink(Protocol):
    """What the network needs from the node's consensus side (the node implements it over
    its driver's inbox, its core and its journal; tests use fakes)."""

    @property
    def validator_id(self) -> bytes | None:
        """Our validator id (None on a node that does not validate)."""

    def local_status(self) -> LocalStatus:
        """Where this node stands now."""

    def clock_slot(self) -> int:
        """The slot the node's clock is in: no honest vote is far beyond it (a node that is
        still syncing has a view far behind the network's, so its view cannot say that)."""

    def votes_of(self, validator_id: bytes) -> Sequence[SignedVote]:
        """The messages of ``validator_id`` the core holds (``SimplexCore.votes_of``)."""

    def certificates_of(self, epoch: int, slot: int) -> Sequence[Certificate]:
        """The certificates of a round this node holds."""

    def finalization(self, number: int) -> Certificate | None:
        """The finalization certificate committed with block ``number``, if any."""

    def screen(self, message: ConsensusMessage) -> tuple[GossipVerdict, str]:
        """Judge a message before relaying it (never waits); the reason for IGNORE/REJECT."""

    async def deliver(self, message: ConsensusMessage) -> None:
        """Hand a message to the driver (waits while its inbox is full)."""

    async def peer_status(self, certified: Round | None, own_votes: tuple[SignedVote, ...]) -> None:
        """Hand the driver a peer's status (``PeerStatus``)."""
