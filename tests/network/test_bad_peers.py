"""Bad peers against a running network: four validator nodes (``open_node``, each its own
database, driver and producer) joined by real trio-websocket connections on 127.0.0.1 keep
finalizing while a misbehaving peer connects to one of them over a websocket. Each bad peer
is disconnected with its reason code, repeated faults ban it (``BANNED`` on reconnect), and
finality is unaffected: the finalized height keeps growing with the same hashes everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from moderntensor.chain.votes import SignedVote, VoteKind, sign_vote
from moderntensor.crypto import PrivateKey, keccak256
from moderntensor.network import (
    ChainIdentity,
    Connection,
    ConnectionClosed,
    Disconnect,
    DisconnectReason,
    Handshake,
    HandshakeState,
    LocalStatus,
    NonceBook,
    WebSocketTransport,
    decode_message,
    encode_message,
)
from moderntensor.network._messages import MAX_FRAME_SIZE, Hello, HelloAck, Request
from moderntensor.node._supervisor import NodeHandle
from tests.network.test_four_validators import (
    assert_same_chain,
    four_validator_genesis,
    poll,
    start_four,
)
from tests.node.cluster import VALIDATOR_KEYS

pytestmark = pytest.mark.slow

BAD_KEYS = [PrivateKey(keccak256(b"bad peer %d" % i)) for i in range(8)]


def finalized(handles: list[NodeHandle]) -> int:
    return min(h.chain.head.number for h in handles)  # committed blocks are final ones


@asynccontextmanager
async def network(tmp_path: Path) -> AsyncIterator[list[NodeHandle]]:
    genesis = four_validator_genesis(epoch_length=64)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            handles = await start_four(nursery, tmp_path, genesis)
            await poll(lambda: finalized(handles) >= 2, 90, "height 2")
            before = finalized(handles)
            yield handles
            # finality unaffected: it keeps growing, with the same blocks everywhere
            await poll(lambda: finalized(handles) >= before + 4, 90, "finality going on")
            assert assert_same_chain(handles) >= before + 4
            for h in handles:
                assert h.service.peer_count() == 3  # the honest mesh stays whole
            nursery.cancel_scope.cancel()


def bad_identity(handle: NodeHandle, key: int, **changes: object) -> ChainIdentity:
    assert handle.network is not None
    base = handle.network.identity
    ident = ChainIdentity(BAD_KEYS[key], base.chain_id, base.genesis_hash)
    return attrs.evolve(ident, **changes)


@asynccontextmanager
async def dial(handle: NodeHandle) -> AsyncIterator[Connection]:
    assert handle.p2p_port
    async with WebSocketTransport().connect("127.0.0.1", handle.p2p_port) as conn:
        yield conn


def status(ident: ChainIdentity) -> LocalStatus:
    return LocalStatus(0, ident.genesis_hash, 0, 0, 0)


async def handshake(conn: Connection, ident: ChainIdentity) -> list[bytes]:
    """Complete a handshake as ``ident``; returns the frames we sent (Hello, HelloAck)."""
    hs = Handshake(ident, status(ident), secrets.token_bytes(32), NonceBook())
    sent = [encode_message(hs.start())]
    await conn.send(sent[0])
    while hs.state is not HandshakeState.DONE:
        for reply in hs.receive(decode_message(await conn.receive())):
            sent.append(encode_message(reply))
            await conn.send(sent[-1])
    return sent


async def disconnect_reason(
    conn: Connection, answer: Callable[[Request], Awaitable[None]] | None = None
) -> DisconnectReason | None:
    """Read until the node says why it disconnects (None: the connection just closed)."""
    with trio.fail_after(30):
        while True:
            try:
                message = decode_message(await conn.receive())
            except ConnectionClosed:
                return None
            if isinstance(message, Disconnect):
                return message.reason
            if answer is not None and type(message).__name__.startswith("Get"):
                await answer(message)  # type: ignore[arg-type]


async def session(handle: NodeHandle, key: int, frames: list[bytes]) -> DisconnectReason | None:
    """Connect as BAD_KEYS[key], send ``frames`` after the handshake, return the reason."""
    async with dial(handle) as conn:
        await handshake(conn, bad_identity(handle, key))
        for frame in frames:
            try:
                await conn.send(frame)
            except ConnectionClosed:
                break
        return await disconnect_reason(conn)


async def banned_on_reconnect(handle: NodeHandle, key: int) -> bool:
    async with dial(handle) as conn:
        try:
            await handshake(conn, bad_identity(handle, key))
        except ConnectionClosed:
            return False
        return await disconnect_reason(conn) is DisconnectReason.BANNED


def member_vote(handle: NodeHandle, slot: int, key: PrivateKey = VALIDATOR_KEYS[0]) -> SignedVote:
    ident = bad_identity(handle, 0)
    epoch = handle.driver.core.epoch
    return sign_vote(key, ident.chain_id, ident.genesis_hash, VoteKind.NOTARIZE, epoch, slot,
                     b"\x33" * 32)  # fmt: skip


async def test_oversized_frames_and_garbage_are_dropped_then_banned(tmp_path: Path) -> None:
    async with network(tmp_path) as handles:
        target = handles[0]
        vote_frame = encode_message(member_vote(target, 1))
        # over its type's cap (a vote frame is at most 320 bytes), under the transport's
        oversized = vote_frame[:1] + b"\x00" * 4000
        assert (
            await session(target, 0, [b"\xb9\x10\x00" + oversized]) is DisconnectReason.BAD_MESSAGE
        )
        # garbage bytes
        assert await session(target, 0, [b"\xc2\x12\xff"]) is DisconnectReason.BAD_MESSAGE
        # a third fault: 3 x 40 points reach the ban threshold
        assert await session(target, 0, [secrets.token_bytes(64)]) is DisconnectReason.BAD_MESSAGE
        assert await banned_on_reconnect(target, 0)
        assert target.network is not None and target.network.scores.bans == 1
        # over the transport's limit: the websocket itself is closed (code 1009)
        assert await session(target, 1, [b"\x01" * (MAX_FRAME_SIZE + 1)]) is None
        await poll(lambda: target.service.peer_count() == 3, 10, "the bad peer gone")


async def test_wrong_chain_and_replayed_handshakes_are_refused(tmp_path: Path) -> None:
    async with network(tmp_path) as handles:
        target = handles[1]
        other_chain = bad_identity(target, 2, chain_id=target.network.identity.chain_id + 1)  # type: ignore[union-attr]
        async with dial(target) as conn:
            await conn.send(encode_message(Handshake(other_chain, status(other_chain),
                            secrets.token_bytes(32), NonceBook()).start()))  # fmt: skip
            assert await disconnect_reason(conn) is DisconnectReason.CHAIN_ID
        other_genesis = bad_identity(target, 2, genesis_hash=b"\x99" * 32)
        async with dial(target) as conn:
            await conn.send(encode_message(Handshake(other_genesis, status(other_genesis),
                            secrets.token_bytes(32), NonceBook()).start()))  # fmt: skip
            assert await disconnect_reason(conn) is DisconnectReason.GENESIS
        # a session recorded, then its Hello replayed
        async with dial(target) as conn:
            hello, ack = await handshake(conn, bad_identity(target, 3))
        assert isinstance(decode_message(hello), Hello)
        assert isinstance(decode_message(ack), HelloAck)
        async with dial(target) as conn:
            await conn.send(hello)
            assert await disconnect_reason(conn) is DisconnectReason.REPLAYED_NONCE
        # a fresh Hello, then the old session's ack (signed over another nonce of the node)
        async with dial(target) as conn:
            ident = bad_identity(target, 3)
            await conn.send(encode_message(Handshake(ident, status(ident),
                            secrets.token_bytes(32), NonceBook()).start()))  # fmt: skip
            await conn.receive()  # the node's Hello
            await conn.send(ack)
            assert await disconnect_reason(conn) is DisconnectReason.BAD_SIGNATURE
        # a Hello repeated inside a session
        async with dial(target) as conn:
            hello, _ = await handshake(conn, bad_identity(target, 4))
            await conn.send(hello)
            assert await disconnect_reason(conn) is DisconnectReason.PROTOCOL_ERROR


async def test_forged_votes_and_vote_floods_cost_no_recoveries_and_ban(tmp_path: Path) -> None:
    async with network(tmp_path) as handles:
        target = handles[2]
        net = target.network
        assert net is not None
        # a vote under a member's id, signed by someone else: one is enough for a ban
        good = member_vote(target, 1)
        forged = attrs.evolve(member_vote(target, 1, key=BAD_KEYS[5]), signer=good.signer)
        assert await session(target, 5, [encode_message(forged)]) is DisconnectReason.BAD_SIGNATURE
        assert await banned_on_reconnect(target, 5)
        # duplicate flood: a real vote of a member, 2,000 times: checked at most once, each
        # repeat charged before decoding, banned after 100
        recoveries = net.verifier.recoveries
        held = target.driver.core.votes_of(VALIDATOR_KEYS[1].address)
        assert held
        frame = encode_message(held[-1])
        assert await session(target, 6, [frame] * 2000) is DisconnectReason.BANNED
        assert net.verifier.recoveries - recoveries < 200  # honest traffic, not 2,000
        assert await banned_on_reconnect(target, 6)
        # far-future flood: signed by a member, 100 slots and more ahead: never recovered
        recoveries = net.verifier.recoveries
        view = target.driver.core.view
        future = [encode_message(member_vote(target, view + 1000 + i)) for i in range(150)]
        assert await session(target, 7, future) is DisconnectReason.BANNED
        assert net.verifier.recoveries - recoveries < 100
        assert net.ignored >= 100
        assert await banned_on_reconnect(target, 7)


async def test_junk_answers_and_silence_never_stop_fetching(tmp_path: Path) -> None:
    async with network(tmp_path) as handles:
        target = handles[3]
        net = target.network
        assert net is not None
        block_hash = target.chain.chaindb.get_canonical_hash(1)
        # a peer that answers every request with junk: dropped with BAD_MESSAGE
        async with dial(target) as conn:
            await handshake(conn, bad_identity(target, 2))

            async def junk(request: Request) -> None:
                await conn.send(b"\xc3\x05" + secrets.token_bytes(2))

            assert await disconnect_reason(conn, junk) is DisconnectReason.BAD_MESSAGE
        # a peer that never answers: its requests time out and another peer is asked
        async with dial(target) as mute:
            await handshake(mute, bad_identity(target, 3))
            await poll(lambda: target.service.peer_count() == 4, 10, "the mute peer connected")
            failed = net.peers.requests_failed
            async with trio.open_nursery() as nursery:
                nursery.start_soon(disconnect_reason, mute)  # reads, never answers
                for _ in range(4):  # the rotation reaches the mute peer
                    block = await net.peers.fetch_block(block_hash)
                    assert block is not None and block.hash == block_hash
                assert net.peers.requests_failed > failed
                nursery.cancel_scope.cancel()
