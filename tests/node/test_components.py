"""The node's tasks working together: bad network input is the peer's problem, the pool
follows the chain through the mempool service, the loop monitor reports to the RPC.

Tests that ``virtual`` run on Trio's MockClock (the ``autojump_clock`` fixture) with the
node's clock read from it and its blocking work inline (``moderntensor.offload``), as the
simulator runs nodes: slots pass in virtual time, so a wait of "three blocks" or a 1.5 s
stall is exact and costs no wall time. The loop monitor's test stays on the real clock (it
measures real stalls of the loop).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from moderntensor import offload
from moderntensor.chain.blocks import Block
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.chain.votes import VoteKind, sign_vote
from moderntensor.consensus import Proposal
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.node._loop_monitor import LoopMonitor
from moderntensor.node._producer import BlockBuilt, BuildRequest
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis

GWEI = 10**9


def settings_for(tmp_path: Path) -> tuple[NodeSettings, list[PrivateKey]]:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(tmp_path / "data", genesis, keys.validator.consensus, rpc=None)
    return settings, list(keys.accounts)


def virtual_ms() -> int:
    """The node's clock on the MockClock: genesis (time 0) is the MockClock's start."""
    return int(trio.current_time() * 1000)


async def open_virtual(
    nursery: trio.Nursery, tmp_path: Path
) -> tuple[NodeHandle, list[PrivateKey]]:
    """A dev node on virtual time (call inside ``offload.inline()``, with ``autojump_clock``)."""
    genesis, keys = dev_genesis(0, slot_duration=0.2)
    settings = NodeSettings(tmp_path / "data", genesis, keys.validator.consensus, rpc=None)
    node: NodeHandle = await nursery.start(partial(open_node, settings, clock=virtual_ms))
    return node, list(keys.accounts)


async def wait_for_height(node: NodeHandle, height: int, limit_s: float = 20) -> None:
    with trio.fail_after(limit_s):
        while node.chain.head.number < height:
            await trio.sleep(0.05)


async def test_invalid_network_messages_are_rejected_and_the_node_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    stranger = PrivateKey(keccak256(b"not a validator"))
    with offload.inline():
        await _invalid_messages(tmp_path, stranger)


async def _invalid_messages(tmp_path: Path, stranger: PrivateKey) -> None:
    async with trio.open_nursery() as nursery:
        node, _ = await open_virtual(nursery, tmp_path)
        await wait_for_height(node, 1)
        head = node.chain.head
        core = node.driver.core
        slot = core.view + 1
        # a block on the head, signed by a stranger instead of the slot's leader
        unsigned = attrs.evolve(
            head,
            parent_hash=head.hash,
            number=head.number + 1,
            slot=slot,
            proposer=stranger.address,
            proposer_signature=b"",
        )
        config = node.driver.config
        propose = sign_vote(stranger, config.chain_id, config.genesis_hash, VoteKind.PROPOSE,
                            core.epoch, slot, unsigned.seal_hash)  # fmt: skip
        header = attrs.evolve(unsigned, proposer_signature=propose.signature.to_bytes())
        forged = Proposal(Block(header, (), ()))
        vote = sign_vote(
            stranger, config.chain_id, config.genesis_hash, VoteKind.NOTARIZE, core.epoch,
            slot, keccak256(b"a block nobody built"),
        )  # fmt: skip
        await node.inbound.send(forged)
        await node.inbound.send(vote)
        with trio.fail_after(10):
            while node.driver.rejected_messages < 2:
                await trio.sleep(0.02)
        await wait_for_height(node, head.number + 3)  # still finalizing
        assert node.chain.get_header(forged.block_hash) is None
        nursery.cancel_scope.cancel()


async def test_the_mempool_service_drops_what_blocks_included(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with offload.inline():
        await _pool_follows_chain(tmp_path)


async def _pool_follows_chain(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node, accounts = await open_virtual(nursery, tmp_path)
        sender, recipient = accounts[0], accounts[1].address
        raws = [
            sign_transaction(
                DynamicFeeTransaction(
                    chain_id=node.chain.params.chain_id, nonce=n, max_priority_fee_per_gas=GWEI,
                    max_fee_per_gas=20 * GWEI, gas=21_000, to=recipient, value=1,
                ),
                sender,
            ).raw
            for n in range(30)
        ]  # fmt: skip
        results = await node.service.submit_raw_transactions(raws)
        assert all(isinstance(r, bytes) for r in results)
        assert len(node.pool) == 30
        with trio.fail_after(20):
            while len(node.pool) or node.chain.state_at(node.chain.head).get_nonce(
                sender.address
            ) < len(raws):
                await trio.sleep(0.05)
        assert node.pool_service.revalidations >= 1
        assert node.pool.pending_nonce(sender.address) == len(raws)
        assert node.producer.built >= 1
        nursery.cancel_scope.cancel()


async def test_the_loop_monitor_reports_through_the_node_status(tmp_path: Path) -> None:
    settings, _ = settings_for(tmp_path)
    async with trio.open_nursery() as nursery:
        node: NodeHandle = await nursery.start(open_node, settings)
        await wait_for_height(node, 1)
        start = node.chain.head.number
        await wait_for_height(node, start + 3)  # at least two whole 0.2 s slots later
        assert node.monitor.samples >= 5
        assert node.service.consensus is not None
        status = node.service.consensus.status()
        assert status.event_loop_lag_s == node.monitor.recent_max_s
        assert status.blocks_built == node.producer.built >= 2
        assert status.synced and status.epoch == node.driver.core.epoch
        # A chain catching up with the clock builds without waiting for ticks: wait for two.
        with trio.fail_after(10):
            while node.ticker.ticks < 2:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


def test_loop_monitor_keeps_the_worst_of_the_last_window() -> None:
    monitor = LoopMonitor(interval_s=0.01, window_s=10)
    monitor.record(0.030, now_s=1)
    monitor.record(0.005, now_s=5)
    assert (monitor.recent_max_s, monitor.max_s, monitor.last_s) == (0.030, 0.030, 0.005)
    monitor.record(0.002, now_s=11)  # a new window: the old one's worst is still shown
    assert monitor.recent_max_s == 0.030
    monitor.record(0.001, now_s=22)  # two windows on: forgotten, except in the all-time max
    assert monitor.recent_max_s == 0.002
    assert monitor.max_s == 0.030
    assert monitor.samples == 4


async def test_a_busy_producer_costs_its_slots_not_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """A build that outlasts several slots (here: held back 1.5 s, seven slots) leaves the
    driver free: later build requests wait (one) or are dropped with a warning, the views time
    out (0.4 s after each is entered), and once the producer is back the chain grows again."""
    logging.getLogger("moderntensor").propagate = True
    caplog.set_level(logging.WARNING, logger="moderntensor.node")
    with offload.inline():
        await _busy_producer(tmp_path, caplog)


async def _busy_producer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with trio.open_nursery() as nursery:
        node, _ = await open_virtual(nursery, tmp_path)
        await wait_for_height(node, 2)
        producer = node.producer
        real_build = producer.build
        stalled: list[int] = []

        async def slow_build(request: BuildRequest) -> BlockBuilt:
            if not stalled:
                stalled.append(request.slot)
                await trio.sleep(1.5)
            return await real_build(request)

        producer.build = slow_build  # type: ignore[method-assign]
        with trio.fail_after(10):
            while not stalled:
                await trio.sleep(0.01)
        view, height = node.driver.core.view, node.chain.head.number
        await trio.sleep(1.0)  # two timeouts into the stall
        assert node.driver.core.view >= view + 2  # the driver goes on: ticks, timeouts
        assert node.chain.head.number == height  # nothing is built meanwhile
        skipped = [
            slot
            for r in caplog.records
            if r.getMessage() == "producer busy, slot skipped"
            and (slot := getattr(r, "fields", {})["slot"]) > stalled[0]
        ]
        # the next slot's request waits in the channel (capacity 1); the one after is dropped
        assert skipped and skipped[0] >= stalled[0] + 2
        await wait_for_height(node, height + 3)  # and it finalizes again afterwards
        slots = set()
        for number in range(height + 1, node.chain.head.number + 1):
            header = node.service.resolve_tag(number)
            assert header is not None
            slots.add(header.slot)
        assert not slots & {*skipped, stalled[0]}  # a lost slot has no block
        nursery.cancel_scope.cancel()
