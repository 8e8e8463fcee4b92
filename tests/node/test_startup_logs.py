"""What a starting node tells its operator: a validator key outside the validator set is
warned about once, the RPC URL of an IPv6 address is bracketed, and a node started before
genesis counts down (in-process nodes, real RocksDB and sockets)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import trio

from moderntensor.crypto import PrivateKey
from moderntensor.node._preflight import format_http_url
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.rpc import RpcConfig


async def start_and_stop(settings: NodeSettings, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Start a node, stop it once it serves; return the messages it logged."""
    logging.getLogger("moderntensor").propagate = True
    with caplog.at_level(logging.INFO, logger="moderntensor"), trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            node.cancel_scope.cancel()
    return [r.getMessage() for r in caplog.records]


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_validator_key_not_in_the_set_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, _ = dev_genesis(int(time.time()))
    stranger = PrivateKey.generate()
    await start_and_stop(NodeSettings(tmp_path / "a", genesis, stranger, rpc=None), caplog)
    (warning,) = warnings_in(caplog)
    assert warning.getMessage().startswith("validator key is not in the validator set")
    assert warning.fields["validator"] == "0x" + stranger.address.hex()  # type: ignore[attr-defined]


async def test_the_genesis_validator_gets_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, keys = dev_genesis(int(time.time()))
    settings = NodeSettings(tmp_path / "a", genesis, keys.validator.consensus, rpc=None)
    await start_and_stop(settings, caplog)
    assert warnings_in(caplog) == []


async def test_an_ipv6_rpc_url_is_bracketed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, _ = dev_genesis(int(time.time()))
    settings = NodeSettings(tmp_path / "a", genesis, None, RpcConfig(addr="::1", port=0))
    await start_and_stop(settings, caplog)
    (line,) = [r for r in caplog.records if r.getMessage() == "rpc listening"]
    port = line.fields["port"]  # type: ignore[attr-defined]
    assert line.fields["url"] == f"http://[::1]:{port}"  # type: ignore[attr-defined]
    assert format_http_url("127.0.0.1", 8545) == "http://127.0.0.1:8545"


async def test_a_node_started_before_genesis_counts_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, keys = dev_genesis(int(time.time()) + 30)
    settings = NodeSettings(tmp_path / "a", genesis, keys.validator.consensus, rpc=None)
    messages = await start_and_stop(settings, caplog)
    (line,) = [r for r in caplog.records if r.getMessage() == "waiting for genesis"]
    assert 28 <= line.fields["in_s"] <= 30  # type: ignore[attr-defined]
    assert messages.index("node starting") < messages.index("waiting for genesis")
