"""The block fetcher on a real RocksDB: it walks a missing block's parents down to one held
here and executes them oldest first; a block too far above everything held here fails at
once, after one request, instead of walking (and decoding) hundreds of blocks in vain: that
gap is range sync's."""

from __future__ import annotations

from pathlib import Path

import trio

from moderntensor.chain.blocks import Block
from moderntensor.chain.chain import Chain
from moderntensor.consensus import Certificate
from moderntensor.node._fetch import BlockFetchService, BlocksFetched, FetchFailed, FetchRequest
from moderntensor.node._journal import ConsensusJournal
from moderntensor.state.store import Database
from tests.node.test_finality import GENESIS, build


class Peers:
    """The network's blocks by hash (what the test is about is the walk, not the wire)."""

    def __init__(self, blocks: list[Block]) -> None:
        self.blocks = {b.hash: b for b in blocks}
        self.asked: list[int] = []

    async def fetch_block(self, block_hash: bytes) -> Block | None:
        block = self.blocks.get(block_hash)
        self.asked.append(-1 if block is None else block.number)
        return block

    async def fetch_certificates(self, epoch: int, slot: int) -> list[Certificate]:
        return []


async def test_missing_ancestors_are_walked_only_when_they_can_be_reached(
    tmp_path: Path,
) -> None:
    with Database.open(tmp_path / "net") as net_db, Database.open(tmp_path / "node") as db:
        network = [e.block for e in build(Chain(net_db, GENESIS), 9)]
        chain, journal = Chain(db, GENESIS), ConsensusJournal(db)
        peers = Peers(network)
        fetcher = BlockFetchService(chain, journal, trio.CapacityLimiter(1), peers, max_depth=4)
        chain.execute_block(network[0])  # block 1 is pending here: the top is 1, the head 0

        # block 6 is 5 above the top: more than 4 missing, known from the first answer
        failed = await fetcher.fetch(FetchRequest(network[5].hash, "test"))
        assert isinstance(failed, FetchFailed)
        assert "block 6 is 5 above the highest here" in failed.reason
        assert peers.asked == [6]
        assert chain.get_header(network[5].hash) is None

        # block 5 is 4 above: walked down to block 2, executed oldest first, stored
        peers.asked.clear()
        fetched = await fetcher.fetch(FetchRequest(network[4].hash, "test"))
        assert isinstance(fetched, BlocksFetched)
        assert fetched.executed == tuple(b.hash for b in network[1:5])
        assert peers.asked == [5, 4, 3, 2]
        assert chain.top_number() == 5 and chain.head.number == 0
        assert all(journal.has_block(b.hash) for b in network[1:5])

        # now block 9 is 4 above the top: reachable
        fetched = await fetcher.fetch(FetchRequest(network[8].hash, "test"))
        assert isinstance(fetched, BlocksFetched) and len(fetched.executed) == 4

        # a block no peer has fails with its hash
        failed = await fetcher.fetch(FetchRequest(b"\x42" * 32, "test"))
        assert isinstance(failed, FetchFailed) and failed.reason == f"no block 0x{'42' * 32}"
