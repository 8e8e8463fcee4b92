"""``[metrics]``: a Prometheus listener of its own, with or without the JSON-RPC server."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h11
import trio

from moderntensor.node.__main__ import config_settings
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis, dev_genesis_doc, dev_keys
from moderntensor.rpc import MetricsConfig, RpcConfig


async def fetch(
    port: int, requests: list[tuple[str, str]]
) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send the requests one after the other on one keep-alive connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    answers = []
    async with stream:
        for method, target in requests:
            await stream.send_all(
                conn.send(h11.Request(method=method, target=target, headers=[("host", "x")]))
                + conn.send(h11.EndOfMessage())
            )
            status, headers, body = 0, {}, b""
            with trio.fail_after(10):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status, headers = event.status_code, dict(event.headers)
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        raise AssertionError(f"unexpected {event!r}")
            answers.append((status, headers, body))
            conn.start_next_cycle()
    return answers


def gauge(page: bytes, name: str) -> float:
    for line in page.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on the page")


async def test_metrics_listener_without_rpc_serves_live_chain_metrics(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(
        tmp_path / "data", genesis, keys.validator.consensus, None, metrics=MetricsConfig(port=0)
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            assert node.rpc_port is None and node.metrics_port is not None
            while node.service.finalized.number < 2:
                await trio.sleep(0.05)
            answers = await fetch(
                node.metrics_port,
                [("GET", "/metrics"), ("HEAD", "/metrics?x=1"), ("GET", "/"), ("POST", "/metrics")],
            )
            (ok, ok_headers, page), (head, head_headers, head_body), missing, post = answers
            assert ok == 200 and ok_headers[b"content-type"].startswith(
                b"text/plain; version=0.0.4"
            )
            assert gauge(page, "moderntensor_finalized_number") >= 2
            assert gauge(page, "moderntensor_event_loop_lag_seconds") >= 0
            assert b"moderntensor_rpc_requests" not in page  # no RPC server, no RPC counters
            assert head == 200 and head_body == b"" and int(head_headers[b"content-length"]) > 0
            assert missing[0] == 404 and b"/metrics" in missing[2]
            assert post[0] == 405 and post[1][b"allow"] == b"GET"
            nursery.cancel_scope.cancel()


async def test_metrics_listener_counts_the_rpc_servers_requests(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(
        tmp_path / "data", genesis, keys.validator.consensus, RpcConfig(port=0),
        metrics=MetricsConfig(port=0),
    )  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            assert node.rpc_port is not None and node.metrics_port is not None
            (before,) = await fetch(node.metrics_port, [("GET", "/metrics")])
            calls = gauge(before[2], "moderntensor_rpc_requests_total")
            stream = await trio.open_tcp_stream("127.0.0.1", node.rpc_port)
            async with stream:
                body = json.dumps(
                    [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(3)]
                ).encode()
                await stream.send_all(
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                )
                reply = b""
                while chunk := await stream.receive_some(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 200") and reply.count(b'"result":"0x539"') == 3
            (after,) = await fetch(node.metrics_port, [("GET", "/metrics")])
            assert gauge(after[2], "moderntensor_rpc_requests_total") == calls + 3
            nursery.cancel_scope.cancel()


def test_metrics_section_turns_the_listener_on(tmp_path: Path) -> None:
    doc = dev_genesis_doc(int(time.time()), 1.0, dev_keys())
    (tmp_path / "genesis.json").write_text(json.dumps(doc))
    node_toml = tmp_path / "node.toml"
    base = '[node]\ndata_dir = "data"\ngenesis = "genesis.json"\n'
    node_toml.write_text(base)
    args = argparse.Namespace(config=node_toml, data_dir=None, rpc_addr=None, rpc_port=None,
                              p2p_port=None, explorer_port=None, log_level=None)  # fmt: skip
    assert config_settings(args)[0].metrics is None  # off unless asked for
    node_toml.write_text(base + '[metrics]\nenabled = true\naddr = "::1"\nport = 9100\n')
    assert config_settings(args)[0].metrics == MetricsConfig("::1", 9100)
