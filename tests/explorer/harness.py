"""A dev node that serves the explorer, and blocking clients for it (http.client, eth-account).

:class:`ExplorerNode` is tests/rpc/devnode.py's :class:`DevNode` (the node's supervisor in a
background thread's ``trio.run``: real RocksDB, real consensus, RPC on 127.0.0.1) started with
``NodeSettings.explorer`` set, so the explorer is the node's own nursery task, as with
``[explorer] enabled = true``.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from eth_account import Account

from moderntensor.explorer import ExplorerConfig
from moderntensor.mempool import MempoolConfig
from moderntensor.node._supervisor import NodeSettings, open_node
from tests.rpc.devnode import CHAIN_ID, VALIDATOR_KEY, DevNode

GWEI = 10**9


class ExplorerNode(DevNode):
    def __init__(self, data_dir: Path, explorer: ExplorerConfig | None = None, **kw: Any) -> None:
        super().__init__(data_dir, **kw)
        self.explorer_config = explorer or ExplorerConfig(port=0)
        self.explorer_port = 0

    @property
    def explorer_url(self) -> str:
        return f"http://127.0.0.1:{self.explorer_port}"

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        settings = NodeSettings(
            self.data_dir,
            self.genesis,
            VALIDATOR_KEY if self.seal else None,
            self.rpc_config,
            self.pool_config or MempoolConfig(),
            explorer=self.explorer_config,
        )
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with trio.open_nursery() as nursery:
                self.node = await nursery.start(open_node, settings)
                self.port = self.node.rpc_port or 0
                self.explorer_port = self.node.explorer_port or 0
                self._ready.set()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: status, lower-case headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def rpc(port: int, method: str, params: list[Any] | None = None) -> Any:
    """A JSON-RPC call through the explorer's ``POST /rpc``: the whole answer (result or
    error)."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    status, _, data = request(port, "POST", "/rpc", body, {"content-type": "application/json"})
    assert status == 200, data
    return orjson.loads(data)


def node_rpc(url: str, method: str, params: list[Any]) -> Any:
    port = int(url.rsplit(":", 1)[1])
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    status, _, data = request(port, "POST", "/", body, {"content-type": "application/json"})
    doc = orjson.loads(data)
    assert status == 200 and "result" in doc, doc
    return doc["result"]


def signed_transfer(
    key: Any, url: str, to: str, value: int, nonce_offset: int = 0
) -> tuple[str, str]:
    """A type-2 transfer signed with eth-account at the sender's pending nonce (plus
    ``nonce_offset``: a gap keeps it queued in the pool): (raw, hash)."""
    sender = Account.from_key(key.secret)
    pending = int(node_rpc(url, "eth_getTransactionCount", [sender.address, "pending"]), 16)
    nonce = pending + nonce_offset
    signed = sender.sign_transaction(
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": 21_000,
            "maxPriorityFeePerGas": GWEI,
            "maxFeePerGas": 10 * GWEI,
        }
    )
    return "0x" + signed.raw_transaction.hex(), "0x" + signed.hash.hex()


def send_transfer(key: Any, url: str, to: str, value: int) -> str:
    """Sign and send through the node's RPC port; the tx hash."""
    raw, tx_hash = signed_transfer(key, url, to, value)
    assert node_rpc(url, "eth_sendRawTransaction", [raw]) == tx_hash
    return tx_hash


def wait_final(url: str, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    """The receipt once its block is finalized (polls, bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = node_rpc(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            final = node_rpc(url, "eth_getBlockByNumber", ["finalized", False])
            if int(final["number"], 16) >= int(receipt["blockNumber"], 16):
                return dict(receipt)
        time.sleep(0.1)
    raise AssertionError(f"{tx_hash} not final within {timeout} s")
