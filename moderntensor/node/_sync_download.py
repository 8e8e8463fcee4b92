"""Range sync's downloads: the chunks a sync is cut into and the tasks that fetch them from
several peers at once, ahead of execution (``_sync`` executes them in order).

Chunks are at most ``MAX_RANGE`` blocks and never cross an epoch boundary, so each one's
certificates verify against one validator set. Chunk ``k`` is asked first of the ``k``-th
peer (round-robin over the peers whose head reaches it), then of the others in turn: with
several peers ahead, a sync downloads from all of them while the node executes. A peer that
answers with fewer blocks than asked (its reply hit the byte cap) is asked for the rest. At
most ``window`` chunks are downloaded or held ahead of execution, which bounds memory
(a chunk of full blocks is a few MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.timing import compute_block_epoch, compute_boundary_height
from moderntensor.consensus import Certificate

__all__ = [
    "MAX_RANGE",
    "Chunk",
    "Downloads",
    "Entry",
    "RangeSize",
    "RangeSource",
    "fetch_chunk",
    "plan_chunks",
]

MAX_RANGE = 128
"""Blocks asked for in one request at most (the wire cap, ``MAX_RANGE_BLOCKS``)."""
FAST_REPLY_S = 0.5
"""A range answered this fast: the next request may ask for twice as many blocks."""

PER_PEER = 2
"""Chunks downloading at once per peer. The rest of the window waits its turn: chunks
downloaded side by side share the peer's (and our decoder's) time, so with the whole window
at once the first chunk arrived only when nearly all had, and execution stalled for the
length of a window at every epoch."""

Entry = tuple[Block, Certificate | None]


class RangeSource(Protocol):
    """Peers to sync from (``moderntensor.network.PeerManager``; fakes in tests)."""

    async def heads(self) -> list[tuple[Any, int]]:
        """(peer, committed head height) of the peers that answered."""

    async def fetch_range(self, peer: Any, start: int, count: int) -> Any:
        """A ``BlockRange`` (``.blocks``: (block, certificate or None) pairs), or None."""

    def punish(self, peer: Any, reason: str) -> None:
        """Disconnect ``peer``: it sent something provably wrong."""


@attrs.frozen(slots=True)
class Chunk:
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count - 1


def plan_chunks(start: int, last: int, epoch_length: int) -> list[Chunk]:
    """Heights ``start`` .. ``last`` cut into chunks of at most ``MAX_RANGE`` blocks, none
    crossing an epoch's boundary block."""
    chunks: list[Chunk] = []
    while start <= last:
        boundary = compute_boundary_height(compute_block_epoch(start, epoch_length), epoch_length)
        count = min(MAX_RANGE, boundary - start + 1, last - start + 1)
        chunks.append(Chunk(start, count))
        start += count
    return chunks


@attrs.define
class RangeSize:
    """How many blocks one request asks for: halved after a request not answered in time,
    doubled after a fast answer (1 .. ``MAX_RANGE``). Full blocks take long to read, send and
    decode (every sender recovered): 128 blocks of 100 transfers timed out again and again on
    a busy 2-core machine, and sync never started."""

    value: int = 16
    """Where it starts: a request that times out costs four request timeouts, so it starts low
    and grows (16 blocks of 100 transfers answer in well under a second here)."""

    def timed_out(self, asked: int) -> None:
        self.value = max(1, min(self.value, asked // 2))

    def answered(self, asked: int, seconds: float) -> None:
        if seconds < FAST_REPLY_S and asked >= self.value:
            self.value = min(MAX_RANGE, 2 * self.value)


@attrs.define(eq=False)
class Fetched:
    """One chunk's download: ``entries`` from ``peer`` (fewer than asked if no peer had them
    all; empty if none had any) once ``done`` is set."""

    chunk: Chunk
    done: trio.Event = attrs.field(factory=trio.Event)
    peer: Any = None
    entries: list[Entry] = attrs.field(factory=list)


class Downloads:
    """Chunks fetched in parallel from ``peers``, at most ``window`` ahead of the consumer.

    Run :meth:`run` in a nursery; the consumer awaits :meth:`get` in chunk order and calls
    :meth:`release` when it is done with a chunk (which lets the next one start).
    """

    def __init__(
        self,
        source: RangeSource,
        peers: Sequence[tuple[Any, int]],
        chunks: Sequence[Chunk],
        *,
        window: int,
        bad: set[int],
        size: RangeSize,
    ) -> None:
        self.size = size
        self.source = source
        self.peers = list(peers)
        self.chunks = list(chunks)
        self.bad = bad  # ids of peers refused by the consumer: not asked again
        self.fetched = {c.start: Fetched(c) for c in self.chunks}
        self._slots = trio.Semaphore(window)
        self._active = trio.Semaphore(PER_PEER * max(1, len(self.peers)))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for index, chunk in enumerate(self.chunks):
                await self._slots.acquire()  # released by the consumer
                nursery.start_soon(self._download, index, self.fetched[chunk.start])

    def has(self, start: int) -> bool:
        return start in self.fetched

    async def get(self, start: int) -> Fetched:
        fetched = self.fetched[start]
        await fetched.done.wait()
        return fetched

    def release(self, start: int) -> None:
        """The consumer is done with the chunk at ``start``: forget it, start another."""
        if self.fetched.pop(start, None) is not None:
            self._slots.release()

    async def _download(self, index: int, fetched: Fetched) -> None:
        async with self._active:  # first come (lowest chunk) first served
            peer, entries = await fetch_chunk(self.source, self.peers, fetched.chunk, index,
                                              self.bad, self.size)  # fmt: skip
        fetched.peer, fetched.entries = peer, entries
        fetched.done.set()


async def fetch_chunk(
    source: RangeSource, peers: Sequence[tuple[Any, int]], chunk: Chunk, index: int,
    bad: set[int], size: RangeSize,
) -> tuple[Any, list[Entry]]:  # fmt: skip
    """The most blocks of ``chunk`` one peer gives (asked in turn from the ``index``-th peer
    whose head reaches the chunk's start, ``size`` blocks a request), and that peer;
    ``(None, [])`` if none had any."""
    able = [p for p, head in peers if head >= chunk.start]
    best: tuple[Any, list[Entry]] = (None, [])
    for turn in range(len(able)):
        peer = able[(index + turn) % len(able)]
        if id(peer) in bad:
            continue
        entries: list[Entry] = []
        while len(entries) < chunk.count:
            start = chunk.start + len(entries)
            count = min(size.value, chunk.count - len(entries))
            asked = trio.current_time()
            reply = await source.fetch_range(peer, start, count)
            if reply is None:
                size.timed_out(count)
                break
            if not reply.blocks:
                break
            size.answered(count, trio.current_time() - asked)
            entries.extend(reply.blocks[:count])
        if len(entries) == chunk.count:
            return peer, entries
        if len(entries) > len(best[1]):
            best = (peer, entries)
    return best
