"""The link model: what happens to each message on a simulated link (pure, no I/O, no clock).

A *lane* is one direction of one relayed connection (the dialer's messages to the target, or
the target's back). For every message the relay asks :meth:`LinkModel.compute_fate` with the
lane and the time it arrived; the answer is a :class:`Fate`: the times at which to deliver it
(none: dropped, two: duplicated) and why.

Each lane has its own ``random.Random`` seeded from the model's seed and the lane's key (the
route, the connection's number on it and the direction), and every message draws the same four
numbers from it (loss, jitter, reordering, duplication) whatever the settings and whether or
not it is partitioned. So the n-th message of a lane meets the same fate in every run with the
same seed, however the lanes' messages interleave.

A lane is FIFO like the stream it models: a message is never due before the one sent ahead of
it on the same lane (jitter delays the messages behind it, as head-of-line blocking does),
unless ``reorder`` lets it skip that rule.

Partitions are pairs of node names ``(src, dst)`` whose messages are dropped (a cut cable: the
connection stays open, nothing gets through either way). The relay checks them when a message
arrives and again when it is due, so nothing in flight crosses a partition made meanwhile.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["Fate", "Lane", "LinkConfig", "LinkModel", "Verdict"]


def _probability(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be in [0, 1], got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class LinkConfig:
    """One link's faults, the same for every lane of a relay."""

    latency_s: float = attrs.field(default=0.0, validator=_non_negative)
    """Every message is delayed by at least this."""
    jitter_s: float = attrs.field(default=0.0, validator=_non_negative)
    """Plus a uniform extra delay in ``[0, jitter_s]`` (so never less than ``latency_s``)."""
    loss: float = attrs.field(default=0.0, validator=_probability)
    """Probability that a message is dropped (the whole message)."""
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    """Probability that a message is delivered twice (the copy right after it)."""
    reorder: float = attrs.field(default=0.0, validator=_probability)
    """Probability that a message is not held behind earlier ones (it may overtake them)."""


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    LOSS = "loss"
    PARTITION = "partition"


@attrs.frozen(slots=True)
class Fate:
    """What happens to one message: delivered at each of ``due`` (empty: dropped)."""

    verdict: Verdict
    due: tuple[float, ...]
    delay_s: float
    """The delay it was given (also for a dropped one: what it would have had)."""


class Lane:
    """One direction of one connection: its names, its own random stream, its FIFO clock."""

    __slots__ = ("dst", "key", "last_due", "rng", "src")

    def __init__(self, src: str, dst: str, key: str, seed: int) -> None:
        self.src = src
        self.dst = dst
        self.key = key
        self.rng = random.Random(f"{seed}/{key}")  # str seeds hash with SHA-512: stable
        self.last_due = float("-inf")


class LinkModel:
    """Decides each message's fate (see the module docstring); holds the partitions.

    Args:
        config: latency, jitter, loss, duplication, reordering.
        seed: the seed of every lane's random stream.
    """

    def __init__(self, config: LinkConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.blocked: frozenset[tuple[str, str]] = frozenset()

    def open_lane(self, src: str, dst: str, key: str) -> Lane:
        """The lane of messages from ``src`` to ``dst``; ``key`` names it for its seed."""
        return Lane(src, dst, key, self.seed)

    # -- partitions -------------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every pair of nodes in different groups, both ways (replacing any earlier
        partition); nodes in no group are not cut off.

        Raises:
            ValueError: a name is in two groups.
        """
        sets = [frozenset(g) for g in groups]
        seen: set[str] = set()
        for group in sets:
            if seen & group:
                raise ValueError(f"in two groups: {sorted(seen & group)}")
            seen |= group
        pairs: set[tuple[str, str]] = set()
        for i, group in enumerate(sets):
            for other in sets[i + 1 :]:
                pairs.update((a, b) for a in group for b in other)
                pairs.update((b, a) for a in group for b in other)
        self.blocked = frozenset(pairs)

    def block(self, src: str, dst: str) -> None:
        """Cut messages from ``src`` to ``dst`` only (a one-way partition)."""
        self.blocked = self.blocked | {(src, dst)}

    def heal(self) -> None:
        """Remove every partition."""
        self.blocked = frozenset()

    def is_blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self.blocked

    # -- fates ------------------------------------------------------------------------------

    def compute_fate(self, lane: Lane, now: float) -> Fate:
        """The fate of the next message on ``lane``, which arrived at ``now``."""
        cfg = self.config
        rng = lane.rng
        lost, extra, skips, twice = rng.random(), rng.random(), rng.random(), rng.random()
        delay = cfg.latency_s + extra * cfg.jitter_s
        if self.is_blocked(lane.src, lane.dst):
            return Fate(Verdict.PARTITION, (), delay)
        if lost < cfg.loss:
            return Fate(Verdict.LOSS, (), delay)
        due = now + delay
        if not skips < cfg.reorder:
            due = max(due, lane.last_due)
        lane.last_due = max(lane.last_due, due)
        if twice < cfg.duplicate:
            return Fate(Verdict.DUPLICATE, (due, due), due - now)
        return Fate(Verdict.DELIVER, (due,), due - now)
