"""Sync before sign: when a (re)started core may sign again (review H2).

A pure little state machine the core consults before every new signature. It knows what peers
reported in their status (the highest certificate round they hold, the highest round they
vote in) and what our own durable record reaches (its ``signed`` mark).
"""

from __future__ import annotations

from moderntensor.chain.votes import VoteKind

from ._protection import Round

__all__ = ["SyncGate"]


class SyncGate:
    """Whether the core may sign, and in which rounds.

    * Synced once a status was seen and our round is past every certificate peers hold (or
      from the start, for a fresh network or a validator whose own stake is a quorum).
    * After a restart whose record does not reach the round peers vote in (a restore from a
      backup, a wiped data dir, a long absence, or a crash before we voted in that round: we
      cannot tell which), nothing but NULLIFY at or below that round: peers may hold votes of
      ours that the record lost. NULLIFY stays allowed so that a network of restarted nodes
      moves on; peers hold no certificate of that round, so a lost FINALIZE there is the one
      thing it could contradict, and that needs a notarization nobody else saw.
    """

    __slots__ = ("floor", "frontier", "status_seen", "synced")

    def __init__(self, synced: bool) -> None:
        self.synced = synced
        self.status_seen = synced
        self.frontier: Round | None = None  # the highest certificate round peers reported
        self.floor: Round | None = None  # after a lossy restart: sign only above it

    def on_status(self, mark: Round | None, certified: Round | None, current: Round | None) -> None:
        """Peers' status; ``mark`` is the highest round our own record holds a signature in."""
        self.status_seen = True
        if certified is not None and (self.frontier is None or certified > self.frontier):
            self.frontier = certified
        newest = max((r for r in (certified, current) if r is not None), default=None)
        intact = mark is not None and (newest is None or mark >= newest)
        if not intact and current is not None and (self.floor is None or current > self.floor):
            self.floor = current

    def reached(self, now: Round) -> None:
        """Our round is now ``now``: synced once it is past the frontier."""
        if not self.synced and self.status_seen:
            self.synced = self.frontier is None or now > self.frontier

    def may_sign(self, kind: VoteKind, at: Round) -> bool:
        """Whether a new signature of ``kind`` in round ``at`` is allowed."""
        if not self.synced:
            return False
        return self.floor is None or at > self.floor or kind is VoteKind.NULLIFY
