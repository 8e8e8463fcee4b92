"""A peer's two send queues: consensus frames, requests and answers go before transaction
batches and block ranges, whatever order they were queued in; both are bounded."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from moderntensor.network._peers import Direction, Peer


def peer(size: int = 8) -> Peer:
    none: Any = None
    return Peer("02" + "ab" * 32, none, Direction.INBOUND, none, None, queue_size=size)


async def test_urgent_frames_are_written_before_bulk_ones() -> None:
    p = peer()
    assert p.send_nowait(b"tx batch 1", bulk=True)
    assert p.send_nowait(b"tx batch 2", bulk=True)
    assert p.send_nowait(b"vote")
    assert await p.next_frame() == b"vote"
    assert p.send_nowait(b"proposal")
    assert [await p.next_frame() for _ in range(3)] == [b"proposal", b"tx batch 1", b"tx batch 2"]


async def test_a_waiting_writer_wakes_for_either_queue_and_ends_on_close() -> None:
    p = peer()
    got: list[bytes | None] = []

    async def writer() -> None:
        while True:
            frame = await p.next_frame()
            got.append(frame)
            if frame is None:
                return

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            p.send_nowait(b"batch", bulk=True)
            await trio.testing.wait_all_tasks_blocked()
            p.send_nowait(b"vote")
            await trio.testing.wait_all_tasks_blocked()
            p.close()
    assert got == [b"batch", b"vote", None]


def test_the_bulk_queue_is_bounded_and_drops_are_counted() -> None:
    p = peer(size=8)  # bulk holds 8 // 4 = 2
    assert p.send_nowait(b"1", bulk=True) and p.send_nowait(b"2", bulk=True)
    assert not p.send_nowait(b"3", bulk=True)
    assert p.dropped == 1
    assert p.send_nowait(b"vote")  # the urgent queue is not affected
