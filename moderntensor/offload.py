"""Where blocking work runs: a worker thread in a node, inline in the simulator.

Every CPU-heavy step the node takes off its event loop (executing a block, decoding a batch of
transactions, a commit) goes through :func:`run_sync`. In a node it is
``trio.to_thread.run_sync``. The simulator runs many nodes in one process on Trio's
``MockClock``, where a worker thread would let virtual time move by however long the thread
happened to take: there, inside :func:`inline`, the work runs on the event loop and takes no
virtual time, so a run is a function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import trio

__all__ = ["inline", "is_inline", "run_sync"]

T = TypeVar("T")

_INLINE: ContextVar[bool] = ContextVar("moderntensor_offload_inline", default=False)


def is_inline() -> bool:
    return _INLINE.get()


@contextmanager
def inline() -> Iterator[None]:
    """Run offloaded work inline in this task and every task started from it."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


async def run_sync(
    fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter | None = None
) -> T:
    """``fn(*args)`` in a worker thread (holding ``limiter`` if given), or inline."""
    if not _INLINE.get():
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
    await trio.lowlevel.checkpoint()
    if limiter is None:
        return fn(*args)
    async with limiter:
        return fn(*args)
