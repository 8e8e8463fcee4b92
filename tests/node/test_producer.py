"""The producer: candidates never include what the parent chain already includes, committed or
not; evidence is judged item by item, and only the unusable items are reported dropped; a
draft stops taking transactions once its time budget is spent."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.staking import get_total, get_validator
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.transactions import Transaction
from moderntensor.chain.votes import VoteKind, vote_digest
from moderntensor.consensus import BlockRef
from moderntensor.mempool import Mempool
from moderntensor.node import _producer as producer_module
from moderntensor.node._pool_service import MempoolService
from moderntensor.node._producer import (
    BUDGET_CHECK_EVERY,
    MIN_CANDIDATES,
    BlockProducer,
    BuildRequest,
    until_deadline,
)
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.chain.test_evidence import CUT, OWNER, STAKE, mixed_evidence
from tests.chain.test_evidence import GENESIS as EVIDENCE_GENESIS
from tests.factories import VALIDATOR_CONSENSUS
from tests.mempool.test_pool_chain import GWEI, VALIDATOR, genesis_doc, next_base_fee, transfer


async def test_candidates_skip_what_uncommitted_and_committed_ancestors_include(
    tmp_path: Path,
) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        pool = Mempool(chain.params, chain.state_at(chain.head), next_base_fee(chain))
        txs = {(u, n): transfer(u, n, GWEI) for u in range(2) for n in range(6)}
        for tx in txs.values():
            pool.add(tx)
        service = ChainService(chain, pool)
        pool_service = MempoolService(chain, pool, service)
        no_core: Any = None  # choosing candidates does not sign
        producer = BlockProducer(
            chain, pool, no_core, trio.CapacityLimiter(1), pool_service, catch_up_s=1.0
        )
        genesis = chain.head
        rest = {txs[0, n].hash for n in range(3, 6)} | {txs[1, n].hash for n in range(1, 6)}

        def assert_offers_only_the_rest(offered: list[Transaction]) -> None:
            # a block holds 7 transfers: 7 of the 8 not yet included, in nonce order per sender
            assert len(offered) == 7 and {tx.hash for tx in offered} <= rest
            for u in range(2):
                nonces = [tx.nonce for tx in offered if tx.sender == txs[u, 0].sender]
                assert nonces == sorted(nonces) and nonces[0] == (3 if u == 0 else 1)

        first = chain.build_block(genesis, 1, VALIDATOR, [txs[0, 0], txs[0, 1], txs[1, 0]])
        second = chain.build_block(first.block.header, 2, VALIDATOR, [txs[0, 2]])
        # Both executed, neither committed: the pool still holds all twelve.
        assert len(pool) == 12
        offered = await producer._candidates(second.block.header, next_base_fee(chain))
        assert_offers_only_the_rest(offered)
        # Commit the first: the producer waits for the mempool service to catch up with it.
        chain.commit(first, finalized=True)
        heads_send, heads = trio.open_memory_channel[object](1)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool_service.run, heads)  # type: ignore[arg-type]
            await heads_send.send(chain.head)
            offered = await producer._candidates(second.block.header, next_base_fee(chain))
            assert pool_service.head_number == 1
            assert len(pool) == 9  # the first block's three are gone
            assert_offers_only_the_rest(offered)
            nursery.cancel_scope.cancel()


async def test_producer_includes_the_valid_evidence_among_64_unusable_items(
    tmp_path: Path,
) -> None:
    """One bad item no longer costs the block its evidence, nor the driver its pool."""
    with Database.open(tmp_path / "a") as db, Database.open(tmp_path / "b") as follower_db:
        chain, follower = Chain(db, EVIDENCE_GENESIS), Chain(follower_db, EVIDENCE_GENESIS)
        valid, items = mixed_evidence(chain)  # commits block 1, which uses one offence
        follower.import_block(chain.chaindb.get_block(chain.head.hash))  # type: ignore[arg-type]
        unused: Any = None  # drafting touches neither the pool nor the core
        producer = BlockProducer(chain, unused, unused, trio.CapacityLimiter(1), unused)
        proposer = VALIDATOR_CONSENSUS.address
        draft, dropped = await producer._draft(chain.head, 2, proposer, [], tuple(items))
        assert draft.evidence == (valid,)
        assert dropped == tuple(raw for raw in items if raw != valid)
        # sealed and re-executed by another node: the offender is slashed exactly once
        epoch = compute_block_epoch(draft.header.number, chain.params.epoch_length)
        digest = vote_digest(
            chain.params.chain_id, chain.genesis_hash, VoteKind.PROPOSE, epoch, 2,
            draft.seal_hash,
        )  # fmt: skip
        executed = chain.seal_block(draft, VALIDATOR_CONSENSUS.sign(digest))
        follower.import_block(executed.block)
        state = follower.state_at(follower.head)
        record = get_validator(state, OWNER)
        assert record is not None and record.jailed and record.stake == STAKE - CUT
        assert get_total(state, "slashed") == 2 * CUT  # block 1's offence and this one


async def test_evidence_the_block_rule_refuses_is_left_out_but_not_reported_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort: should selection and the block rule disagree (a bug), the block is
    built without evidence and the driver is told nothing was dropped, so it keeps all."""
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, EVIDENCE_GENESIS)
        offered = (b"\x80", b"\xc0")
        monkeypatch.setattr(chain, "select_evidence", lambda parent, items, limit: (items, ()))
        unused: Any = None
        producer = BlockProducer(chain, unused, unused, trio.CapacityLimiter(1), unused)
        proposer = VALIDATOR_CONSENSUS.address
        draft, dropped = await producer._draft(chain.head, 1, proposer, [], offered)
        assert draft.evidence == () and dropped == ()


