"""Four validator nodes in one Trio process, each a whole node (``open_node``: its own
RocksDB, driver, producer, fetcher) joined by REAL trio-websocket connections on 127.0.0.1:
they find each other from bootstrap addresses, learn each other's status (none holds a
quorum alone, so none signs before a peer's status arrived), finalize the same blocks, and a
transfer sent to one node is finalized and visible at all four.

A second test stops one validator, lets the other three (a quorum) go on, and starts it
again on the same data directory: it reconnects, gets the status and its own votes back from
its peers, fetches the blocks it missed, and follows the chain again (within one epoch: a
node further behind syncs by range, tests/network/test_range_sync.py).

Real clock (0.5 s slots), so the tests are bounded by ``fail_after`` and poll with short
sleeps; nothing here waits on a fixed delay.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from moderntensor.chain.genesis import Genesis, parse_genesis
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


def four_validator_genesis(epoch_length: int = 4) -> Genesis:
    doc = genesis_doc(extra_validators=3, epoch_length=epoch_length)
    doc["genesis_time"] = int(time.time())
    doc["consensus"]["slot_duration"] = 0.5
    return parse_genesis(doc)


async def start_node(
    nursery: trio.Nursery, root: Path, genesis: Genesis, i: int, bootstrap: list[Multiaddr]
) -> tuple[NodeHandle, Multiaddr]:
    """Validator ``i`` (data in ``root/node<i>``) listening on a free port of 127.0.0.1."""
    p2p = network_config(genesis, listen_addr="127.0.0.1", port=0, bootstrap=bootstrap)
    settings = NodeSettings(root / f"node{i}", genesis, VALIDATOR_KEYS[i], rpc=None, p2p=p2p,
                            node_key=NODE_KEYS[i])  # fmt: skip
    handle: NodeHandle = await nursery.start(run_node, settings)
    assert handle.p2p_port
    addr = make_multiaddr("127.0.0.1", handle.p2p_port, NODE_KEYS[i].public_key_bytes.hex())
    return handle, addr


STOPPED: dict[int, trio.Event] = {}
"""Set when a node's task has ended (its database is closed), by its handle's id."""


async def run_node(
    settings: NodeSettings, *, task_status: trio.TaskStatus[NodeHandle] = trio.TASK_STATUS_IGNORED
) -> None:
    stopped = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[NodeHandle]) -> None:
        await open_node(settings, task_status=task_status)

    try:
        async with trio.open_nursery() as nursery:
            handle: NodeHandle = await nursery.start(serve)
            STOPPED[id(handle)] = stopped
            task_status.started(handle)
    finally:
        stopped.set()


async def start_four(nursery: trio.Nursery, root: Path, genesis: Genesis) -> list[NodeHandle]:
    """Four validators, each dialing the ones started before it; returns once all four are
    connected to each other."""
    handles: list[NodeHandle] = []
    addrs: list[Multiaddr] = []
    for i in range(4):
        handle, addr = await start_node(nursery, root, genesis, i, list(addrs))
        handles.append(handle)
        addrs.append(addr)

    def peers() -> list[int]:
        return [len(h.network.peers) if h.network else 0 for h in handles]

    await poll(lambda: peers() == [3, 3, 3, 3], 30, "a full mesh")
    return handles


def assert_same_chain(handles: list[NodeHandle]) -> int:
    """Every node has the same canonical block at every height they all have; returns it."""
    top = min(h.chain.head.number for h in handles)
    for number in range(1, top + 1):
        hashes = {h.chain.chaindb.get_canonical_hash(number) for h in handles}
        assert len(hashes) == 1, f"nodes disagree at height {number}"
    return top


async def test_four_validators_over_websockets_finalize_the_same_blocks_and_a_transfer(
    tmp_path: Path,
) -> None:
    genesis = four_validator_genesis()
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            handles = await start_four(nursery, tmp_path, genesis)
            for h in handles:
                assert h.service.peer_count() == 3

            def heights() -> list[int]:
                return [h.chain.head.number for h in handles]

            await poll(lambda: min(heights()) >= HEIGHT, 90, f"height {HEIGHT} everywhere")
            assert assert_same_chain(handles) >= HEIGHT
            assert all(h.driver.core.synced for h in handles)

            # a transfer sent to node 2 only reaches the others by gossip (or its block)
            sender, recipient = USERS[0], USERS[5].address
            tx = transfer(sender, 0, recipient, 12345, chain_id=genesis.chain_id)
            handles[2].service.submit_transaction(tx)

            def committed_at(h: NodeHandle) -> bool:
                # The commit runs in the chain's worker thread: the transaction's index is in
                # the database a moment before ``chain.head`` moves to its block.
                location = h.chain.chaindb.get_tx_location(tx.hash)
                header = h.chain.chaindb.get_header(location[0]) if location else None
                return header is not None and h.chain.head.number >= header.number

            def everywhere() -> bool:
                return all(committed_at(h) for h in handles)

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


async def test_a_validator_stopped_and_started_again_catches_up_and_follows(
    tmp_path: Path,
) -> None:
    # Within one epoch: a node more than an epoch behind cannot verify the certificates of
    # the epochs it missed without their validator sets, which range sync will bring.
    genesis = four_validator_genesis(epoch_length=64)
    with trio.fail_after(200):
        async with trio.open_nursery() as nursery:
            handles = await start_four(nursery, tmp_path, genesis)
            await poll(lambda: min(h.chain.head.number for h in handles) >= 3, 90, "height 3")
            stopped = handles[3]
            stopped.cancel_scope.cancel()
            await STOPPED[id(stopped)].wait()  # its task ended: its database is closed
            others = handles[:3]
            down_at = stopped.chain.head.number
            await poll(lambda: min(h.chain.head.number for h in others) >= down_at + 4, 90,
                       "three validators finalizing without the fourth")  # fmt: skip
            peers = [a for h in others if h.network and h.p2p_port
                     for a in [make_multiaddr("127.0.0.1", h.p2p_port,
                                              h.network.identity.peer_id)]]  # fmt: skip
            again, _ = await start_node(nursery, tmp_path, genesis, 3, peers)
            assert again.chain.head.number == down_at  # resumed from its own database
            target = max(h.chain.head.number for h in others) + 3
            await poll(lambda: again.chain.head.number >= target, 90, "the restarted one following")
            assert again.driver.core.synced
            assert_same_chain([*others, again])
            nursery.cancel_scope.cancel()
