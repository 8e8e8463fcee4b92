"""The authenticated handshake: a sans-I/O state machine per connection (STYLE rules 1, 3).

Both sides run the same steps, whoever dialed::

    send Hello(version, chain id, genesis hash, node public key, fresh nonce, status)
    on the peer's Hello: check version, chain, genesis, not ourselves, nonce never seen;
        send HelloAck(sign(handshake_digest(chain, genesis, the PEER's nonce, OUR key)))
    on the peer's HelloAck: the signature must recover the key the peer's Hello named,
        over handshake_digest(chain, genesis, OUR nonce, THE PEER's key) -> done

The digest is domain separated, ``keccak256(rlp([b"moderntensor/p2p/handshake/v1",
chain_id, genesis_hash, nonce, signer_public_key]))``: a node never signs 32 bytes a peer
chose, and a signature made for one chain, one nonce or one key is good for nothing else.
The key is the *node* key (``moderntensor.keys``), never a consensus key. Each side proves
its key over a nonce the other just made, so a recorded handshake cannot be replayed; a
peer's nonce seen before (a replayed Hello, or our own nonce reflected back) is refused too.

Any failure raises :class:`HandshakeFailed` with a :class:`DisconnectReason` (the shell
sends ``Disconnect(reason)`` and closes); after a failure the machine refuses all input.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import NoReturn

import attrs
import coincurve

from moderntensor.codec import encode_rlp, encode_uint
from moderntensor.crypto import InvalidSignature, PrivateKey, keccak256, recover_public_key
from moderntensor.network._errors import HandshakeFailed, NetworkLocalError
from moderntensor.network._messages import (
    PROTOCOL_VERSION,
    Disconnect,
    DisconnectReason,
    Hello,
    HelloAck,
    WireMessage,
)

__all__ = [
    "HANDSHAKE_DOMAIN",
    "ChainIdentity",
    "Handshake",
    "HandshakeState",
    "LocalStatus",
    "NonceBook",
    "compute_handshake_digest",
]

HANDSHAKE_DOMAIN = b"moderntensor/p2p/handshake/v1"


def compute_handshake_digest(
    chain_id: int, genesis_hash: bytes, nonce: bytes, signer_public_key: bytes
) -> bytes:
    """What a node signs to prove its key to the side that chose ``nonce``."""
    return keccak256(
        encode_rlp(
            [HANDSHAKE_DOMAIN, encode_uint(chain_id), genesis_hash, nonce, signer_public_key]
        )
    )


@attrs.frozen(slots=True)
class ChainIdentity:
    """This node's key and the chain it serves."""

    node_key: PrivateKey = attrs.field(eq=False)
    chain_id: int
    genesis_hash: bytes
    version: int = PROTOCOL_VERSION

    @property
    def public_key(self) -> bytes:
        return self.node_key.public_key_bytes

    @property
    def peer_id(self) -> str:
        return self.public_key.hex()


@attrs.frozen(slots=True)
class LocalStatus:
    """Where this node stands (sent in Hello and Status)."""

    head_number: int
    head_hash: bytes
    finalized_slot: int
    epoch: int
    view: int
    certified: tuple[int, int] | None = None


