"""The explorer served by a live dev node: pages, read-only JSON-RPC over HTTP and WebSocket,
the account index, ``mt_slots``, and what a client cannot make it do or hold.

Real parts: the node's supervisor with ``[explorer]`` set (RocksDB, consensus, RPC on
127.0.0.1), real HTTP and WebSocket connections, transactions signed with eth-account.
"""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from eth_account import Account
from trio_websocket import open_websocket_url

from moderntensor.explorer import READ_ONLY, ExplorerConfig
from moderntensor.node._preflight import StartupError
from moderntensor.node._supervisor import NodeSettings, open_node
from moderntensor.rpc import RpcConfig
from tests.explorer.harness import (
    ExplorerNode,
    node_rpc,
    request,
    rpc,
    send_transfer,
    signed_transfer,
    wait_final,
)
from tests.rpc.devnode import DEV_KEYS, VALIDATOR_KEY, dev_genesis

JSON = {"content-type": "application/json"}


def test_pages_are_served_with_cache_headers(node: ExplorerNode) -> None:
    status, headers, body = request(node.explorer_port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="/static/explorer.js"' in body
    assert (
        headers["cache-control"] == "no-cache"
        and "default-src 'self'" in headers["content-security-policy"]
    )
    etag = headers["etag"]
    status, headers, body = request(node.explorer_port, "GET", "/", headers={"if-none-match": etag})
    assert (status, body) == (304, b"")
    for name, kind in (("explorer.js", "text/javascript"), ("explorer.css", "text/css")):
        status, headers, body = request(node.explorer_port, "GET", f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind) and body
        assert headers["cache-control"] == "public, max-age=300" and headers["etag"]
    status, headers, body = request(node.explorer_port, "HEAD", "/static/pages.js")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000


def test_bad_paths_methods_and_bodies_get_clear_4xx(node: ExplorerNode) -> None:
    port = node.explorer_port
    status, _, body = request(port, "GET", "/static/../../etc/passwd")
    assert status == 404 and b"not found" in body
    assert request(port, "GET", "/nope")[0] == 404
    assert request(port, "GET", "/rpc")[0] == 405
    assert request(port, "DELETE", "/")[0] == 405
    status, _, body = request(
        port, "POST", "/rpc", b'{"jsonrpc":"2.0"}', {"content-type": "text/plain"}
    )
    assert status == 415 and b"application/json" in body
    huge = (
        b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":["' + b"a" * 100_000 + b'"]}'
    )
    status, _, body = request(port, "POST", "/rpc", huge, JSON)
    assert status == 413 and b"explorer.max_body_bytes" in body
    status, _, body = request(port, "GET", "/api/account/0x1234")
    assert status == 400 and b"40 hex digits" in body
    assert request(port, "GET", "/ws")[0] == 426
    status, _, body = request(port, "POST", "/rpc", b"{not json", JSON)
    assert status == 200 and orjson.loads(body)["error"]["code"] == -32700


def test_rpc_answers_reads_like_the_node(node: ExplorerNode) -> None:
    port = node.explorer_port
    assert rpc(port, "eth_chainId")["result"] == node_rpc(node.url, "eth_chainId", [])
    head = int(rpc(port, "eth_blockNumber")["result"], 16)
    assert head >= 1
    block = rpc(port, "eth_getBlockByNumber", [hex(head), False])["result"]
    assert block == node_rpc(node.url, "eth_getBlockByNumber", [hex(head), False])
    validators = rpc(port, "mt_validators")["result"]
    assert validators == node_rpc(node.url, "mt_validators", [])
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": m} for i, m in ((1, "net_version"), (2, "mt_epoch"))
    ]
    status, _, body = request(port, "POST", "/rpc", orjson.dumps(batch), JSON)
    answers = orjson.loads(body)
    assert status == 200 and [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"] == "1337" and answers[1]["result"]["slotDurationMs"] == 200


def test_writes_are_refused_and_never_reach_the_pool(node: ExplorerNode) -> None:
    port = node.explorer_port
    to = Account.create().address
    raw, tx_hash = signed_transfer(DEV_KEYS[7], node.url, to, 1)
    answer = rpc(port, "eth_sendRawTransaction", [raw])
    assert answer["error"]["code"] == -32601
    assert "read-only" in answer["error"]["message"]
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber"},
    ]
    answers = orjson.loads(request(port, "POST", "/rpc", orjson.dumps(batch), JSON)[2])
    assert answers[0]["error"]["code"] == -32601 and "result" in answers[1]
    for method in ("eth_getProof", "eth_call", "admin_addPeer", "debug_traceTransaction"):
        assert rpc(port, method, [])["error"]["code"] == -32601
    assert node_rpc(node.url, "eth_getTransactionByHash", [tx_hash]) is None  # not pooled
    assert node.call(lambda: node.service.pool.get(bytes.fromhex(tx_hash[2:]))) is None
    assert "eth_sendRawTransaction" not in READ_ONLY


async def _ws_request(ws: Any, request_id: int, method: str, params: list[Any]) -> Any:
    await ws.send_message(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                                        "params": params}).decode())  # fmt: skip
    with trio.fail_after(10):
        while True:
            message = orjson.loads(await ws.get_message())
            if message.get("id") == request_id:
                return message


