"""Heavy reads off the event loop, within budgets; /health when the chain stops finalizing.

The dispatcher with a real :class:`ReadWorker` (real threads): heavy methods run in a worker
thread while the event loop keeps ticking, give way while the chain lock is held, and a batch
stops at its CPU budget with -32005 naming the key. ``/health`` on the dev node turns 503 with
the reason when the consensus facts say nothing was finalized for too many slots, and merges
that with the syncing reason.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import orjson
import trio

from moderntensor.rpc._dispatch import Dispatcher
from moderntensor.rpc._methods import Method
from moderntensor.rpc._work import ReadWorker
from moderntensor.service import SyncProgress
from tests.rpc.conftest import RawClient
from tests.rpc.devnode import DevNode


def burn(seconds: float) -> None:
    """Hold the CPU (and the GIL, in slices) for ``seconds`` of thread CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(range(1000))


class Methods:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def heavy(self) -> str:
        self.threads.append(threading.get_ident())
        burn(0.02)
        return "0x1"

    def table(self) -> dict[str, Method]:
        return {
            "eth_getLogs": Method(self.heavy),  # a heavy method's name
            "eth_chainId": Method(lambda: (self.threads.append(threading.get_ident()), "0x2")[1]),
        }


def call(i: int, method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": i, "method": method}


async def test_heavy_calls_run_in_the_worker_and_the_loop_keeps_ticking() -> None:
    methods = Methods()
    dispatcher = Dispatcher(methods.table(), 1000, worker=ReadWorker(1))
    loop_thread = threading.get_ident()
    gaps: list[float] = []

    async def ticker(done: trio.Event) -> None:
        last = time.monotonic()
        while not done.is_set():
            await trio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker, done)
        body = orjson.dumps([call(i, "eth_getLogs") for i in range(20)] + [call(20, "eth_chainId")])
        answer = orjson.loads(await dispatcher.answer(body) or b"")
        done.set()
    assert [a["result"] for a in answer] == ["0x1"] * 20 + ["0x2"]
    assert set(methods.threads[:20]) != {loop_thread}, "heavy calls ran in a worker thread"
    assert methods.threads[20] == loop_thread, "light calls stay inline"
    assert len(gaps) > 20 and max(gaps) < 0.1, max(gaps)  # 0.4 s of work, never a long stall
    assert (dispatcher.calls, dispatcher.errors) == (21, 0)


async def test_a_batch_stops_at_its_cpu_budget() -> None:
    methods = Methods()
    dispatcher = Dispatcher(methods.table(), 1000, worker=ReadWorker(1), batch_cpu_budget_s=0.05)
    body = orjson.dumps([call(i, "eth_getLogs") for i in range(10)] + [call(10, "eth_chainId")])
    answer = orjson.loads(await dispatcher.answer(body) or b"")
    assert [a["id"] for a in answer] == list(range(11))
    done = [a for a in answer if "result" in a]
    assert 3 <= len(done) <= 4 and answer[: len(done)] == done  # 20 ms each, 50 ms budget
    refused = answer[len(done) :]
    assert {a["error"]["code"] for a in refused} == {-32005}
    assert "rpc.batch_cpu_budget_s" in refused[0]["error"]["message"]
    assert dispatcher.over_budget == len(refused) and dispatcher.calls == 11
    # the next body has a fresh budget
    assert "result" in orjson.loads(await dispatcher.answer(orjson.dumps(call(1, "eth_getLogs"))))


async def test_the_worker_gives_way_while_the_chain_lock_is_held() -> None:
    chain_lock = trio.CapacityLimiter(1)
    worker = ReadWorker(1, lambda: chain_lock.borrowed_tokens > 0, give_way_max_s=1.0)
    methods = Methods()
    dispatcher = Dispatcher(methods.table(), 1000, worker=worker)
    finished: list[str] = []

    async def chain_work() -> None:
        async with chain_lock:
            await trio.sleep(0.3)
            finished.append("chain")

    async def reader() -> None:
        await dispatcher.answer(orjson.dumps(call(1, "eth_getLogs")))
        finished.append("rpc")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(chain_work)
        await trio.sleep(0.01)  # the lock is taken
        nursery.start_soon(reader)
    assert finished == ["chain", "rpc"]
    assert 0.15 <= worker.gave_way_s <= 1.0


@attrs.frozen
class Facts:
    slot: int
    finalized_slot: int
    epoch: int = 0
    view: int = 0
    synced: bool = True
    last_finality_ms: int | None = None
    evidence_pending: int = 0
    event_loop_lag_s: float | None = None
    blocks_built: int = 0


class StalledConsensus:
    def __init__(self, facts: Facts) -> None:
        self.facts = facts

    def status(self) -> Facts:
        return self.facts


def test_health_is_503_when_the_chain_stops_finalizing(node: DevNode, rpc: RawClient) -> None:
    service = node.service
    real = service.consensus
    status, _, body = rpc.get("/health")
    assert status == 200 and orjson.loads(body)["unfinalizedSlots"] <= 32
    stalled = StalledConsensus(Facts(slot=1_000, finalized_slot=950))
    progress = SyncProgress(starting=3, current=40, highest=1000, blocks_per_s=12.5, eta_s=76.8)
    try:
        node.call(lambda: setattr(service, "consensus", stalled))
        status, _, body = rpc.get("/health")
        doc = orjson.loads(body)
        assert status == 503 and doc["ready"] is False and doc["unfinalizedSlots"] == 50
        assert doc["reason"] == (
            "not finalizing: nothing finalized for 50 slots (the newest final block is at "
            "slot 950, now slot 1000; limit rpc.health_max_unfinalized_slots = 32)"
        )
        stalled.facts = Facts(slot=1_000, finalized_slot=968)  # 32 behind: still ready
        assert rpc.get("/health")[0] == 200
        stalled.facts = Facts(slot=1_000, finalized_slot=900)
        node.call(lambda: setattr(service, "sync_progress", progress))
        status, _, body = rpc.get("/health")
        assert status == 503
        assert orjson.loads(body)["reason"] == "syncing: block 40 of 1000", (
            "while syncing, the syncing reason says why nothing is final"
        )
    finally:
        node.call(lambda: setattr(service, "consensus", real))
        node.call(lambda: setattr(service, "sync_progress", None))
    assert rpc.get("/health")[0] == 200
