"""Trio's scheduler made a function of the seed.

Trio deliberately varies the order in which it runs tasks that are ready at the same moment.
It has a switch for deterministic runs, which Hypothesis' Trio plugin and pytest-trio turn on:
tasks ready together run in a shuffled order drawn from ``trio._core._run._r``. Setting the
switch and seeding that generator makes a simulation repeat exactly. Both are private names;
this is the one place that touches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

__all__ = ["deterministic_scheduling"]

_SWITCH = "_ALLOW_DETERMINISTIC_SCHEDULING"


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    run: Any = trio._core._run
    saved_flag, saved_state = getattr(run, _SWITCH), run._r.getstate()
    setattr(run, _SWITCH, True)
    run._r.seed(seed)
    try:
        yield
    finally:
        setattr(run, _SWITCH, saved_flag)
        run._r.setstate(saved_state)
