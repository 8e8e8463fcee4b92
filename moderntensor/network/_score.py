"""Per-peer scores, temporary bans and a per-peer frame rate limit (pure: time is an
argument, STYLE rule 8).

* :class:`PeerScores`: each authenticated peer id has a score, 0 when unknown, that decays
  toward 0 (halved every ``half_life_s``). Each remote error costs ``COSTS[reason]``; a score
  at or below ``BAN_THRESHOLD`` bans the id for ``ban_s`` seconds: its connections are refused
  right after the handshake (``BANNED``) and it is not dialed. Only ids proven by a completed
  handshake are charged: a key named in a failed handshake is unproven, and charging it would
  let anyone get an honest peer banned.
* :class:`RateLimit`: a token bucket of frames per peer connection (``rate`` per second,
  ``burst`` at once); a peer beyond it is disconnected with ``RATE_LIMITED``.

Scores and bans outlive a restart (``snapshot`` / ``restore``; the file is ``_persist``'s):
otherwise restarting a node would forgive every peer it banned.
"""

from __future__ import annotations

from moderntensor.network._messages import DisconnectReason

__all__ = [
    "BAN_THRESHOLD",
    "COSTS",
    "FUTURE_VOTE_COST",
    "REPEAT_COST",
    "TIMEOUT_COST",
    "TIMEOUT_FLOOR",
    "PeerScores",
    "RateLimit",
]

BAN_THRESHOLD = -100.0
COSTS: dict[DisconnectReason, float] = {
    DisconnectReason.BAD_SIGNATURE: 100.0,  # a forged vote: an honest peer relays only checked ones
    DisconnectReason.RATE_LIMITED: 50.0,
    DisconnectReason.BAD_MESSAGE: 40.0,
    DisconnectReason.PROTOCOL_ERROR: 40.0,
}
"""What a session-ending remote error costs (any other reason: ``DEFAULT_COST``)."""
DEFAULT_COST = 20.0
FUTURE_VOTE_COST = 1.0
"""A vote too far ahead of our view: ignored (not recovered, not relayed) and charged."""
KEEP_SCORE = 0.01
"""Scores closer to 0 than this are not kept across restarts."""
TIMEOUT_COST = 2.0
"""A request the peer let time out. Slowness alone never bans (``TIMEOUT_FLOOR``): a far or
busy honest peer must stay connected, since a validator may need it for a quorum; a mute
peer ends up with the lowest score of its kind and is asked last where that matters."""
TIMEOUT_FLOOR = BAN_THRESHOLD / 2
"""Timeouts lower a score to here at most."""
REPEAT_COST = 1.0
"""A gossip frame the same peer already sent within the seen window (dropped before decoding)."""


class PeerScores:
    """Scores by peer id, decaying toward 0, and the bans they earned."""

    def __init__(self, *, half_life_s: float = 300.0, ban_s: float = 600.0) -> None:
        self.half_life_s = half_life_s
        self.ban_s = ban_s
        self._scores: dict[str, tuple[float, float]] = {}  # id -> (score, when)
        self._banned: dict[str, float] = {}  # id -> until
        self.bans = 0

    def score(self, peer_id: str, now: float) -> float:
        value, when = self._scores.get(peer_id, (0.0, now))
        decay: float = 0.5 ** (max(0.0, now - when) / self.half_life_s)
        return value * decay

    def charge(self, peer_id: str, cost: float, now: float, *, floor: float | None = None) -> bool:
        """Lower the peer's score by ``cost`` (not below ``floor``: a fault that alone must
        never ban); True if this (or an earlier charge) bans it."""
        value = self.score(peer_id, now) - cost
        if floor is not None:
            value = max(value, min(floor, self.score(peer_id, now)))
        self._scores[peer_id] = (value, now)
        if value <= BAN_THRESHOLD and not self.is_banned(peer_id, now):
            self._banned[peer_id] = now + self.ban_s
            self._scores[peer_id] = (0.0, now)  # after the ban it starts again from 0
            self.bans += 1
        return self.is_banned(peer_id, now)

    def charge_for(self, peer_id: str, reason: DisconnectReason, now: float) -> bool:
        return self.charge(peer_id, COSTS.get(reason, DEFAULT_COST), now)

    def banned_count(self, now: float) -> int:
        """Ids banned right now."""
        return sum(until > now for until in self._banned.values())

    def snapshot(self, now: float) -> list[tuple[str, float, float]]:
        """What to keep across a restart: ``(id, score, ban seconds left)`` for each id with a
        score away from 0 or a ban (times relative, since ``now`` is this process's clock)."""
        ids = set(self._banned) | set(self._scores)
        out = []
        for pid in sorted(ids):
            value = self.score(pid, now)
            left = max(0.0, self._banned.get(pid, now) - now)
            if left > 0 or abs(value) >= KEEP_SCORE:
                out.append((pid, value, left))
        return out

    def restore(self, items: list[tuple[str, float, float]], now: float, elapsed_s: float) -> None:
        """Take back a :meth:`snapshot` taken ``elapsed_s`` ago (scores decayed, bans
        shortened by that time); ``now`` is this process's clock."""
        decay: float = 0.5 ** (max(0.0, elapsed_s) / self.half_life_s)
        for pid, value, left in items:
            if abs(value * decay) >= KEEP_SCORE:
                self._scores[pid] = (value * decay, now)
            if left - elapsed_s > 0:
                self._banned[pid] = now + left - elapsed_s

    def is_banned(self, peer_id: str, now: float) -> bool:
        until = self._banned.get(peer_id)
        if until is None:
            return False
        if until <= now:
            del self._banned[peer_id]
            return False
        return True


class RateLimit:
    """A token bucket: ``rate`` frames per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._when = now

    def take(self, now: float) -> bool:
        """Spend one token; False if none is left (the peer sends too fast)."""
        self._tokens = min(self.burst, self._tokens + (now - self._when) * self.rate)
        self._when = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
