"""Consensus errors, split by blame (STYLE rule 4).

Remote errors are a peer's fault: the shell scores or drops the peer, and the core is left
exactly as it was (checks run before any change). Local errors are ours.
"""

from __future__ import annotations

__all__ = [
    "ConsensusError",
    "ConsensusLocalError",
    "ConsensusRemoteError",
    "InvalidCertificate",
    "InvalidMessage",
    "SlashingRefused",
]


class ConsensusError(Exception):
    """Base of every consensus error."""


class ConsensusRemoteError(ConsensusError):
    """A message from the network is invalid; the sender (or its relayer) is to blame."""


class InvalidMessage(ConsensusRemoteError):
    """A proposal, vote or certificate that fails a check; ``reason`` names the check."""

    def __init__(self, reason: str, message: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class InvalidCertificate(InvalidMessage):
    """A certificate that is not a quorum of authentic votes of its epoch's set."""


class ConsensusLocalError(ConsensusError):
    """Something on our side: a misuse of the API, or a refused signature."""


class SlashingRefused(ConsensusLocalError):
    """Slashing protection refused to sign: the record shows a conflicting signature."""

    def __init__(self, reason: str, kind: int, slot: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.slot = slot
