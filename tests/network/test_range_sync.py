"""Range sync over real websockets: four validators (epoch length 4, 0.5 s slots) run for
more than five epochs, then a fifth node that does not validate starts on an empty data
directory. It is more than two epochs behind, so it syncs by range: every block it lacks,
each proven final by a certificate checked against the set of its epoch (sets added as the
synced head crosses boundaries), re-executed and committed; it ends with the same blocks as
the others, and then follows new blocks through the ordinary path."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from moderntensor.network import make_multiaddr
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings
from tests.network.helpers import NODE_KEYS
from tests.network.test_four_validators import (
    assert_same_chain,
    four_validator_genesis,
    poll,
    run_node,
    start_four,
)

pytestmark = pytest.mark.slow

EPOCH = 4
EPOCHS = 6


async def test_a_late_node_syncs_by_range_across_epochs_then_follows(tmp_path: Path) -> None:
    genesis = four_validator_genesis(epoch_length=EPOCH)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            handles = await start_four(nursery, tmp_path, genesis)

            def low() -> int:
                return min(h.chain.head.number for h in handles)

            await poll(lambda: low() >= EPOCHS * EPOCH, 150, f"{EPOCHS} epochs finalized")
            peers = [make_multiaddr("127.0.0.1", h.p2p_port, h.network.identity.peer_id)
                     for h in handles if h.network and h.p2p_port]  # fmt: skip
            p2p = network_config(genesis, listen_addr="127.0.0.1", port=0, bootstrap=peers)
            settings = NodeSettings(tmp_path / "late", genesis, None, rpc=None, p2p=p2p,
                                    node_key=NODE_KEYS[4])  # fmt: skip
            late: NodeHandle = await nursery.start(run_node, settings)
            assert late.chain.head.number == 0
            behind = low()
            await poll(lambda: late.chain.head.number >= behind, 60, "the late node synced")
            assert late.range_sync is not None
            assert late.range_sync.synced_blocks >= behind - 2 * EPOCH  # by range, not fetch
            assert late.range_sync.refused == 0
            assert len(late.range_sync.peers_used) >= 2  # downloaded from several peers
            await poll(lambda: late.service.sync_progress is None, 30, "sync done: ready again")
            assert late.driver.core.epoch >= behind // EPOCH - 1  # entered each epoch
            target = max(h.chain.head.number for h in handles) + 3
            await poll(lambda: late.chain.head.number >= target, 60, "the late node following")
            assert assert_same_chain([*handles, late]) >= target
            nursery.cancel_scope.cancel()
