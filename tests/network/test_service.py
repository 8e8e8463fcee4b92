"""The network service over the memory transport (virtual time): connecting, the restart
status, gossip with relay and dedupe, requests with timeouts, and bad peers dropped with
their reason code while the node goes on."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from moderntensor.chain.votes import VoteKind
from moderntensor.consensus import Proposal, build_certificate
from moderntensor.network import (
    BlockReply,
    Connection,
    Disconnect,
    DisconnectReason,
    GetBlock,
    GetPeers,
    GetStatus,
    GetVotes,
    Handshake,
    HandshakeState,
    MemoryNetwork,
    NonceBook,
    Peers,
    Status,
    Transactions,
    Votes,
    decode_message,
    encode_message,
    make_multiaddr,
)
from tests.factories import USERS, transfer
from tests.network.fakes import FakeLink, running_mesh, wait_until
from tests.network.helpers import CONSENSUS_KEY, NODE_KEYS, STATUS, identity, signed_block, vote


def full(n: int) -> object:
    return lambda i: [j for j in range(n) if j < i]  # each dials every earlier node


async def test_nodes_connect_and_each_hands_its_driver_every_peers_status(
    autojump_clock: MockClock,
) -> None:
    me = CONSENSUS_KEY.address
    held = [vote(VoteKind.NOTARIZE, slot=4), vote(VoteKind.FINALIZE, slot=4)]
    links = [FakeLink(validator_id=me), FakeLink(), FakeLink()]
    links[1].votes[me] = held
    async with running_mesh(3, full(3), links=links) as nodes:  # type: ignore[arg-type]
        await wait_until(lambda: all(len(n.connected()) == 2 for n in nodes))
        await wait_until(lambda: len(links[0].statuses) == 2)
        statuses = dict.fromkeys(s[0] for s in links[0].statuses)
        assert list(statuses) == [STATUS.certified]
        assert sorted(len(s[1]) for s in links[0].statuses) == [0, 2]  # node 1 held two
        assert {v for s in links[0].statuses for v in s[1]} == set(held)


async def test_gossip_reaches_every_node_once_through_relays(autojump_clock: MockClock) -> None:
    # a line: 0 - 1 - 2; node 2 hears node 0 only through node 1's relay
    async with running_mesh(3, lambda i: [i - 1] if i else [], discover=False) as nodes:
        await wait_until(lambda: nodes[1].connected() == {0, 2})
        assert nodes[0].connected() == {1} and nodes[2].connected() == {1}
        cert = build_certificate(VoteKind.NOTARIZE, 1, 5, b"\x33" * 32, [vote()])
        messages = [vote(), cert, Proposal(signed_block())]
        for message in messages:
            await nodes[0].outbound.send(message)
        await wait_until(lambda: len(nodes[2].link.delivered) == 3)
        await trio.testing.wait_all_tasks_blocked()
        assert nodes[2].link.delivered == messages
        assert nodes[1].link.delivered == messages
        assert nodes[0].link.delivered == []  # our own broadcasts are never delivered back


async def test_a_vote_re_sent_after_the_window_gets_through_again(
    autojump_clock: MockClock,
) -> None:
    async with running_mesh(2, lambda i: [0] if i else []) as nodes:
        await wait_until(lambda: nodes[1].connected() == {0})
        await nodes[0].outbound.send(vote())
        await wait_until(lambda: len(nodes[1].link.delivered) == 1)
        await nodes[0].outbound.send(vote())  # within the window: a duplicate
        await trio.testing.wait_all_tasks_blocked()
        assert len(nodes[1].link.delivered) == 1
        await trio.sleep(1.5)  # past seen_ttl_s: the core's timeout re-send is delivered
        await nodes[0].outbound.send(vote())
        await wait_until(lambda: len(nodes[1].link.delivered) == 2)


async def test_transactions_are_gossiped_to_peers_that_lack_them(autojump_clock: MockClock) -> None:
    async with running_mesh(3, full(3)) as nodes:
        await wait_until(lambda: all(len(n.connected()) == 2 for n in nodes))
        txs = [transfer(USERS[0], n, USERS[1].address, 1) for n in range(5)]
        for tx in txs:
            nodes[0].chain.admit(tx)
        await wait_until(lambda: all(len(n.chain.txs) == 5 for n in nodes))
        await trio.testing.wait_all_tasks_blocked()
        for node in nodes[1:]:
            got = [raw for batch in node.chain.submitted for raw in batch]
            assert sorted(got) == sorted(tx.raw for tx in txs)  # each once, no echo storm


async def test_gossiped_transactions_the_node_holds_are_not_submitted_again(
    autojump_clock: MockClock,
) -> None:
    net = MemoryNetwork()
    txs = [transfer(USERS[0], n, USERS[1].address, 1) for n in range(4)]
    async with running_mesh(1, lambda i: [], net=net) as nodes, raw_peer(net, 0) as conn:
        node = nodes[0]
        await handshake(conn)
        await wait_until(lambda: len(node.service.peers) == 1)
        node.chain.admit(txs[0])  # in the pool already (from JSON-RPC, say)
        await conn.send(encode_message(Transactions((txs[0].raw, txs[1].raw))))
        await wait_until(lambda: len(node.chain.submitted) == 1)
        assert node.chain.submitted == [[txs[1].raw]]  # the held one was never decoded
        del node.chain.txs[txs[1].hash]  # it left the pool (in a block)
        await conn.send(encode_message(Transactions((txs[1].raw, txs[2].raw))))
        await wait_until(lambda: len(node.chain.submitted) == 2)
        assert node.chain.submitted[1] == [txs[2].raw]  # admitted lately: remembered
        await conn.send(encode_message(Transactions((txs[0].raw, txs[2].raw))))
        await conn.send(encode_message(Transactions((txs[3].raw,))))
        await wait_until(lambda: len(node.chain.submitted) == 3)
        assert node.chain.submitted[2] == [txs[3].raw]  # a batch of known ones: nothing
        assert node.service.stats().counts["txs_already_known"] == 4
        peer = next(iter(node.service.peers.peers.values()))
        assert all(tx.hash in peer.known_txs for tx in txs)  # none is sent back to it


async def test_blocks_and_certificates_are_fetched_from_whoever_has_them(
    autojump_clock: MockClock,
) -> None:
    async with running_mesh(3, full(3)) as nodes:
        await wait_until(lambda: all(len(n.connected()) == 2 for n in nodes))
        committed, pending = signed_block(3, 9), signed_block(4, 10)
        nodes[2].chain.blocks[committed.hash] = committed
        nodes[1].chain.pending[pending.hash] = pending
        cert = build_certificate(VoteKind.NULLIFY, 1, 6, bytes(32), [vote(VoteKind.NULLIFY, 6)])
        nodes[2].link.certificates[(1, 6)] = [cert]
        peers = nodes[0].service.peers
        for _ in range(2):  # whichever peer is asked first
            assert await peers.fetch_block(committed.hash) == committed
            assert await peers.fetch_block(pending.hash) == pending
            assert await peers.fetch_certificates(1, 6) == [cert]
        assert await peers.fetch_block(b"\x77" * 32) is None
        assert await peers.fetch_certificates(1, 7) == []


# -- bad peers: a raw connection that speaks the protocol by hand ---------------------------


@asynccontextmanager
async def raw_peer(
    net: MemoryNetwork, target: int, *, key: int = 7, host: str = "10.0.0.9"
) -> AsyncIterator[Connection]:
    async with net.transport(host).connect(f"10.0.0.{target}", 30303) as conn:
        yield conn


async def handshake(conn: Connection, key: int = 7) -> None:
    hs = Handshake(identity(key), STATUS, secrets.token_bytes(32), NonceBook())
    await conn.send(encode_message(hs.start()))
    while hs.state is not HandshakeState.DONE:
        for reply in hs.receive(decode_message(await conn.receive())):
            await conn.send(encode_message(reply))


async def receive_until_disconnect(conn: Connection) -> DisconnectReason:
    while True:
        message = decode_message(await conn.receive())
        if isinstance(message, Disconnect):
            return message.reason


async def test_garbage_after_the_handshake_disconnects_with_bad_message(
    autojump_clock: MockClock,
) -> None:
    net = MemoryNetwork()
    async with running_mesh(1, lambda i: [], net=net) as nodes, raw_peer(net, 0) as conn:
        await handshake(conn)
        await wait_until(lambda: len(nodes[0].service.peers) == 1)
        await conn.send(b"\xc2\x12\xff")  # a VOTE frame whose vote is junk
        assert await receive_until_disconnect(conn) is DisconnectReason.BAD_MESSAGE
        await wait_until(lambda: len(nodes[0].service.peers) == 0)


async def test_a_forged_vote_disconnects_with_bad_signature(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with running_mesh(1, lambda i: [], net=net) as nodes, raw_peer(net, 0) as conn:
        await handshake(conn)
        good = vote()
        forged = type(good)(good.kind, good.epoch, good.slot, b"\x44" * 32, good.signer,
                            good.signature)  # fmt: skip
        await conn.send(encode_message(forged))
        assert await receive_until_disconnect(conn) is DisconnectReason.BAD_SIGNATURE
        assert nodes[0].link.delivered == []


async def test_a_silent_peer_times_out_the_handshake(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with running_mesh(1, lambda i: [], net=net), raw_peer(net, 0) as conn:
        assert await receive_until_disconnect(conn) is DisconnectReason.TIMEOUT


async def test_a_frame_over_the_transport_limit_closes_the_connection(
    autojump_clock: MockClock,
) -> None:
    net = MemoryNetwork(max_message_size=1024)
    async with running_mesh(1, lambda i: [], net=net) as nodes, raw_peer(net, 0) as conn:
        await handshake(conn)
        await wait_until(lambda: len(nodes[0].service.peers) == 1)
        await conn.send(encode_message(Transactions((b"\x01" * 2000,))))
        await wait_until(lambda: len(nodes[0].service.peers) == 0)


async def test_a_peer_that_never_answers_is_skipped_for_the_next(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with running_mesh(1, lambda i: [], net=net) as nodes:
        block = signed_block()
        async with raw_peer(net, 0, host="10.0.0.8") as mute, raw_peer(net, 0) as helpful:
            await handshake(mute, key=6)
            await handshake(helpful, key=7)
            await wait_until(lambda: len(nodes[0].service.peers) == 2)

            async def answer(conn: Connection, reply: bool) -> None:
                while True:
                    message = decode_message(await conn.receive())
                    if isinstance(message, GetBlock) and reply:
                        await conn.send(encode_message(BlockReply(message.request_id, block)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer, mute, False)
                nursery.start_soon(answer, helpful, True)
                for _ in range(2):  # whichever is asked first
                    with trio.fail_after(5):
                        assert await nodes[0].service.peers.fetch_block(block.hash) == block
                nursery.cancel_scope.cancel()
            # Neither answers the greeter's status requests; only the mute one let a block
            # request time out too, and each timeout costs the peer score.
            service, now = nodes[0].service, trio.current_time()
            mute_score = service.scores.score(identity(6).peer_id, now)
            helpful_score = service.scores.score(identity(7).peer_id, now)
            assert mute_score < helpful_score < 0


async def test_one_connection_per_peer_and_the_cap(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net, max_peers=2) as nodes,
        raw_peer(net, 0) as first,
        raw_peer(net, 0, host="10.0.0.8") as second,
    ):
        await handshake(first, key=7)
        await wait_until(lambda: len(nodes[0].service.peers) == 1)
        await handshake(second, key=7)  # the same peer again, inbound again: replaces
        assert await receive_until_disconnect(first) is DisconnectReason.DUPLICATE_PEER
        await wait_until(lambda: len(nodes[0].service.peers) == 1)
        async with raw_peer(net, 0, host="10.0.0.7") as third:
            await handshake(third, key=6)
            await wait_until(lambda: len(nodes[0].service.peers) == 2)
            async with raw_peer(net, 0, host="10.0.0.6") as fourth:
                await handshake(fourth, key=5)
                assert await receive_until_disconnect(fourth) is (DisconnectReason.TOO_MANY_PEERS)


async def test_simultaneous_dials_keep_one_connection_the_same_on_both_sides(
    autojump_clock: MockClock,
) -> None:
    async with running_mesh(2, lambda i: [1 - i]) as nodes:
        await wait_until(lambda: all(len(n.connected()) == 1 for n in nodes))
        await trio.sleep(3)  # let any loser's redial settle
        a = nodes[0].service.peers.get(NODE_KEYS[1].public_key_bytes.hex())
        b = nodes[1].service.peers.get(NODE_KEYS[0].public_key_bytes.hex())
        assert a is not None and b is not None
        assert a.direction != b.direction  # the two ends of one connection


async def test_a_wrong_peer_id_in_the_address_is_refused(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_mesh(2, lambda i: []) as nodes:
        # node 0 listens at 10.0.0.0, but the address names another key
        impostor = make_multiaddr("10.0.0.0", 30303, NODE_KEYS[5].public_key_bytes.hex())
        with caplog.at_level(logging.INFO, "moderntensor.network"):
            assert not await nodes[1].service._dial(impostor)
        reasons = [getattr(r, "fields", {}).get("reason") for r in caplog.records]
        assert "WRONG_PEER_ID" in reasons
        await trio.testing.wait_all_tasks_blocked()
        assert nodes[0].connected() == nodes[1].connected() == set()


async def test_a_peer_failure_never_takes_the_service_down(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    async with running_mesh(2, lambda i: [0] if i else [], net=net) as nodes:
        await wait_until(lambda: nodes[1].connected() == {0})
        for _ in range(3):
            async with raw_peer(net, 0) as conn:
                await conn.send(b"junk")
        await nodes[0].outbound.send(vote())
        await wait_until(lambda: len(nodes[1].link.delivered) == 1)


async def test_a_peer_busy_at_first_still_gives_its_status(autojump_clock: MockClock) -> None:
    net = MemoryNetwork()
    me = CONSENSUS_KEY.address
    link = FakeLink(validator_id=me)
    held = vote(VoteKind.NOTARIZE, slot=3)
    async with running_mesh(1, lambda i: [], net=net, links=[link]), raw_peer(net, 0) as conn:
        await handshake(conn)
        asked = 0
        while not link.statuses:
            message = decode_message(await conn.receive())
            if isinstance(message, GetStatus):
                asked += 1
                if asked == 1:
                    continue  # too busy to answer the first time
                reply = Status(message.request_id, 9, b"\x22" * 32, 12, 1, 13, (1, 12))
                await conn.send(encode_message(reply))
            elif isinstance(message, GetVotes):
                assert message.validator_id == me
                await conn.send(encode_message(Votes(message.request_id, (held,))))
            elif isinstance(message, GetPeers):
                await conn.send(encode_message(Peers(message.request_id, ())))
        assert asked == 2
        assert link.statuses == [((1, 12), (held,))]


async def test_transactions_beyond_the_ingest_bound_are_shed_and_votes_still_delivered(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer's reader never waits on transactions: while the node's one ingest task is busy,
    batches past the queue's bound are shed (counted), and a vote behind them is delivered."""
    import moderntensor.network._relay as relay

    monkeypatch.setattr(relay, "TX_INGEST_FRAMES", 2)
    net = MemoryNetwork()
    txs = [transfer(USERS[0], n, USERS[1].address, 1) for n in range(5)]
    async with running_mesh(1, lambda i: [], net=net) as nodes, raw_peer(net, 0) as conn:
        node = nodes[0]
        release = trio.Event()
        submit = node.chain.submit_raw_transactions

        async def slow_submit(raws: list[bytes]) -> list[object]:
            await release.wait()  # the ingest task is busy with the first batch
            return await submit(raws)

        node.chain.submit_raw_transactions = slow_submit  # type: ignore[method-assign]
        await handshake(conn)
        await wait_until(lambda: len(node.service.peers) == 1)
        for tx in txs:  # one is taken, two wait, two are shed
            await conn.send(encode_message(Transactions((tx.raw,))))
        await conn.send(encode_message(vote()))
        await wait_until(lambda: len(node.link.delivered) == 1)
        assert node.service.stats().counts["txs_shed"] == 2
        release.set()
        await wait_until(lambda: len(node.chain.submitted) == 3)
        assert [batch[0] for batch in node.chain.submitted] == [tx.raw for tx in txs[:3]]


