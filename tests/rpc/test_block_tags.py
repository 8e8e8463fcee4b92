"""Block tags when the head is ahead of the finalized block.

On a one-validator chain a block is notarized and final at once, so ``latest`` and
``finalized`` coincide and a server answering one for the other would pass every other test.
Here, on a real chain (RocksDB, signed blocks and transfers), block 1 is final and blocks 2
and 3 are notarized and executed but not final, as they are on a multi-validator network
between the two votes (or while finality stalls): each tag must name its own block, the state
and the transactions of the notarized blocks must be visible at ``latest`` and not at
``finalized``, and once a block becomes final (or a notarized fork is abandoned) the answers
must follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from moderntensor._notarized import notarized_path
from moderntensor.chain.chain import Chain, ExecutedBlock
from moderntensor.crypto import checksum_address
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.rpc import RpcApp, RpcConfig
from moderntensor.service import ChainService
from moderntensor.state.store import Database
from tests.factories import ETHER, USERS, VALIDATOR_CONSENSUS, make_genesis, transfer

GENESIS = make_genesis(users=4)
ALICE, BOB = USERS[0], USERS[1]
CAROL = bytes.fromhex("ca" * 20)


class Node:
    """A chain, a pool, a service and the JSON-RPC dispatcher a server would use."""

    def __init__(self, path: Path) -> None:
        self.db = Database.open(path)
        self.chain = Chain(self.db, GENESIS)
        head = self.chain.head
        pool = Mempool(self.chain.params, self.chain.state_at(head), 10**9, MempoolConfig())
        self.service = ChainService(self.chain, pool)
        self.dispatcher = RpcApp(self.service, RpcConfig(port=0)).dispatcher
        self.slot = 0

    def build(self, parent_hash: bytes, txs: list[Any]) -> ExecutedBlock:
        """Build and sign a block on ``parent_hash`` (executed, pending: not committed)."""
        self.slot += 1
        parent = self.chain.get_header(parent_hash)
        assert parent is not None
        return self.chain.build_block(parent, self.slot, VALIDATOR_CONSENSUS, txs)

    def finalize(self, executed: ExecutedBlock) -> None:
        self.chain.commit(executed, finalized=True)
        self.service.on_block_committed(executed)
        self.service.on_finalized(executed.block.header)

    def call(self, method: str, *params: Any) -> Any:
        answer = self.dispatcher.handle_message(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        )
        assert isinstance(answer, dict) and "result" in answer, answer
        return answer["result"]

    def number(self, tag: str) -> int:
        block = self.call("eth_getBlockByNumber", tag, False)
        return int(block["number"], 16)

    def balance(self, who: bytes, tag: str) -> int:
        return int(self.call("eth_getBalance", checksum_address(who), tag), 16)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "db")
    yield n
    n.db.close()


def test_each_tag_names_its_own_block_while_blocks_wait_for_finality(node: Node) -> None:
    genesis = node.chain.head
    b1 = node.build(genesis.hash, [transfer(ALICE, 0, CAROL, 1 * ETHER)])
    node.finalize(b1)
    b2 = node.build(b1.block.hash, [transfer(ALICE, 1, CAROL, 2 * ETHER)])
    pay = transfer(BOB, 0, CAROL, 4 * ETHER)
    b3 = node.build(b2.block.hash, [pay])
    # the core has notarized b3 (and so, by the parent rule, b2): the driver's rule picks them
    notarized = {b2.block.hash: b2.block.header.slot, b3.block.hash: b3.block.header.slot}
    path = notarized_path(notarized, node.chain.get_pending, node.chain.head)
    assert [e.block.hash for e in path] == [b2.block.hash, b3.block.hash]
    node.service.set_notarized(path)

    assert int(node.call("eth_blockNumber"), 16) == 3
    assert node.number("latest") == 3
    assert node.number("pending") == 3
    assert node.number("safe") == 1
    assert node.number("finalized") == 1
    assert node.number("earliest") == 0
    assert node.call("eth_getBlockByNumber", "latest", False)["hash"] == "0x" + b3.block.hash.hex()
    assert node.call("eth_getBlockByNumber", "0x2", False)["hash"] == "0x" + b2.block.hash.hex()
    assert node.call("eth_getBlockByNumber", "0x4", False) is None
    by_hash = node.call("eth_getBlockByHash", "0x" + b2.block.hash.hex(), True)
    assert int(by_hash["number"], 16) == 2 and len(by_hash["transactions"]) == 1

    # state: each tag reads its own block's state
    assert node.balance(CAROL, "earliest") == 0
    assert node.balance(CAROL, "finalized") == 1 * ETHER
    assert node.balance(CAROL, "safe") == 1 * ETHER
    assert node.balance(CAROL, "0x2") == 3 * ETHER
    assert node.balance(CAROL, "latest") == 7 * ETHER
    assert node.balance(CAROL, "pending") == 7 * ETHER
    nonce = node.call("eth_getTransactionCount", checksum_address(BOB.address), "latest")
    assert int(nonce, 16) == 1
    assert node.call("eth_getTransactionCount", checksum_address(BOB.address), "finalized") == "0x0"
    proof = node.call("eth_getProof", checksum_address(CAROL), [], "latest")
    assert int(proof["balance"], 16) == 7 * ETHER

    # a transaction in a notarized block is found there, with its receipt
    tx = node.call("eth_getTransactionByHash", "0x" + pay.hash.hex())
    assert int(tx["blockNumber"], 16) == 3
    receipt = node.call("eth_getTransactionReceipt", "0x" + pay.hash.hex())
    assert receipt["status"] == "0x1" and receipt["blockHash"] == "0x" + b3.block.hash.hex()

    # b2 becomes final: finalized moves, latest stays
    node.finalize(b2)
    assert (node.number("finalized"), node.number("safe"), node.number("latest")) == (2, 2, 3)
    assert node.balance(CAROL, "finalized") == 3 * ETHER
    assert node.balance(CAROL, "latest") == 7 * ETHER

    # b3's slot is nullified too and another block of height 3 is finalized: b3 is gone
    other = node.build(b2.block.hash, [transfer(ALICE, 2, CAROL, 8 * ETHER)])
    node.finalize(other)
    node.service.set_notarized(notarized_path(notarized, node.chain.get_pending, node.chain.head))
    assert node.number("latest") == node.number("finalized") == 3
    assert node.call("eth_getBlockByNumber", "latest", False)["hash"] == (
        "0x" + other.block.hash.hex()
    )
    assert node.balance(CAROL, "latest") == 11 * ETHER
    assert node.call("eth_getTransactionReceipt", "0x" + pay.hash.hex()) is None


def test_the_notarized_tip_is_the_highest_block_whose_path_is_executed(node: Node) -> None:
    genesis = node.chain.head
    b1 = node.build(genesis.hash, [])
    b2 = node.build(b1.block.hash, [])
    fork = node.build(b1.block.hash, [])  # a later slot at height 2, on the same parent
    head = node.chain.head
    slots = {e.block.hash: e.block.header.slot for e in (b1, b2, fork)}
    path = notarized_path(slots, node.chain.get_pending, head)
    # two notarized blocks of height 2: the later slot wins, deterministically
    assert [e.block.hash for e in path] == [b1.block.hash, fork.block.hash]
    # a notarized block whose parent this node has not executed cannot be shown
    lone = {b2.block.hash: b2.block.header.slot}
    assert [e.block.hash for e in notarized_path(lone, node.chain.get_pending, head)] == [
        b1.block.hash,
        b2.block.hash,
    ]
    missing = {b2.block.hash: 2}
    assert notarized_path(missing, lambda h: b2 if h == b2.block.hash else None, head) == []
    # nothing notarized above the committed head: latest is the committed head
    node.service.set_notarized([])
    assert node.number("latest") == node.number("finalized") == 0


async def test_new_heads_announces_blocks_as_they_become_final(node: Node) -> None:
    heads = node.service.subscribe_heads()
    b1 = node.build(node.chain.head.hash, [])
    node.service.set_notarized([b1])
    with pytest.raises(trio.WouldBlock):
        heads.receive_nowait()  # notarized: latest, but not announced
    assert node.number("latest") == 1
    node.finalize(b1)
    assert heads.receive_nowait().hash == b1.block.hash
    b2 = node.build(b1.block.hash, [])
    node.finalize(b2)
    assert heads.receive_nowait().number == 2
