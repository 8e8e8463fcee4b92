"""Range sync's checks, with fake peers: a range whose certificate is signed by keys outside
the epoch's set is refused and its peer disconnected; the same blocks with a genuine
certificate from another peer are executed and handed to the driver."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.votes import VoteKind, sign_vote
from moderntensor.consensus import Certificate, SignatureVerifier, build_certificate
from moderntensor.crypto import PrivateKey
from moderntensor.network import BlockRange, GetBlockRange
from moderntensor.network._serving import block_range
from moderntensor.node._sync import RangeSync, RangeSynced
from tests.consensus.harness import CHAIN_ID, GENESIS_HASH, KEYS, OUTSIDERS, to_set
from tests.network.fakes import FakeLink
from tests.network.fakes import FakeService as FakeNetService
from tests.network.helpers import signed_block

SET = to_set({k.address: 10 for k in KEYS[:4]}, 0, KEYS)
GENESIS_BLOCK = b"\x77" * 32


def chained(count: int) -> list[Block]:
    blocks, parent = [], GENESIS_BLOCK
    for number in range(1, count + 1):
        base = signed_block(number, number)
        block = Block(attrs.evolve(base.header, parent_hash=parent), (), ())
        blocks.append(block)
        parent = block.hash
    return blocks


def finalization(block: Block, keys: list[PrivateKey]) -> Certificate:
    votes = [
        sign_vote(k, CHAIN_ID, GENESIS_HASH, VoteKind.FINALIZE, 0, block.header.slot, block.hash)
        for k in keys
    ]
    return build_certificate(VoteKind.FINALIZE, 0, block.header.slot, block.hash, votes)


class FakeChain:
    def __init__(self) -> None:
        self.params = SimpleNamespace(epoch_length=4)
        self.head = SimpleNamespace(number=0, hash=GENESIS_BLOCK)
        self.executed: list[Block] = []

    def get_header(self, block_hash: bytes) -> None:
        return None

    def execute_block(self, block: Block) -> None:
        self.executed.append(block)


class FakeService:
    def validator_set(self, epoch: int) -> Any:
        return SET if epoch == 0 else None


class FakePeers:
    def __init__(self, ranges: dict[str, BlockRange]) -> None:
        self.ranges = ranges
        self.punished: list[tuple[str, str]] = []
        self.asked: list[str] = []

    async def heads(self) -> list[tuple[Any, int]]:
        return [(p, 3) for p in self.ranges if p not in {q for q, _ in self.punished}]

    async def fetch_range(self, peer: Any, start: int, count: int) -> BlockRange:
        self.asked.append(peer)
        return self.ranges[peer]

    def punish(self, peer: Any, reason: str) -> None:
        self.punished.append((peer, reason))


async def test_a_forged_certificate_is_refused_and_the_range_asked_elsewhere() -> None:
    blocks = chained(3)
    forged = finalization(blocks[2], OUTSIDERS[:4])  # a quorum's worth, none in the set
    genuine = finalization(blocks[2], KEYS[:3])
    peers = FakePeers({
        "forger": BlockRange(1, ((blocks[0], None), (blocks[1], None), (blocks[2], forged))),
        "honest": BlockRange(2, ((blocks[0], None), (blocks[1], None), (blocks[2], genuine))),
    })  # fmt: skip
    chain = FakeChain()
    send, receive = trio.open_memory_channel[RangeSynced](4)
    sync = RangeSync(chain, FakeService(), trio.CapacityLimiter(1),  # type: ignore[arg-type]
                     SignatureVerifier(CHAIN_ID, GENESIS_HASH), peers, send,
                     threshold=0)  # fmt: skip
    got: list[RangeSynced] = []

    async def driver() -> None:  # commits what sync hands it
        async for item in receive:
            got.append(item)
            ref = item.certificates[-1][0]
            chain.head = SimpleNamespace(number=3, hash=ref.hash)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver)
            assert await sync.sync_once() == 3
            nursery.cancel_scope.cancel()
    assert [p for p, _ in peers.punished] == ["forger"]
    assert "not in the set" in peers.punished[0][1]
    assert sync.refused == 1
    assert chain.executed == blocks  # only the honest peer's blocks ran
    assert len(got) == 1
    assert [(r.hash, c) for r, c in got[0].certificates] == [(blocks[2].hash, genuine)]


async def test_an_unchained_range_is_refused() -> None:
    blocks = chained(3)
    cert = finalization(blocks[2], KEYS[:3])
    peers = FakePeers({"liar": BlockRange(1, ((blocks[1], None), (blocks[2], cert)))})
    chain = FakeChain()
    send, _receive = trio.open_memory_channel[RangeSynced](4)
    sync = RangeSync(chain, FakeService(), trio.CapacityLimiter(1),  # type: ignore[arg-type]
                     SignatureVerifier(CHAIN_ID, GENESIS_HASH), peers, send,
                     threshold=0)  # fmt: skip
    assert await sync.sync_once() == 0
    assert [p for p, _ in peers.punished] == ["liar"]
    assert chain.executed == []


def test_a_range_is_served_from_committed_blocks_with_their_certificates() -> None:

    blocks = chained(4)
    service, link = FakeNetService(), FakeLink()
    for block in blocks[:3]:  # block 4 is not committed there
        service.blocks[block.hash] = block
    link.finalizations[3] = finalization(blocks[2], KEYS[:3])
    reply = block_range(service, link, GetBlockRange(9, 2, 5))
    assert reply.request_id == 9
    assert reply.blocks == ((blocks[1], None), (blocks[2], link.finalizations[3]))
    assert block_range(service, link, GetBlockRange(1, 7, 3)).blocks == ()


class SlowPeer:
    """A peer whose ranges longer than ``limit`` blocks take longer than a request may (the
    reply is None: no answer in time); shorter ones are answered."""

    def __init__(self, blocks: list[Block], certs: list[Certificate], limit: int) -> None:
        self.blocks, self.certs, self.limit = blocks, certs, limit
        self.asked: list[int] = []

    async def heads(self) -> list[tuple[Any, int]]:
        return [("slow", len(self.blocks))]

    async def fetch_range(self, peer: Any, start: int, count: int) -> BlockRange | None:
        self.asked.append(count)
        if count > self.limit:
            return None
        entries = [(self.blocks[i - 1], self.certs[i - 1])
                   for i in range(start, min(start + count, len(self.blocks) + 1))]  # fmt: skip
        return BlockRange(len(self.asked), tuple(entries))

    def punish(self, peer: Any, reason: str) -> None:
        raise AssertionError(f"an honest slow peer was punished: {reason}")


async def test_a_range_not_answered_in_time_is_asked_again_shorter() -> None:
    blocks = chained(3)
    peer = SlowPeer(blocks, [finalization(b, KEYS[:3]) for b in blocks], limit=1)
    chain = FakeChain()
    send, receive = trio.open_memory_channel[RangeSynced](4)
    sync = RangeSync(chain, FakeService(), trio.CapacityLimiter(1),  # type: ignore[arg-type]
                     SignatureVerifier(CHAIN_ID, GENESIS_HASH), peer, send,
                     threshold=0)  # fmt: skip

    async def driver() -> None:  # commits what sync hands it
        async for item in receive:
            ref = item.certificates[-1][0]
            chain.head = SimpleNamespace(number=ref.slot, hash=ref.hash)  # slot == number

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver)
            # 3 blocks asked: no answer in time; then 1, a fast answer doubles it to 2,
            # again too many: the sync goes on one block at a time and gets all three
            synced = await sync.sync_once()
            nursery.cancel_scope.cancel()
    assert synced == 3
    assert chain.executed == blocks
    assert peer.asked[:3] == [3, 1, 2]
    assert max(peer.asked[1:]) <= 2