async def test_no_block_is_built_outside_the_requested_epoch(tmp_path: Path) -> None:
    """The core asks for a block of its epoch; a parent whose child would fall in another
    epoch (the epoch's boundary block is the parent) gets no block."""
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        unused: Any = None  # refused before the pool or the core are asked anything
        producer = BlockProducer(chain, unused, unused, trio.CapacityLimiter(1), unused)
        genesis = BlockRef(chain.head.slot, chain.head.hash)
        built = await producer.build(BuildRequest(1, 1, genesis))  # height 1 is in epoch 0
        assert built.proposal is None


def test_until_deadline_stops_at_the_first_check_past_the_deadline() -> None:
    items: Any = list(range(5 * BUDGET_CHECK_EVERY))
    assert list(until_deadline(items, time.monotonic() + 3600)) == items
    spent = list(until_deadline(items, time.monotonic() - 1))  # spent before it began
    assert spent == items[:BUDGET_CHECK_EVERY]  # never empty for want of time


async def test_a_spent_draft_budget_leaves_the_rest_for_the_next_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "BUDGET_CHECK_EVERY", 2)
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        candidates = [transfer(0, n, GWEI) for n in range(6)]
        unused: Any = None  # drafting touches neither the pool nor the core
        for budget, included in ((None, 6), (3600.0, 6), (0.0, 2)):
            producer = BlockProducer(
                chain, unused, unused, trio.CapacityLimiter(1), unused, draft_budget_s=budget
            )
            draft, _ = await producer._draft(chain.head, 1, VALIDATOR.address, candidates, ())
            assert draft.transactions == tuple(candidates[:included])


def test_after_a_draft_runs_out_of_time_fewer_candidates_are_taken_then_more() -> None:
    unused: Any = None
    producer = BlockProducer(unused, unused, unused, trio.CapacityLimiter(1), unused,
                             draft_budget_s=0.3)  # fmt: skip

    def draft(used: int, full: bool = False) -> Any:
        gas_limit = 21_000 * (used if full else 7_142)
        header = SimpleNamespace(gas_used=21_000 * used, gas_limit=gas_limit)
        return SimpleNamespace(header=header, transactions=[None] * used)

    assert producer.take is None  # all that fit the gas limit
    producer._adjust_take(draft(300), taken=7_142, budgeted=False)  # the simulator: no budget
    assert producer.take is None
    producer._adjust_take(draft(300), taken=7_142, budgeted=True)  # out of time, room left
    assert producer.take == MIN_CANDIDATES
    producer._adjust_take(draft(900), taken=1_024, budgeted=True)  # out of time again
    assert producer.take == 1_800
    producer._adjust_take(
        draft(1_000), taken=1_000, budgeted=True
    )  # the pool had no more: as it was
    assert producer.take == 1_800
    producer._adjust_take(
        draft(1_200, full=True), taken=1_800, budgeted=True
    )  # full: time was not short
    assert producer.take == 3_600
    takes = []
    while producer.take is not None:  # the drafts use all they get: twice as many each time
        producer._adjust_take(draft(producer.take), taken=producer.take, budgeted=True)
        takes.append(producer.take)
    assert takes == [7_200, 14_400, None]
