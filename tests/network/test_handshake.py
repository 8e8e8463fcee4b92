"""The sans-I/O handshake: both sides prove their node key over the other's fresh nonce with
a domain-separated digest; every failure has its reason code."""

from __future__ import annotations

import attrs
import pytest

from moderntensor.crypto import keccak256, recover_public_key
from moderntensor.network import (
    PROTOCOL_VERSION,
    ChainIdentity,
    Disconnect,
    DisconnectReason,
    Handshake,
    HandshakeFailed,
    HandshakeState,
    Hello,
    HelloAck,
    NetworkLocalError,
    NonceBook,
    compute_handshake_digest,
)
from moderntensor.network._messages import (
    WireMessage,
)
from tests.network.helpers import CHAIN_ID, GENESIS, NODE_KEYS, STATUS, identity


def nonce(i: int) -> bytes:
    return keccak256(b"nonce %d" % i)


def pair(
    a: ChainIdentity | None = None, b: ChainIdentity | None = None
) -> tuple[Handshake, Handshake]:
    return (
        Handshake(a or identity(0), STATUS, nonce(0), NonceBook(), listen_port=30303),
        Handshake(b or identity(1), STATUS, nonce(1), NonceBook()),
    )


def run(a: Handshake, b: Handshake) -> None:
    """Deliver messages both ways until neither has anything left to send."""
    to_b: list[WireMessage] = [a.start()]
    to_a: list[WireMessage] = [b.start()]
    while to_a or to_b:
        if to_b:
            to_a += b.receive(to_b.pop(0))
        if to_a:
            to_b += a.receive(to_a.pop(0))


def test_both_sides_authenticate_each_other() -> None:
    a, b = pair()
    run(a, b)
    assert a.state is b.state is HandshakeState.DONE
    assert a.peer is not None and a.peer.public_key == NODE_KEYS[1].public_key_bytes
    assert b.peer is not None and b.peer.public_key == NODE_KEYS[0].public_key_bytes
    assert b.peer.listen_port == 30303 and a.peer.listen_port == 0
    assert (b.peer.head_number, b.peer.view) == (STATUS.head_number, STATUS.view)


def test_the_signature_covers_the_domain_separated_digest_never_the_raw_nonce() -> None:
    a, b = pair()
    hello_a = a.start()
    b.start()
    (ack,) = b.receive(hello_a)
    assert isinstance(ack, HelloAck)
    digest = compute_handshake_digest(CHAIN_ID, GENESIS, hello_a.nonce, identity(1).public_key)
    assert recover_public_key(digest, ack.signature).format() == NODE_KEYS[1].public_key_bytes
    assert recover_public_key(hello_a.nonce, ack.signature).format() != (
        NODE_KEYS[1].public_key_bytes
    )
    # every input changes the digest
    base = (CHAIN_ID, GENESIS, hello_a.nonce, identity(1).public_key)
    variants = [
        (CHAIN_ID + 1, *base[1:]),
        (CHAIN_ID, b"\x12" * 32, *base[2:]),
        (*base[:2], nonce(9), base[3]),
        (*base[:3], identity(2).public_key),
    ]
    assert len({compute_handshake_digest(*v) for v in [base, *variants]}) == 5


def failure(a: Handshake, message: WireMessage) -> HandshakeFailed:
    with pytest.raises(HandshakeFailed) as info:
        a.receive(message)
    assert a.state is HandshakeState.ERROR
    with pytest.raises(NetworkLocalError):  # a failed machine refuses further input
        a.receive(message)
    return info.value


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": PROTOCOL_VERSION + 1}, DisconnectReason.PROTOCOL_VERSION),
        ({"chain_id": CHAIN_ID + 1}, DisconnectReason.CHAIN_ID),
        ({"genesis_hash": b"\x99" * 32}, DisconnectReason.GENESIS),
    ],
)
def test_mismatches_are_refused(change: dict[str, object], reason: DisconnectReason) -> None:
    a, b = pair(b=identity(1, **change))
    a.start()
    assert failure(a, b.start()).reason is reason


def test_connecting_to_ourselves_is_refused() -> None:
    a, b = pair(b=identity(0))
    a.start()
    assert failure(a, b.start()).reason is DisconnectReason.SELF_CONNECTION


def test_a_replayed_hello_is_refused() -> None:
    book = NonceBook()
    first = Handshake(identity(0), STATUS, nonce(0), book)
    first.start()
    recorded = Handshake(identity(1), STATUS, nonce(1), NonceBook()).start()
    first.receive(recorded)
    second = Handshake(identity(0), STATUS, nonce(2), book)
    second.start()
    assert failure(second, recorded).reason is DisconnectReason.REPLAYED_NONCE


def test_our_own_nonce_reflected_back_is_refused() -> None:
    a = Handshake(identity(0), STATUS, nonce(0), NonceBook())
    ours = a.start()
    reflected = attrs.evolve(ours, public_key=NODE_KEYS[1].public_key_bytes)
    assert failure(a, reflected).reason is DisconnectReason.REPLAYED_NONCE


def test_an_ack_by_another_key_is_refused() -> None:
    a, b = pair()
    hello_a = a.start()
    a.receive(b.start())
    b.receive(hello_a)
    digest = compute_handshake_digest(CHAIN_ID, GENESIS, hello_a.nonce, identity(1).public_key)
    forged = HelloAck(NODE_KEYS[5].sign(digest))
    assert failure(a, forged).reason is DisconnectReason.BAD_SIGNATURE


def test_an_ack_replayed_from_an_earlier_session_is_refused() -> None:
    a, b = pair()
    hello_a = a.start()
    b.start()
    (old_ack,) = b.receive(hello_a)
    # a later session of ours (a fresh nonce) with an attacker replaying b's Hello and ack
    later = Handshake(identity(0), STATUS, nonce(7), NonceBook())
    later.start()
    later.receive(attrs.evolve(_hello_of(b), nonce=nonce(8)))
    assert failure(later, old_ack).reason is DisconnectReason.BAD_SIGNATURE


def _hello_of(h: Handshake) -> Hello:
    fresh = Handshake(h.identity, STATUS, h.nonce, NonceBook())
    return fresh.start()


def test_a_public_key_off_the_curve_is_refused() -> None:
    a, b = pair()
    a.start()
    bogus = attrs.evolve(b.start(), public_key=b"\x02" + b"\xff" * 32)
    assert failure(a, bogus).reason is DisconnectReason.BAD_SIGNATURE


def test_out_of_order_messages_are_protocol_errors() -> None:
    a, b = pair()
    a.start()
    ack = HelloAck(NODE_KEYS[1].sign(b"\x01" * 32))
    assert failure(a, ack).reason is DisconnectReason.PROTOCOL_ERROR
    a, b = pair()
    a.start()
    hello_b = b.start()
    a.receive(hello_b)
    assert failure(a, hello_b).reason is DisconnectReason.PROTOCOL_ERROR


def test_a_disconnect_ends_the_handshake_with_the_peers_reason() -> None:
    a, _ = pair()
    a.start()
    error = failure(a, Disconnect(DisconnectReason.TOO_MANY_PEERS))
    assert error.reason is DisconnectReason.TOO_MANY_PEERS and error.remote_closed


def test_the_nonce_book_is_bounded() -> None:
    book = NonceBook(capacity=3)
    assert all(book.add(nonce(i)) for i in range(5))
    assert len(book) == 3
    assert not book.add(nonce(4)) and book.add(nonce(0))  # the oldest were forgotten
    with pytest.raises(NetworkLocalError):
        Handshake(identity(0), STATUS, b"short", book)
