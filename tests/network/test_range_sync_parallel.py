"""Range sync from several peers at once (fake peers, real blocks and certificates): chunks
are downloaded from every peer ahead of execution and executed in height order; short replies
are completed, blocks without a certificate of their own are carried until one proves them,
a forger's chunks are refused and fetched elsewhere, and progress is published while it runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio

from moderntensor.chain.blocks import Block
from moderntensor.consensus import SignatureVerifier
from moderntensor.network import BlockRange
from moderntensor.node._sync import RangeSync, RangeSynced
from moderntensor.node._sync_download import Chunk, RangeSize, plan_chunks
from moderntensor.service import SyncProgress
from tests.consensus.harness import CHAIN_ID, GENESIS_HASH, KEYS, OUTSIDERS
from tests.network.test_range_sync_checks import SET, FakeChain, chained, finalization

EPOCH = 8


class Chain(FakeChain):
    """Executes nothing but records the order; its head moves when the 'driver' commits."""

    def __init__(self) -> None:
        super().__init__()
        self.params = SimpleNamespace(epoch_length=EPOCH)


class Service:
    def __init__(self) -> None:
        self.sync_progress: SyncProgress | None = None
        self.seen: list[SyncProgress] = []

    def validator_set(self, epoch: int) -> Any:
        return SET if epoch == 0 else None


class Peers:
    """Peers serving ``blocks``: ``limit`` blocks per reply at most; ``forgers`` sign their
    certificates with keys outside the set."""

    def __init__(
        self, blocks: list[Block], certified: set[int], names: list[str], *,
        limit: int = 128, forgers: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.blocks = blocks
        self.names = names
        self.limit = limit
        self.forgers = forgers
        self.genuine = {n: finalization(blocks[n - 1], KEYS[:3]) for n in certified}
        self.forged = {n: finalization(blocks[n - 1], OUTSIDERS[:4]) for n in certified}
        self.asked: list[tuple[str, int, int]] = []
        self.punished: list[str] = []

    async def heads(self) -> list[tuple[Any, int]]:
        return [(n, len(self.blocks)) for n in self.names if n not in self.punished]

    async def fetch_range(self, peer: Any, start: int, count: int) -> BlockRange:
        self.asked.append((peer, start, count))
        await trio.sleep(0.01)  # a round trip: downloads overlap
        certs = self.forged if peer in self.forgers else self.genuine
        numbers = range(start, min(start + min(count, self.limit), len(self.blocks) + 1))
        return BlockRange(1, tuple((self.blocks[n - 1], certs.get(n)) for n in numbers))

    def punish(self, peer: Any, reason: str) -> None:
        self.punished.append(peer)


async def sync(peers: Peers, count: int) -> tuple[Chain, Service, RangeSync, int]:
    chain, service = Chain(), Service()
    by_hash = {b.hash: b for b in peers.blocks}
    send, receive = trio.open_memory_channel[RangeSynced](0)
    sync = RangeSync(chain, service, trio.CapacityLimiter(1),  # type: ignore[arg-type]
                     SignatureVerifier(CHAIN_ID, GENESIS_HASH), peers, send,
                     threshold=0, window=4)  # fmt: skip

    async def driver() -> None:  # commits what sync hands it, noting the published progress
        async for item in receive:
            assert service.sync_progress is not None
            service.seen.append(service.sync_progress)
            block = by_hash[item.certificates[-1][0].hash]
            chain.head = SimpleNamespace(number=block.number, hash=block.hash)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver)
            synced = await sync.sync_once()
            nursery.cancel_scope.cancel()
    assert chain.head.number == count
    return chain, service, sync, synced


def test_chunks_never_cross_an_epoch_boundary() -> None:
    assert plan_chunks(3, 20, EPOCH) == [Chunk(3, 6), Chunk(9, 8), Chunk(17, 4)]
    chunks = plan_chunks(1, 1000, 500)
    assert [c.count for c in chunks] == [128, 128, 128, 116] * 2
    assert chunks[3].end == 500 and chunks[4].start == 501


async def test_a_sync_downloads_from_every_peer_and_executes_in_order() -> None:
    blocks = chained(60)
    peers = Peers(blocks, set(range(1, 61)), ["a", "b", "c"])
    chain, service, sync, synced = await sync_run(peers)
    assert synced == 60 and chain.executed == blocks
    assert {p for p, _, _ in peers.asked} == {"a", "b", "c"}  # in parallel, from all three
    assert len(sync.peers_used) == 3
    assert service.sync_progress is None  # done: ready again
    first, last = service.seen[0], service.seen[-1]
    assert first.starting == 0 and first.highest == 60
    assert last.current > first.current and last.blocks_per_s > 0


async def test_short_replies_are_completed_and_uncertified_blocks_carried() -> None:
    blocks = chained(40)
    certified = {n for n in range(1, 41) if n % 10 == 0}  # chunks of 8: most lack one
    peers = Peers(blocks, certified, ["a", "b"], limit=3)
    chain, _service, sync, synced = await sync_run(peers)
    assert synced == 40 and chain.executed == blocks
    assert sync.refused == 0 and not peers.punished
    assert any((start - 1) % EPOCH for _, start, _ in peers.asked)  # the rest of a short reply


async def test_a_forgers_chunks_are_refused_and_fetched_from_honest_peers() -> None:
    blocks = chained(48)
    peers = Peers(blocks, set(range(1, 49)), ["forger", "a", "b"], forgers=("forger",))
    chain, _service, sync, synced = await sync_run(peers)
    assert synced == 48 and chain.executed == blocks  # nothing of the forger's ran
    assert peers.punished == ["forger"] and sync.refused == 1


async def sync_run(peers: Peers) -> tuple[Chain, Service, RangeSync, int]:
    return await sync(peers, len(peers.blocks))


class SlowPeers(Peers):
    """Peers that cannot answer more than ``most`` blocks in time (full blocks, busy)."""

    def __init__(self, blocks: list[Block], most: int) -> None:
        super().__init__(blocks, set(range(1, len(blocks) + 1)), ["a", "b"])
        self.most = most

    async def fetch_range(self, peer: Any, start: int, count: int) -> BlockRange | None:
        if count > self.most:
            self.asked.append((peer, start, count))
            return None  # timed out
        return await super().fetch_range(peer, start, count)


async def test_requests_shrink_until_answered_in_time_and_grow_after_fast_answers() -> None:
    blocks = chained(40)
    peers = SlowPeers(blocks, most=3)
    chain, _service, sync, synced = await sync_run(peers)
    assert synced == 40 and chain.executed == blocks
    asked = [count for _, _, count in peers.asked]
    assert asked[0] == EPOCH and min(asked) <= 3  # 8 blocks timed out; then fewer
    assert sync.size.value <= 2 * 3 + 1  # the size settles near what the peers can give


def test_the_range_size_halves_and_doubles_within_bounds() -> None:
    size = RangeSize(128)
    size.timed_out(128)
    size.timed_out(64)
    assert size.value == 32
    size.answered(32, seconds=0.1)
    assert size.value == 64
    size.answered(16, seconds=0.1)  # a small request says nothing about larger ones
    assert size.value == 64
    size.answered(64, seconds=2.0)  # slow: stays
    assert size.value == 64
    for _ in range(10):
        size.timed_out(size.value)
    assert size.value == 1
