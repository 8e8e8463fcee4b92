"""JSON-RPC over WebSocket on the same port: calls, newHeads and newPendingTransactions."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import trio
from eth_account import Account
from trio_websocket import open_websocket_url

from tests.rpc.devnode import CHAIN_ID, DEV_KEYS, DevNode
from tests.rpc.schema import check_result

GWEI = 10**9


async def _request(ws: Any, request_id: int, method: str, params: list[Any]) -> Any:
    await ws.send_message(
        orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        ).decode()
    )
    with trio.fail_after(10):
        while True:
            message = orjson.loads(await ws.get_message())
            if message.get("id") == request_id:
                return message


async def _notification(ws: Any, sub_id: str) -> Any:
    with trio.fail_after(10):
        while True:
            message = orjson.loads(await ws.get_message())
            if message.get("method") == "eth_subscription":
                assert message["params"]["subscription"] == sub_id
                return message["params"]["result"]


async def test_calls_and_new_heads_are_consecutive(node: DevNode) -> None:
    async with open_websocket_url(node.ws_url) as ws:
        answer = await _request(ws, 1, "eth_chainId", [])
        assert answer == {"jsonrpc": "2.0", "id": 1, "result": hex(CHAIN_ID)}
        batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"} for i in (7, 8)]
        await ws.send_message(orjson.dumps(batch).decode())
        replies = orjson.loads(await ws.get_message())
        assert [r["id"] for r in replies] == [7, 8]
        sub = await _request(ws, 2, "eth_subscribe", ["newHeads"])
        sub_id = sub["result"]
        heads = [await _notification(ws, sub_id) for _ in range(4)]
        numbers = [int(h["number"], 16) for h in heads]
        assert numbers == list(range(numbers[0], numbers[0] + 4))
        for parent, child in itertools.pairwise(heads):
            assert child["parentHash"] == parent["hash"]
        for head in heads:
            check_result("eth_blockNumber", head["number"])
            assert int(head["baseFeePerGas"], 16) > 0
        block = await _request(ws, 3, "eth_getBlockByNumber", [heads[-1]["number"], False])
        assert block["result"]["hash"] == heads[-1]["hash"]
        assert (await _request(ws, 4, "eth_unsubscribe", [sub_id]))["result"] is True
        assert (await _request(ws, 5, "eth_unsubscribe", [sub_id]))["result"] is False
        bad = await _request(ws, 6, "eth_subscribe", ["nope"])
        assert bad["error"]["code"] == -32602


async def test_new_pending_transactions(node: DevNode) -> None:
    sender = Account.from_key(DEV_KEYS[5].secret)
    async with open_websocket_url(node.ws_url) as ws:
        sub_id = (await _request(ws, 1, "eth_subscribe", ["newPendingTransactions"]))["result"]
        nonce = int(
            (await _request(ws, 2, "eth_getTransactionCount", [sender.address, "pending"]))[
                "result"
            ],
            16,
        )
        signed = sender.sign_transaction(
            {
                "type": 2,
                "chainId": CHAIN_ID,
                "nonce": nonce,
                "to": Account.create().address,
                "value": 1,
                "gas": 21_000,
                "maxPriorityFeePerGas": GWEI,
                "maxFeePerGas": 10 * GWEI,
            }
        )
        sent = await _request(
            ws, 3, "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]
        )
        assert sent["result"] == "0x" + signed.hash.hex()
        assert await _notification(ws, sub_id) == sent["result"]
