"""Peer limits, the bootnode role and scores across restarts, on network services over the
memory transport (virtual time): inbound beyond ``max_inbound`` or ``max_inbound_per_ip``
is refused with ``TOO_MANY_PEERS`` (loopback exempt from the per-IP cap), outbound dialing
stops at ``max_outbound``, a bootnode serves the peers it saw and drops a stale one, and a
peer banned before a restart is still refused after it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio
from trio.testing import MockClock

from moderntensor.network import (
    Connection,
    Direction,
    DisconnectReason,
    GetPeers,
    MemoryNetwork,
    Peers,
    PeerScores,
    decode_message,
    encode_message,
    save_scores,
)
from tests.network.fakes import address, running_mesh, wait_until
from tests.network.helpers import NODE_KEYS, vote
from tests.network.test_service import handshake, raw_peer, receive_until_disconnect


def pid(i: int) -> str:
    return NODE_KEYS[i].public_key_bytes.hex()


async def ask_peers(conn: Connection, request_id: int = 900) -> set[str]:
    """Send GetPeers and return the peer ids in the answer (skipping the greeter's asks)."""
    await conn.send(encode_message(GetPeers(request_id)))
    with trio.fail_after(10):
        while True:
            message = decode_message(await conn.receive())
            if isinstance(message, Peers) and message.request_id == request_id:
                return {a.peer_id for a in message.addrs}


async def test_inbound_beyond_max_inbound_is_refused_with_too_many_peers(
    autojump_clock: MockClock,
) -> None:
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net, max_inbound=2) as nodes,
        raw_peer(net, 0, host="10.0.0.7") as first,
        raw_peer(net, 0, host="10.0.0.6") as second,
        raw_peer(net, 0, host="10.0.0.5") as third,
    ):
        service = nodes[0].service
        await handshake(first, key=7)
        await handshake(second, key=6)
        await wait_until(lambda: len(service.peers) == 2)
        await handshake(third, key=5)
        assert await receive_until_disconnect(third) is DisconnectReason.TOO_MANY_PEERS
        assert len(service.peers) == 2
        assert service.stats().disconnects == {("TOO_MANY_PEERS", "us"): 1}
        assert service.stats().counts["inbound"] == 2


async def test_one_address_gets_at_most_max_inbound_per_ip(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net, max_inbound_per_ip=2) as nodes,
        raw_peer(net, 0, host="10.0.0.9") as a,
        raw_peer(net, 0, host="10.0.0.9") as b,
        raw_peer(net, 0, host="10.0.0.9") as c,
        raw_peer(net, 0, host="10.0.0.8") as other,
    ):
        for conn, key in ((a, 7), (b, 6)):
            await handshake(conn, key=key)
        await wait_until(lambda: len(nodes[0].service.peers) == 2)
        await handshake(c, key=5)
        assert await receive_until_disconnect(c) is DisconnectReason.TOO_MANY_PEERS
        await handshake(other, key=4)  # another address still gets in
        await wait_until(lambda: len(nodes[0].service.peers) == 3)


async def test_loopback_is_exempt_from_the_per_ip_cap(autojump_clock: MockClock) -> None:
    """A localnet runs every node on 127.0.0.1: they must all get in."""
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net, max_inbound_per_ip=1) as nodes,
        raw_peer(net, 0, host="127.0.0.1") as a,
        raw_peer(net, 0, host="127.0.0.1") as b,
        raw_peer(net, 0, host="127.0.0.1") as c,
    ):
        for conn, key in ((a, 7), (b, 6), (c, 5)):
            await handshake(conn, key=key)
        await wait_until(lambda: len(nodes[0].service.peers) == 3)


async def test_outbound_dialing_stops_at_max_outbound(autojump_clock: MockClock) -> None:
    """Node 0 has four bootstrap peers and learns more by peer exchange, but never has more
    than two outbound connections open or opening."""
    most = 0
    async with running_mesh(6, lambda i: [1, 2, 3, 4] if i == 0 else [5], max_outbound=2) as nodes:
        service = nodes[0].service
        with trio.move_on_after(20):
            while True:
                most = max(most, service._outbound, service.peers.count(Direction.OUTBOUND))
                await trio.sleep(0.01)
        assert service.peers.count(Direction.OUTBOUND) == 2
        assert most == 2
        # no third connection was even opened (not dialed, then refused by our own cap)
        assert ("TOO_MANY_PEERS", "us") not in service.stats().disconnects
        assert all(("TOO_MANY_PEERS", "peer") not in n.service.disconnects for n in nodes[3:5])