async def test_a_block_arriving_from_two_peers_at_once_is_decoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second copy of a proposal that arrives while the first is still being decoded (a
    worker thread, for a big block) is that copy: not decoded, screened or delivered again.
    The first copy's decoding is held until the second has been counted as a duplicate."""
    import threading

    import moderntensor.network._service as service_module

    frame = encode_message(Proposal(signed_block()))
    decoded: list[bytes] = []
    gate = threading.Event()

    def held_decode(data: bytes) -> object:
        if data == frame:
            decoded.append(data)
            gate.wait(10)  # a big block's senders being recovered
        return decode_message(data)

    monkeypatch.setattr(service_module, "THREAD_DECODE_BYTES", 0)
    monkeypatch.setattr(service_module, "decode_message", held_decode)
    net = MemoryNetwork()
    async with (
        running_mesh(1, lambda i: [], net=net) as nodes,
        raw_peer(net, 0, key=6, host="10.0.0.8") as first,
        raw_peer(net, 0, key=7) as second,
    ):
        node = nodes[0]
        await handshake(first, key=6)
        await handshake(second, key=7)
        await wait_until(lambda: len(node.service.peers) == 2)
        duplicates = node.service.duplicates
        await first.send(frame)
        await wait_until(lambda: decoded == [frame])
        await second.send(frame)
        await wait_until(lambda: node.service.duplicates == duplicates + 1)
        gate.set()
        await wait_until(lambda: len(node.link.delivered) == 1)
        assert decoded == [frame]
