"""Four validator nodes in one Trio process, each a whole node (``open_node``: its own
RocksDB, driver, producer, fetcher) joined by REAL trio-websocket connections on 127.0.0.1:
they find each other from bootstrap addresses, learn each other's status (none holds a
quorum alone, so none signs before a peer's status arrived), finalize the same blocks, and a
transfer sent to one node is finalized and visible at all four.

Real clock (0.5 s slots), so the test is bounded by ``fail_after`` and polls with short
sleeps; nothing here waits on a fixed delay.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from moderntensor.chain.genesis import parse_genesis
from moderntensor.network import Multiaddr, make_multiaddr
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from tests.factories import USERS, genesis_doc, transfer
from tests.network.helpers import NODE_KEYS
from tests.node.cluster import VALIDATOR_KEYS

pytestmark = pytest.mark.slow

HEIGHT = 6  # blocks every node must finalize (epoch length 4: crosses an epoch boundary)


async def poll(done: object, timeout_s: float, what: str) -> None:
    """Wait until ``done()`` holds, checking every 50 ms; fail after ``timeout_s``."""
    deadline = trio.current_time() + timeout_s
    while not done():  # type: ignore[operator]
        assert trio.current_time() < deadline, f"timed out waiting for {what}"
        await trio.sleep(0.05)


async def test_four_validators_over_websockets_finalize_the_same_blocks_and_a_transfer(
    tmp_path: Path,
) -> None:
    doc = genesis_doc(extra_validators=3, epoch_length=4)
    doc["genesis_time"] = int(time.time())
    doc["consensus"]["slot_duration"] = 0.5
    genesis = parse_genesis(doc)
    handles: list[NodeHandle] = []
    addrs: list[Multiaddr] = []
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            for i, key in enumerate(VALIDATOR_KEYS):
                p2p = network_config(genesis, listen_addr="127.0.0.1", port=0, bootstrap=addrs)
                settings = NodeSettings(
                    tmp_path / f"node{i}", genesis, key, rpc=None, p2p=p2p,
                    node_key=NODE_KEYS[i],
                )  # fmt: skip
                handle: NodeHandle = await nursery.start(open_node, settings)
                assert handle.p2p_port
                handles.append(handle)
                addrs = [
                    *addrs,
                    make_multiaddr("127.0.0.1", handle.p2p_port,
                                   NODE_KEYS[i].public_key_bytes.hex()),
                ]  # fmt: skip

            def peers() -> list[int]:
                return [len(h.network.peers) if h.network else 0 for h in handles]

            await poll(lambda: peers() == [3, 3, 3, 3], 30, "a full mesh")
            for h in handles:
                assert h.service.peer_count() == 3

            def heights() -> list[int]:
                return [h.chain.head.number for h in handles]

            await poll(lambda: min(heights()) >= HEIGHT, 90, f"height {HEIGHT} everywhere")
            top = min(heights())
            for number in range(1, top + 1):
                hashes = {h.chain.chaindb.get_canonical_hash(number) for h in handles}
                assert len(hashes) == 1, f"nodes disagree at height {number}"
            assert all(h.driver.core.synced for h in handles)

            # a transfer sent to node 2 only reaches the others by gossip (or its block)
            sender, recipient = USERS[0], USERS[5].address
            tx = transfer(sender, 0, recipient, 12345, chain_id=genesis.chain_id)
            handles[2].service.submit_transaction(tx)

            def everywhere() -> bool:
                return all(h.chain.chaindb.get_tx_location(tx.hash) for h in handles)

            await poll(everywhere, 60, "the transfer finalized at every node")
            locations = {h.chain.chaindb.get_tx_location(tx.hash) for h in handles}
            assert len(locations) == 1
            (block_hash, _index), *_ = locations
            for h in handles:
                assert h.chain.state_at(h.chain.head).get_balance(recipient) == 12345
                header = h.chain.get_header(block_hash)  # committed blocks are final ones
                assert header is not None
                assert h.chain.chaindb.get_canonical_hash(header.number) == block_hash
            nursery.cancel_scope.cancel()