async def test_a_bootnode_serves_the_peers_it_saw_and_drops_a_stale_one(
    autojump_clock: MockClock,
) -> None:
    """Nodes 1 and 2 dial bootnode 0. A newcomer asking it for peers hears of both; after
    node 2 stops and ``stale_after_s`` passes, only of node 1. The bootnode dials nobody."""
    net = MemoryNetwork()
    async with running_mesh(
        3, lambda i: [0] if i else [], net=net, bootnode=True, stale_after_s=30.0
    ) as nodes:
        boot = nodes[0].service
        await wait_until(lambda: nodes[0].connected() == {1, 2})
        async with raw_peer(net, 0) as newcomer:
            await handshake(newcomer, key=7)
            assert await ask_peers(newcomer) == {pid(1), pid(2)}
            nodes[2].scope.cancel()  # node 2 goes away
            await wait_until(lambda: nodes[0].connected() == {1, 7})  # 7: the newcomer
            await trio.sleep(10)
            assert await ask_peers(newcomer, 901) == {pid(1), pid(2)}  # seen 10 s ago: fresh
            await trio.sleep(25)
            assert await ask_peers(newcomer, 902) == {pid(1)}
            assert pid(2) not in boot.book and boot.book.forgotten >= 1
        assert all(p.direction is Direction.INBOUND for p in boot.peers.peers.values())
        assert boot._outbound == 0


async def test_a_node_forgets_stale_addresses_it_learned(autojump_clock: MockClock) -> None:
    """Node 1 learns node 2's address from bootnode 0 (second-hand) and, with discovery off,
    never connects to it: after ``stale_after_s`` it is gone from node 1's book."""
    async with running_mesh(
        3, lambda i: [0] if i else [], discover=False, stale_after_s=30.0
    ) as nodes:
        await wait_until(lambda: nodes[0].connected() == {1, 2})
        book = nodes[1].service.book
        await wait_until(lambda: pid(2) in book)
        assert nodes[1].connected() == {0}
        learned = trio.current_time()
        await trio.sleep(31)
        assert book.fresh(trio.current_time()) == [address(0)]  # connected: kept
        assert pid(2) not in book
        assert trio.current_time() - learned >= 30


async def test_a_banned_peer_is_still_refused_after_a_restart(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    scores_file = tmp_path / "peers.json"
    net = MemoryNetwork()
    async with running_mesh(
        1, lambda i: [], net=net, scores_file=str(scores_file), scores_save_s=5.0
    ) as nodes:
        async with raw_peer(net, 0) as conn:
            await handshake(conn, key=7)
            good = vote()
            forged = type(good)(good.kind, good.epoch, good.slot, b"\x44" * 32, good.signer,
                                good.signature)  # fmt: skip
            await conn.send(encode_message(forged))
            assert await receive_until_disconnect(conn) is DisconnectReason.BAD_SIGNATURE
        await wait_until(lambda: nodes[0].service.scores.is_banned(pid(7), trio.current_time()))
        await wait_until(lambda: scores_file.exists() and pid(7) in scores_file.read_text())
        scores_file.unlink()  # saved while running; now see it saved at the stop
    saved = json.loads(scores_file.read_text())  # written when the service stopped
    assert [p["id"] for p in saved["peers"]] == [pid(7)]
    assert saved["peers"][0]["banned_until"] > saved["saved_at"]
    net = MemoryNetwork()
    async with running_mesh(1, lambda i: [], net=net, scores_file=str(scores_file)) as nodes:
        async with raw_peer(net, 0) as conn:
            await handshake(conn, key=7)
            assert await receive_until_disconnect(conn) is DisconnectReason.BANNED
        async with raw_peer(net, 0, host="10.0.0.8") as other:  # others are welcome
            await handshake(other, key=6)
            await wait_until(lambda: len(nodes[0].service.peers) == 1)
        assert nodes[0].service.stats().counts["banned"] == 1


async def test_a_banned_bootstrap_peer_is_not_dialed(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    scores_file = tmp_path / "peers.json"
    banned = PeerScores()
    banned.charge(pid(1), 1000.0, now=0.0)
    save_scores(scores_file, banned, now=0.0, wall_now=time.time())
    async with running_mesh(2, lambda i: [1] if i == 0 else [], scores_file=str(scores_file),
                            dial_backoff_max_s=1.0) as nodes:  # fmt: skip
        await trio.sleep(10)
        assert nodes[0].connected() == nodes[1].connected() == set()
        assert not nodes[0].service.disconnects and not nodes[1].service.disconnects
