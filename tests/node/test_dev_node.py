"""The dev node in-process: real RocksDB, real clock, 0.2 s slots, real consensus core.

It must finalize at least 10 blocks that contain transfers submitted to it, with exact
balances, and shut down cleanly when its scope is cancelled.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.state.store import Database

GWEI = 10**9
ROUNDS = 40  # one nonce per sender per round, about one round per slot


async def test_dev_node_finalizes_blocks_with_submitted_transfers(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(tmp_path / "data", genesis, keys.validator.consensus, rpc=None)
    senders = keys.accounts[:4]
    recipient = keys.accounts[9].address
    submitted: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            before = node.chain.state_at(node.chain.head).get_balance(recipient)
            nonce = 0
            blocks_with_transfers: set[int] = set()
            for _round in range(200):  # bounded: ~0.15 s per round
                if len(blocks_with_transfers) >= 10:
                    break
                if nonce < ROUNDS:
                    for sender in senders:
                        tx = sign_transaction(
                            DynamicFeeTransaction(
                                chain_id=genesis.chain_id, nonce=nonce,
                                max_priority_fee_per_gas=GWEI, max_fee_per_gas=20 * GWEI,
                                gas=21_000, to=recipient, value=10**15 + nonce,
                            ),
                            sender,
                        )  # fmt: skip
                        node.service.submit_transaction(tx)
                        submitted.append(tx.hash)
                    nonce += 1
                await trio.sleep(0.15)
                blocks_with_transfers = {
                    loc[0]
                    for h in submitted
                    if (loc := node.chain.chaindb.get_tx_location(h)) is not None
                }  # type: ignore[misc]
            assert len(blocks_with_transfers) >= 10
            # Every submitted transfer is final once the pool drains.
            for _ in range(300):  # bounded (30 s): a loaded CI machine builds slower
                locations = [node.chain.chaindb.get_tx_location(h) for h in submitted]
                # the index is written (in the chain's worker thread) just before the head moves
                if all(locations) and node.service.finalized == node.chain.head:
                    tops = [node.chain.chaindb.get_header(loc[0]) for loc in locations if loc]
                    if all(t and t.number <= node.chain.head.number for t in tops):
                        break
                await trio.sleep(0.1)
            head = node.chain.head
            assert node.service.finalized == head
            state = node.chain.state_at(head)
            expected = sum(10**15 + n for n in range(nonce)) * len(senders)
            assert state.get_balance(recipient) == before + expected
            for sender in senders:
                assert state.get_nonce(sender.address) == nonce
            for h in submitted:
                block_hash, index = node.chain.chaindb.get_tx_location(h)  # type: ignore[misc]
                assert node.chain.chaindb.get_receipts(block_hash)[index].status == 1
            node.cancel_scope.cancel()
    # The database was closed on the way out: it opens again (RocksDB holds a lock while open).
    with Database.open(tmp_path / "data" / "chaindb") as db:
        assert db.get_node(head.state_root) is not None