class NonceBook:
    """Nonces seen in handshakes (ours and peers'), the newest ``capacity`` kept: a Hello
    carrying one of them is a replay (or a reflection of ours)."""

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def add(self, nonce: bytes) -> bool:
        """Remember ``nonce``; False if it was seen before."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)


class HandshakeState(enum.Enum):
    IDLE = "idle"
    HELLO_SENT = "hello sent"
    ACK_SENT = "ack sent"  # the peer's Hello checked, our proof sent
    DONE = "done"
    ERROR = "error"


_TRANSITIONS: dict[tuple[HandshakeState, type], HandshakeState] = {
    (HandshakeState.IDLE, Hello): HandshakeState.HELLO_SENT,  # our own Hello, by start()
    (HandshakeState.HELLO_SENT, Hello): HandshakeState.ACK_SENT,
    (HandshakeState.ACK_SENT, HelloAck): HandshakeState.DONE,
}
"""The legal moves; anything else is a PROTOCOL_ERROR (a Disconnect ends it with its reason)."""


class Handshake:
    """One connection's handshake. ``start()`` gives our Hello; feed each message the peer
    sends to :meth:`receive`, send what it returns; when ``state`` is DONE, ``peer`` is the
    peer's checked Hello.

    Args:
        identity: our key and chain.
        status: where we stand (goes into our Hello).
        nonce: 32 fresh random bytes (the shell draws them: this class never does I/O).
        nonces: the node's book of seen nonces (shared by its connections).
        listen_port: where we accept connections (0: we do not).
    """

    def __init__(
        self,
        identity: ChainIdentity,
        status: LocalStatus,
        nonce: bytes,
        nonces: NonceBook,
        *,
        listen_port: int = 0,
    ) -> None:
        if len(nonce) != 32:
            raise NetworkLocalError("a handshake nonce must be 32 bytes")
        self.identity = identity
        self.status = status
        self.nonce = nonce
        self.nonces = nonces
        self.listen_port = listen_port
        self.state = HandshakeState.IDLE
        self.peer: Hello | None = None

    def start(self) -> Hello:
        """Our Hello (send it first, whichever side dialed)."""
        self._move(Hello)
        self.nonces.add(self.nonce)  # a peer that reflects it back is caught as a replay
        s = self.status
        return Hello(
            self.identity.version, self.identity.chain_id, self.identity.genesis_hash,
            self.identity.public_key, self.nonce, self.listen_port, s.head_number, s.head_hash,
            s.finalized_slot, s.epoch, s.view,
        )  # fmt: skip

    def receive(self, message: WireMessage) -> list[WireMessage]:
        """Take one message from the peer; returns what to send back.

        Raises:
            HandshakeFailed: with the reason to send in ``Disconnect`` (``remote_closed``
                when the peer sent a Disconnect itself: send nothing back).
        """
        if self.state is HandshakeState.ERROR:
            raise NetworkLocalError("the handshake failed already")
        if isinstance(message, Disconnect):
            self._fail(message.reason, "the peer disconnected", remote_closed=True)
        if (self.state, type(message)) not in _TRANSITIONS:
            self._fail(
                DisconnectReason.PROTOCOL_ERROR,
                f"{type(message).__name__} in state {self.state.value}",
            )
        if isinstance(message, Hello):
            ack = self._on_hello(message)
            self._move(Hello)
            return [ack]
        assert isinstance(message, HelloAck)  # the table admits nothing else here
        self._on_ack(message)
        self._move(HelloAck)
        return []

    def _move(self, kind: type) -> None:
        self.state = _TRANSITIONS[(self.state, kind)]

    def _fail(
        self, reason: DisconnectReason, detail: str, *, remote_closed: bool = False
    ) -> NoReturn:
        self.state = HandshakeState.ERROR
        raise HandshakeFailed(reason, detail, remote_closed=remote_closed)

    def _on_hello(self, hello: Hello) -> HelloAck:
        me = self.identity
        if hello.version != me.version:
            self._fail(DisconnectReason.PROTOCOL_VERSION,
                       f"protocol version {hello.version}, we speak {me.version}")  # fmt: skip
        if hello.chain_id != me.chain_id:
            self._fail(DisconnectReason.CHAIN_ID,
                       f"chain id {hello.chain_id}, ours is {me.chain_id}")  # fmt: skip
        if hello.genesis_hash != me.genesis_hash:
            self._fail(DisconnectReason.GENESIS,
                       f"genesis 0x{hello.genesis_hash.hex()[:16]}, "
                       f"ours is 0x{me.genesis_hash.hex()[:16]}")  # fmt: skip
        if hello.public_key == me.public_key:
            self._fail(DisconnectReason.SELF_CONNECTION, "the peer is this node")
        try:
            coincurve.PublicKey(hello.public_key)
        except Exception:  # coincurve raises a bare Exception for a point not on the curve
            self._fail(DisconnectReason.BAD_SIGNATURE, "the public key is not a curve point")
        if not self.nonces.add(hello.nonce):
            self._fail(DisconnectReason.REPLAYED_NONCE, "the peer's nonce was seen before")
        self.peer = hello
        digest = compute_handshake_digest(me.chain_id, me.genesis_hash, hello.nonce, me.public_key)
        return HelloAck(me.node_key.sign(digest))

    def _on_ack(self, ack: HelloAck) -> None:
        assert self.peer is not None  # ACK_SENT is reached only through _on_hello
        me, key = self.identity, self.peer.public_key
        digest = compute_handshake_digest(me.chain_id, me.genesis_hash, self.nonce, key)
        try:
            recovered = recover_public_key(digest, ack.signature).format(compressed=True)
        except InvalidSignature:
            recovered = b""
        if recovered != key:
            self._fail(DisconnectReason.BAD_SIGNATURE,
                       "the handshake signature is not the peer key's over our nonce")  # fmt: skip
