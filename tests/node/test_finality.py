"""Committing finalized blocks on a real RocksDB: when the newest finalized block is not here
yet, the finalized blocks below it that are all here are committed anyway, and the rest once
the missing blocks arrive (a node range-syncing past an epoch boundary learns of the network's
newest certificate hundreds of blocks before it has the blocks up to it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

from moderntensor.chain.chain import Chain, ExecutedBlock
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.votes import VoteKind, sign_vote
from moderntensor.consensus import BlockRef, Certificate, build_certificate
from moderntensor.node._finality import FinalityCommitter, FinalityConflict
from moderntensor.node._journal import ConsensusJournal
from moderntensor.state.store import Database
from tests.factories import VALIDATOR_CONSENSUS, genesis_doc

GENESIS = parse_genesis(genesis_doc())


def finalization(chain: Chain, executed: ExecutedBlock) -> tuple[BlockRef, Certificate]:
    header = executed.block.header
    vote = sign_vote(VALIDATOR_CONSENSUS, GENESIS.chain_id, chain.genesis_hash,
                     VoteKind.FINALIZE, 0, header.slot, header.hash)  # fmt: skip
    cert = build_certificate(VoteKind.FINALIZE, 0, header.slot, header.hash, [vote])
    return BlockRef(header.slot, header.hash), cert


def build(chain: Chain, count: int) -> list[ExecutedBlock]:
    """``count`` blocks built and committed on ``chain`` (the network's chain)."""
    blocks = []
    for slot in range(1, count + 1):
        executed = chain.build_block(chain.head, slot, VALIDATOR_CONSENSUS, [])
        chain.commit(executed, finalized=True)
        blocks.append(executed)
    return blocks


@attrs.frozen
class Setup:
    network: list[ExecutedBlock]  # six blocks of the network's chain
    chain: Chain  # this node's, at genesis
    journal: ConsensusJournal
    committer: FinalityCommitter


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Database.open(tmp_path / "net") as net_db, Database.open(tmp_path / "node") as db:
        chain, journal = Chain(db, GENESIS), ConsensusJournal(db)
        committer = FinalityCommitter(chain, journal, trio.CapacityLimiter(1))
        yield Setup(build(Chain(net_db, GENESIS), 6), chain, journal, committer)


async def test_finalized_blocks_that_are_here_commit_while_a_newer_one_is_missing(
    setup: Setup,
) -> None:
    network, chain, journal, committer = setup.network, setup.chain, setup.journal, setup.committer
    for executed in network[:4]:  # blocks 1-4 synced and executed here, 5 and 6 not yet
        chain.execute_block(executed.block)
    committer.add(*finalization(chain, network[5]))  # the newest: block 6
    committer.add(*finalization(chain, network[2]))  # block 3, proven by range sync
    committed, gap = await committer.commit()
    assert [e.block.number for e in committed] == [1, 2, 3]
    assert gap == network[5].block.hash  # the first block missing: block 6 itself
    assert chain.head.hash == network[2].block.hash
    assert chain.chaindb.finalized_hash() == network[2].block.hash
    assert journal.finalization(3) is not None  # its certificate went with it
    assert committer.target == BlockRef(6, network[5].block.hash)  # still wanted
    assert chain.top_number() == 4  # block 4 executed, not final yet

    # nothing new: nothing committed, the same gap
    assert await committer.commit() == ([], network[5].block.hash)
    for executed in network[4:]:  # the missing blocks arrive
        chain.execute_block(executed.block)
    committed, gap = await committer.commit()
    assert [e.block.number for e in committed] == [4, 5, 6]
    assert gap is None and committer.target is None
    assert chain.head.hash == network[5].block.hash
    assert journal.finalization(6) is not None
    assert chain.top_number() == 6  # nothing pending: the head


async def test_a_finalized_block_that_is_here_but_forks_from_the_head_is_a_conflict(
    setup: Setup,
) -> None:
    network, chain, committer = setup.network, setup.chain, setup.committer
    ours = chain.build_block(chain.head, 9, VALIDATOR_CONSENSUS, [])  # height 1, slot 9
    chain.commit(ours, finalized=True)
    chain.execute_block(network[0].block)  # the network's height 1: a fork of ours
    fork = chain.execute_block(network[1].block)
    committer.add(*finalization(chain, network[2]))  # not here
    committer.add(*finalization(chain, fork))
    with pytest.raises(FinalityConflict, match="forks below the head"):
        await committer.commit()
    assert chain.head.hash == ours.block.hash  # nothing of the fork committed
