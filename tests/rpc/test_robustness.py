"""Hypothesis posts malformed JSON, wrong types, huge and empty batches and unknown methods:
the answer is always a JSON-RPC error object (or nothing, for notifications), never an HTTP
500, a hang or a dead server. Plus the HTTP edges: body limit, CORS, health, metrics."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from moderntensor.service import SyncProgress
from tests.rpc.conftest import RawClient
from tests.rpc.devnode import DevNode

METHODS = [
    "eth_getBalance",
    "eth_getBlockByNumber",
    "eth_sendRawTransaction",
    "eth_call",
    "eth_feeHistory",
    "eth_getProof",
    "eth_getLogs",
    "mt_leaderSchedule",
    "eth_subscribe",
    "nope",
    "",
    "eth_",
    "rpc.discover",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["latest", "0x", "0x0", "0x01", "0x" + "f" * 80]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2])},
    optional={
        "id": json_values,
        "method": st.sampled_from(METHODS) | json_values,
        "params": st.lists(json_values, max_size=4) | json_values,
    },
)
bodies = (
    st.binary(max_size=200)
    | json_values.map(orjson.dumps)
    | requests.map(orjson.dumps)
    | st.lists(requests | json_values, max_size=30).map(orjson.dumps)
    | st.integers(1001, 1100).map(
        lambda n: orjson.dumps([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}] * n)
    )
    | st.just(b"[]")
)


def _is_error(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("jsonrpc") == "2.0"
        and "id" in obj
        and isinstance(obj.get("error"), dict)
        and isinstance(obj["error"].get("code"), int)
        and isinstance(obj["error"].get("message"), str)
    )


def _is_response(obj: Any) -> bool:
    return _is_error(obj) or (
        isinstance(obj, dict) and obj.get("jsonrpc") == "2.0" and "id" in obj and "result" in obj
    )


@settings(max_examples=300, deadline=None)
@given(body=bodies)
def test_any_body_gets_a_json_rpc_answer(node: DevNode, body: bytes) -> None:
    client = RawClient(node.port)
    try:
        status, answer = client.post(body)
    finally:
        client.conn.close()
    assert status in (200, 204), (status, answer)
    if status == 204:
        return  # only notifications: nothing to answer
    parsed = orjson.loads(answer)
    if isinstance(parsed, list):
        assert parsed and all(_is_response(r) for r in parsed)
    else:
        assert _is_response(parsed)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            assert parsed["error"]["code"] == -32700
            return
        if message == [] or (isinstance(message, list) and len(message) > 1000):
            assert parsed["error"]["code"] == -32600
        if not isinstance(message, (dict, list)):
            assert parsed["error"]["code"] == -32600


def test_server_still_alive_after_garbage(node: DevNode, rpc: RawClient) -> None:
    for junk in (
        b"\x00\xff" * 100,
        b"GET / HTTP/1.1\r\n" + b"X" * 70_000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
    ):
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            try:
                sock.sendall(junk)
                sock.shutdown(socket.SHUT_WR)
                reply = sock.recv(65536)
            except OSError:
                continue  # the server answered 400 and closed while we were still sending
            assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    assert int(rpc.call("eth_blockNumber"), 16) >= 0


def test_unknown_method_and_codes(rpc: RawClient) -> None:
    status, body = rpc.post(b'{"jsonrpc":"2.0","id":"a","method":"eth_mine","params":[]}')
    assert status == 200
    assert orjson.loads(body) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32601, "message": "the method eth_mine does not exist/is not available"},
    }
    assert orjson.loads(rpc.post(b"{")[1])["error"]["code"] == -32700
    assert orjson.loads(rpc.post(b'{"jsonrpc":"2.0","id":1}')[1])["error"]["code"] == -32600
    assert rpc.post(b'{"jsonrpc":"2.0","method":"eth_chainId"}') == (204, b"")
    mixed = orjson.loads(
        rpc.post(
            b'[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},1,'
            b'{"jsonrpc":"2.0","method":"eth_chainId"}]'
        )[1]
    )
    assert [r.get("result") for r in mixed] == ["0x539", None]
    assert mixed[1]["error"]["code"] == -32600


def test_body_limit(node: DevNode) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    big = b" " * (node.rpc_config.max_body_bytes + 1)
    conn.request("POST", "/", big, {"content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413
    assert orjson.loads(response.read())["error"]["code"] == -32600
    conn.close()
    # a chunked body (no Content-Length) is counted as it arrives
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
        try:
            for _ in range(node.rpc_config.max_body_bytes // (1 << 20) + 2):
                sock.sendall(chunk)
        except OSError:
            pass
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")


def test_cors_preflight_and_headers(node: DevNode, rpc: RawClient) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request(
        "OPTIONS",
        "/",
        headers={
            "Origin": "chrome-extension://metamask",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 204
    assert response.getheader("access-control-allow-origin") == "*"
    assert "POST" in response.getheader("access-control-allow-methods", "")
    assert response.getheader("access-control-allow-headers") == "content-type"
    conn.request(
        "POST",
        "/",
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}',
        {"Origin": "http://localhost:3000", "content-type": "application/json"},
    )
    response = conn.getresponse()
    assert response.getheader("access-control-allow-origin") == "*"
    assert orjson.loads(response.read())["result"] == "0x539"
    conn.close()


def test_health_and_metrics(node: DevNode, rpc: RawClient) -> None:
    status, headers, body = rpc.get("/health")
    doc = orjson.loads(body)
    assert status == 200 and doc["ready"] is True and doc["syncing"] is False
    assert doc["head"] >= doc["finalized"] >= 0 and doc["peers"] == 0
    assert rpc.call("eth_syncing") is False
    progress = SyncProgress(starting=3, current=40, highest=1000, blocks_per_s=12.5, eta_s=76.8)
    node.call(lambda: setattr(node.service, "sync_progress", progress))
    try:
        status, _, body = rpc.get("/health")
        health = orjson.loads(body)
        assert status == 503 and health["ready"] is False and health["syncing"] is True
        assert health["reason"] == "syncing: block 40 of 1000"
        assert health["sync"]["blocksPerSecond"] == 12.5 and health["sync"]["etaSeconds"] == 76.8
        assert rpc.call("eth_syncing") == {
            "startingBlock": "0x3", "currentBlock": "0x28", "highestBlock": "0x3e8"
        }  # fmt: skip
    finally:
        node.call(lambda: setattr(node.service, "sync_progress", None))
    assert rpc.get("/health")[0] == 200

    status, headers, body = rpc.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    head = node.call(lambda: node.service.head)
    assert head.slot - 10 <= samples["moderntensor_head_slot"] <= head.slot
    assert samples["moderntensor_finalized_number"] <= samples["moderntensor_head_number"]
    assert samples["moderntensor_peers"] == 0
    assert samples["moderntensor_mempool_size"] >= 0
    assert samples["moderntensor_block_time_seconds"] > 0
    assert samples["moderntensor_transactions_per_second"] >= 0
    assert "moderntensor_vote_latency_seconds" in samples
    lag = samples["moderntensor_event_loop_lag_seconds"]  # from the node's loop monitor
    assert lag == lag and lag >= 0  # a number, not NaN: the monitor task runs
    assert samples["moderntensor_rpc_requests_total"] > 0
