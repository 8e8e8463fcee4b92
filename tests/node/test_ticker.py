"""The slot ticker under virtual time: slot-start ticks, the core's deadline, re-planning."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from moderntensor.consensus import ConsensusConfig, Preset
from moderntensor.node._ticker import (
    Tick,
    Ticker,
    compute_countdown_wait_ms,
    log_genesis_countdown,
)

SLOT_MS = 1000


def make_ticker(genesis_ms: int = 0) -> Ticker:
    preset = Preset(
        slot_duration_ms=SLOT_MS, epoch_length=32, timeout_ms=2 * SLOT_MS,
        max_validators=4, evidence_window=64, max_future_slots=64,
    )  # fmt: skip
    config = ConsensusConfig(1337, b"\x11" * 32, genesis_ms, preset)
    return Ticker(config, lambda: round(trio.current_time() * 1000))


async def collect(ticker: Ticker, count: int) -> list[Tick]:
    send, receive = trio.open_memory_channel[Tick](0)
    ticks: list[Tick] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(ticker.run, send)
        async for tick in receive:
            ticks.append(tick)
            if len(ticks) == count:
                nursery.cancel_scope.cancel()
                break
    return ticks


async def test_ticks_at_every_slot_start(autojump_clock: trio.testing.MockClock) -> None:
    autojump_clock.jump(2.5)  # mid-slot 2
    ticks = await collect(make_ticker(), 3)
    assert [(t.now_ms, t.slot) for t in ticks] == [(3000, 3), (4000, 4), (5000, 5)]


async def test_first_tick_is_genesis_when_started_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks = await collect(make_ticker(genesis_ms=1500), 2)
    assert [(t.now_ms, t.slot) for t in ticks] == [(1500, 0), (2500, 1)]


async def test_a_deadline_inside_the_slot_wakes_early_and_fires_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = make_ticker()
    ticker.set_deadline(300)
    ticks = await collect(ticker, 3)
    assert [t.now_ms for t in ticks] == [300, 1000, 2000]  # then slot starts only
    assert ticker.deadline_ms is None


async def test_a_past_deadline_fires_at_once(autojump_clock: trio.testing.MockClock) -> None:
    autojump_clock.jump(5.2)
    ticker = make_ticker()
    ticker.set_deadline(4000)
    ticks = await collect(ticker, 1)
    assert ticks[0].now_ms == 5200


async def test_moving_the_deadline_replans_a_sleeping_ticker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = make_ticker()
    send, receive = trio.open_memory_channel[Tick](0)
    async with trio.open_nursery() as nursery:
        await nursery.start(ticker.run, send)
        await trio.sleep(0.1)  # the ticker now sleeps until the slot start at 1000
        ticker.set_deadline(400)
        first = await receive.receive()
        ticker.set_deadline(1700)  # later than the next slot start: that comes first
        second = await receive.receive()
        third = await receive.receive()
        nursery.cancel_scope.cancel()
    assert [first.now_ms, second.now_ms, third.now_ms] == [400, 1000, 1700]


async def test_clearing_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    ticker = make_ticker()
    ticker.set_deadline(600)
    ticker.set_deadline(None)
    ticks = await collect(ticker, 1)
    assert ticks[0].now_ms == 1000


def test_countdown_marks() -> None:
    """Whole minutes while more than a minute remains, then every 10 s; a clock a little off
    a mark counts as on it."""
    waits, remaining = [], 134_000
    while remaining > 0:
        wait = compute_countdown_wait_ms(remaining)
        waits.append(wait)
        remaining -= wait
    assert waits == [14_000, 60_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000]
    assert compute_countdown_wait_ms(60_300) == 10_300  # not one more line at 60.3 s
    assert compute_countdown_wait_ms(400) == 400  # the last stretch ends at genesis


async def test_waiting_for_genesis_is_logged_with_a_countdown(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("moderntensor").propagate = True
    with caplog.at_level(logging.INFO, logger="moderntensor.node"):
        await log_genesis_countdown(74_000, lambda: round(trio.current_time() * 1000))
    lines = [r for r in caplog.records if r.getMessage() == "waiting for genesis"]
    assert [r.fields["in_s"] for r in lines] == [74, 60, 50, 40, 30, 20, 10]  # type: ignore[attr-defined]
    assert trio.current_time() == 74.0  # returns at genesis, not later