async def test_websocket_new_heads_and_refused_writes(node: ExplorerNode) -> None:
    url = f"ws://127.0.0.1:{node.explorer_port}/ws"
    raw, _ = await trio.to_thread.run_sync(
        signed_transfer, DEV_KEYS[8], node.url, Account.create().address, 1
    )
    async with open_websocket_url(url) as ws:
        sub_id = (await _ws_request(ws, 1, "eth_subscribe", ["newHeads"]))["result"]
        heads = []
        with trio.fail_after(15):
            while len(heads) < 3:
                message = orjson.loads(await ws.get_message())
                if message.get("method") == "eth_subscription":
                    assert message["params"]["subscription"] == sub_id
                    heads.append(message["params"]["result"])
        numbers = [int(h["number"], 16) for h in heads]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        for parent, child in itertools.pairwise(heads):
            assert child["parentHash"] == parent["hash"]
        refused = await _ws_request(ws, 2, "eth_sendRawTransaction", [raw])
        assert refused["error"]["code"] == -32601
        assert (await _ws_request(ws, 3, "eth_unsubscribe", [sub_id]))["result"] is True


def test_account_history_lists_real_transfers(node: ExplorerNode) -> None:
    port = node.explorer_port
    to = Account.create().address
    sender = Account.from_key(DEV_KEYS[6].secret).address
    hashes = [send_transfer(DEV_KEYS[6], node.url, to, value) for value in (10**15, 2 * 10**15)]
    receipts = [wait_final(node.url, h) for h in hashes]
    doc: dict[str, Any] = {}
    for _ in range(50):  # the index catches up within a sync interval (0.5 s)
        status, _, body = request(port, "GET", f"/api/account/{to}")
        doc = orjson.loads(body)
        if len(doc["transactions"]) == 2:
            break
        time.sleep(0.1)
    assert status == 200 and doc["address"] == to
    listed = doc["transactions"]
    assert [t["hash"] for t in listed] == hashes[::-1]  # newest first
    assert [int(t["value"], 16) for t in listed] == [2 * 10**15, 10**15]
    assert {t["from"] for t in listed} == {sender} and {t["to"] for t in listed} == {to}
    assert [t["blockNumber"] for t in listed] == [int(r["blockNumber"], 16) for r in receipts[::-1]]
    assert doc["index"]["fromBlock"] == 1 and doc["index"]["toBlock"] >= listed[0]["blockNumber"]
    from_sender = orjson.loads(request(port, "GET", f"/api/account/{sender}")[2])
    assert {t["hash"] for t in from_sender["transactions"]} >= set(hashes)
    recent = orjson.loads(request(port, "GET", "/api/transactions")[2])["transactions"]
    assert hashes[1] in [t["hash"] for t in recent]


def test_mt_slots_names_each_slot_leader_and_block(node: ExplorerNode) -> None:
    port = node.explorer_port
    validator = node_rpc(node.url, "mt_validators", [])[0]
    for _ in range(100):  # slot 9 at least, so 8 slots after genesis exist (bounded wait)
        if int(node_rpc(node.url, "eth_blockNumber", []), 16) >= 9:
            break
        time.sleep(0.1)
    slots = rpc(port, "mt_slots", ["0x8"])["result"]
    assert len(slots) == 8
    assert [s["slot"] for s in slots] == list(range(slots[0]["slot"], slots[0]["slot"] - 8, -1))
    for s in slots:  # one validator: it leads every slot, and fills each (no timeouts here)
        assert s["leader"] == validator["validatorId"]
        if s["blockNumber"] is not None:
            block = node_rpc(node.url, "eth_getBlockByNumber", [s["blockNumber"], False])
            assert block["hash"] == s["blockHash"] and s["proposer"] == s["leader"]
    one = rpc(port, "mt_slots", ["0x1", "0x2"])["result"]
    block2 = node_rpc(node.url, "eth_getBlockByNumber", ["0x2", False])
    assert len(one) == 1 and one[0]["blockHash"] == block2["hash"]
    capped = rpc(port, "mt_slots", ["0x100000"])["result"]
    assert len(capped) <= 1024


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def test_explorer_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A port taken after the preflight check stops the node with the operator's one-line
    error (``StartupError``: the CLI prints ``error: ...`` and exits 2)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = NodeSettings(
            tmp_path, dev_genesis(int(time.time())), VALIDATOR_KEY, RpcConfig(port=0),
            explorer=ExplorerConfig(port=port),
        )  # fmt: skip
        errors: list[BaseException] = []
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(open_node, settings)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            errors = _leaves(group)
        assert len(errors) == 1 and isinstance(errors[0], StartupError)
        assert str(errors[0]) == (
            f"explorer port {port} on 127.0.0.1: address already in use "
            "(another process listens there)"
        )


def test_the_explorer_answers_with_the_rpc_port_disabled(tmp_path: Path) -> None:
    """``[rpc] enabled = false`` with ``[explorer]``: the explorer still answers, with the
    node's handlers (the node builds them without serving its RPC port)."""
    dev = ExplorerNode(tmp_path)
    dev.rpc_config = None  # type: ignore[assignment]
    with dev:
        assert dev.node is not None and dev.node.rpc_port is None
        assert rpc(dev.explorer_port, "eth_chainId")["result"] == "0x539"
        assert rpc(dev.explorer_port, "mt_validators")["result"][0]["status"] == "active"
