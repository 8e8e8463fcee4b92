"""Trio's scheduler made a function of the seed.

Trio deliberately varies the order in which it runs tasks that are ready at the same moment.
It has a switch for deterministic runs, which Hypothesis' Trio plugin and pytest-trio turn on:
tasks ready together run in a shuffled order drawn from ``trio._core._run._r``. Setting the
switch and seeding that generator makes a simulation repeat exactly -- but the generator is
one per process, and any other Trio run in another thread (a test's background node) draws
from it too, at moments that depend on thread timing. So for the simulation's duration it is
replaced by one generator per thread: this thread's is seeded, the others get their own.
Both are private names of Trio; this is the one place that touches them.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from typing import Any

import trio

__all__ = ["deterministic_scheduling"]

_SWITCH = "_ALLOW_DETERMINISTIC_SCHEDULING"


class _PerThreadRandom:
    """What Trio's scheduler calls on ``_r`` (``random``, ``shuffle``), one generator per
    thread; the thread that made it uses ``seeded``."""

    def __init__(self, seeded: random.Random) -> None:
        self._owner = threading.get_ident()
        self._seeded = seeded
        self._local = threading.local()

    def _mine(self) -> random.Random:
        if threading.get_ident() == self._owner:
            return self._seeded
        rng: random.Random | None = getattr(self._local, "rng", None)
        if rng is None:
            rng = self._local.rng = random.Random()
        return rng

    def random(self) -> float:
        return self._mine().random()

    def shuffle(self, items: MutableSequence[Any]) -> None:
        self._mine().shuffle(items)

    def __getattr__(self, name: str) -> Any:  # seed, getstate ... (Hypothesis' registry)
        return getattr(self._mine(), name)


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    run: Any = trio._core._run
    saved_flag, saved_r = getattr(run, _SWITCH), run._r
    setattr(run, _SWITCH, True)
    run._r = _PerThreadRandom(random.Random(seed))
    try:
        yield
    finally:
        setattr(run, _SWITCH, saved_flag)
        run._r = saved_r
