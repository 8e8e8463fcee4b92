"""The supervisor: a failing component stops the node with its reason and exit code 1."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from moderntensor.node._supervisor import NodeSettings, run_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.rpc import RpcConfig
from moderntensor.state.store import Database


async def test_rpc_port_in_use_stops_the_node_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = NodeSettings(
            tmp_path / "data", genesis, keys.validator.consensus, RpcConfig(port=port)
        )
        logging.getLogger("moderntensor").propagate = True
        with caplog.at_level(logging.ERROR, logger="moderntensor"):
            assert await run_node(settings) == 1
    (record,) = [r for r in caplog.records if r.getMessage().startswith("node stopped")]
    assert "OSError" in record.getMessage() and "in use" in record.getMessage()
    with Database.open(tmp_path / "data" / "chaindb"):
        pass  # closed on the way out: the lock is free
