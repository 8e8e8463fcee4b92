"""The supervisor: a failing component stops the node with its reason and exit code 1; an
operator's mistake found at start is one line (StartupError, exit 2 in main)."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
import trio

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import build_genesis
from moderntensor.node._preflight import StartupError
from moderntensor.node._producer import BlockBuilt, BlockProducer, BuildRequest
from moderntensor.node._supervisor import NodeSettings, run_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.rpc import RpcConfig
from moderntensor.state.store import Database


async def test_rpc_port_in_use_stops_the_node_with_one_line(tmp_path: Path) -> None:
    """A port taken after the start-up checks (a race) is still an operator's mistake: one
    line naming the port, raised for main to print (exit 2), and the database is closed."""
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = NodeSettings(
            tmp_path / "data", genesis, keys.validator.consensus, RpcConfig(port=port)
        )
        with pytest.raises(StartupError) as info:
            await run_node(settings)
    assert str(info.value) == (
        f"rpc port {port} on 127.0.0.1: address already in use (another process listens there)"
    )
    with Database.open(tmp_path / "data" / "chaindb"):
        pass  # closed on the way out: the lock is free


async def test_a_component_failing_mid_run_stops_the_node_with_exit_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer raises at its fifth block: the node stops (no hang) with the reason
    logged and exit code 1, the database is closed, and what it committed is whole."""
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    real_build = BlockProducer.build
    ours = build_genesis(genesis)[0].hash
    builds = 0

    async def failing_build(self: BlockProducer, request: BuildRequest) -> BlockBuilt:
        nonlocal builds
        if self.chain.genesis_hash != ours:  # another test's node running in a thread
            return await real_build(self, request)
        builds += 1
        if builds == 5:
            raise RuntimeError("disk on fire")
        return await real_build(self, request)

    monkeypatch.setattr(BlockProducer, "build", failing_build)
    settings = NodeSettings(tmp_path / "data", genesis, keys.validator.consensus, rpc=None)
    logging.getLogger("moderntensor").propagate = True
    with caplog.at_level(logging.ERROR, logger="moderntensor"), trio.fail_after(30):
        assert await run_node(settings) == 1
    (record,) = [r for r in caplog.records if r.getMessage().startswith("node stopped")]
    assert "RuntimeError: disk on fire" in record.getMessage()
    with Database.open(tmp_path / "data" / "chaindb") as db, Database.open(tmp_path / "r") as fresh:
        stored, replay = Chain(db, genesis), Chain(fresh, genesis)
        assert stored.head.number >= 1, "no block committed"
        for number in range(1, stored.head.number + 1):
            block_hash = stored.chaindb.get_canonical_hash(number)
            assert block_hash is not None
            block = stored.chaindb.get_block(block_hash)
            assert block is not None
            assert replay.import_block(block).state.root == block.header.state_root
        assert stored.state_at(stored.head).root == stored.head.state_root
