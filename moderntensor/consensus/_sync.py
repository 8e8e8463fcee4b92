"""Sync before sign: when a (re)started core may sign again (review H2).

A pure little state machine the core consults before every new signature. A core that is
not known to be at the network's head (a fresh network, or a validator whose own stake is a
quorum) signs nothing new until peers' status arrived and its round is past every
certificate they hold. What peers still hold of our own votes is merged into the
slashing-protection record before that (see ``SimplexCore.on_status``), so a node whose
record was lost cannot contradict them.
"""

from __future__ import annotations

from ._protection import Round

__all__ = ["SyncGate"]


class SyncGate:
    """Whether the core may sign new messages yet."""

    __slots__ = ("frontier", "status_seen", "synced")

    def __init__(self, synced: bool) -> None:
        self.synced = synced
        self.status_seen = synced
        self.frontier: Round | None = None  # the highest certificate round peers reported

    def on_status(self, certified: Round | None) -> None:
        """A peer's status: the highest round of a certificate it holds (None for none)."""
        self.status_seen = True
        if certified is not None and (self.frontier is None or certified > self.frontier):
            self.frontier = certified

    def reached(self, now: Round) -> None:
        """Our round is now ``now``: synced once it is past the frontier."""
        if not self.synced and self.status_seen:
            self.synced = self.frontier is None or now > self.frontier
