"""What a node shows of its peers, over real HTTP: two nodes (real websockets on 127.0.0.1,
RocksDB, the node's supervisor), a dev validator and a follower that dials it. On the
validator, ``net_peerCount`` is the connected count, ``mt_peers`` lists the follower (id,
address, direction, since, score, head, protocol) and ``/metrics`` has the network's series;
when the follower stops, the disconnect is counted by reason, and the validator keeps its
peer scores in ``<data_dir>/peers.json`` when it stops."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import orjson
import trio

from moderntensor.network import PROTOCOL_VERSION, make_multiaddr
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.rpc import RpcConfig
from tests.network.helpers import NODE_KEYS
from tests.network.test_four_validators import poll
from tests.rpc.devnode import VALIDATOR_KEY, dev_genesis


def call(port: int, method: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
        conn.request("POST", "/", body, {"content-type": "application/json"})
        answer = orjson.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert "error" not in answer, answer
    return answer["result"]


def scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


async def run_in(
    scope: trio.CancelScope,
    settings: NodeSettings,
    *,
    task_status: trio.TaskStatus[NodeHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await open_node(settings, task_status=task_status)


async def test_rpc_and_metrics_show_the_connected_peers(tmp_path: Path) -> None:
    genesis = dev_genesis(int(time.time()))
    ids = [k.public_key_bytes.hex() for k in NODE_KEYS[:2]]
    main = NodeSettings(
        tmp_path / "validator", genesis, VALIDATOR_KEY, rpc=RpcConfig(port=0),
        p2p=network_config(genesis, listen_addr="127.0.0.1", port=0), node_key=NODE_KEYS[0],
    )  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            handle: NodeHandle = await nursery.start(run_in, trio.CancelScope(), main)
            assert handle.p2p_port and handle.rpc_port and handle.network
            port = handle.rpc_port
            boot = make_multiaddr("127.0.0.1", handle.p2p_port, ids[0])
            follower = NodeSettings(
                tmp_path / "follower", genesis, None, rpc=None, node_key=NODE_KEYS[1],
                p2p=network_config(genesis, listen_addr="127.0.0.1", port=0, bootstrap=[boot]),
            )  # fmt: skip
            stop = trio.CancelScope()
            await nursery.start(run_in, stop, follower)
            await poll(lambda: len(handle.network.peers) == 1, 20, "the follower connected")

            assert await trio.to_thread.run_sync(call, port, "net_peerCount") == "0x1"
            network = handle.network

            def known_status() -> bool:
                peer = network.peers.get(ids[1])
                return peer is not None and peer.status is not None

            await poll(known_status, 20, "the follower's status")
            listed = await trio.to_thread.run_sync(call, port, "mt_peers")
            assert listed["count"] == 1
            (peer,) = listed["peers"]
            assert peer["peerId"] == ids[1]
            assert peer["direction"] == "inbound"
            assert peer["address"].startswith("/ip4/127.0.0.1/tcp/")
            assert peer["address"].endswith(f"/ws/p2p/{ids[1]}")
            assert abs(peer["connectedSince"] - time.time()) < 30
            assert peer["score"] == 0
            assert int(peer["headNumber"], 16) <= handle.chain.head.number
            assert peer["headHash"].startswith("0x") and len(peer["headHash"]) == 66
            assert peer["protocolVersion"] == PROTOCOL_VERSION

            page = await trio.to_thread.run_sync(scrape, port)
            assert 'moderntensor_peers_connected{direction="inbound"} 1.0' in page
            assert 'moderntensor_peers_connected{direction="outbound"} 0.0' in page
            assert 'moderntensor_peers_limit{direction="outbound"} 10.0' in page
            assert 'moderntensor_peer_score{stat="min"} 0.0' in page
            assert 'moderntensor_gossip_frames_total{fate="relayed"}' in page
            assert "moderntensor_peer_bans_total 0.0" in page

            stop.cancel()  # the follower stops: it says SHUTDOWN
            await poll(lambda: len(handle.network.peers) == 0, 20, "the follower gone")
            assert await trio.to_thread.run_sync(call, port, "net_peerCount") == "0x0"
            assert (await trio.to_thread.run_sync(call, port, "mt_peers"))["peers"] == []
            page = await trio.to_thread.run_sync(scrape, port)
            line = 'moderntensor_peer_disconnects_total{by="peer",reason="SHUTDOWN"} 1.0'
            assert line in page
            nursery.cancel_scope.cancel()
    saved = json.loads((tmp_path / "validator" / "peers.json").read_text())
    assert saved["version"] == 1 and saved["peers"] == []  # nobody misbehaved
