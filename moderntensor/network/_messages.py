"""Wire messages: frozen data (STYLE rule 2), their type numbers, size caps and the
disconnect reason codes. The frame layout of each is in ``_wire``."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeAlias

import attrs

from moderntensor.chain.blocks import MAX_BLOCK_SIZE, Block
from moderntensor.chain.votes import MAX_EVIDENCE_SIZE, MAX_VOTE_SIZE, Evidence, SignedVote
from moderntensor.consensus import MAX_CERTIFICATE_SIZE, Certificate, Proposal, Round
from moderntensor.crypto import Signature
from moderntensor.network._multiaddr import Multiaddr

__all__ = [
    "GOSSIP_TYPES",
    "MAX_CERTIFICATES_REPLY",
    "MAX_FRAME_SIZE",
    "MAX_HAVE_IDS",
    "MAX_PEERS_REPLY",
    "MAX_RANGE_BLOCKS",
    "MAX_RANGE_BYTES",
    "MAX_SIZES",
    "MAX_TX_BATCH",
    "MAX_TX_BATCH_BYTES",
    "MAX_VOTES_REPLY",
    "PROTOCOL_VERSION",
    "BlockRange",
    "BlockReply",
    "Certificates",
    "Disconnect",
    "DisconnectReason",
    "GetBlock",
    "GetBlockRange",
    "GetCertificates",
    "GetPeers",
    "GetStatus",
    "GetVotes",
    "Gossip",
    "Have",
    "Hello",
    "HelloAck",
    "MessageType",
    "NotFound",
    "Peers",
    "Request",
    "Response",
    "Status",
    "Transactions",
    "Votes",
    "Want",
    "WireMessage",
]

PROTOCOL_VERSION = 1
MAX_TX_BATCH = 1024
"""Transactions in one gossip frame."""
MAX_TX_BATCH_BYTES = 4 * 1024 * 1024
MAX_CERTIFICATES_REPLY = 8
MAX_VOTES_REPLY = 1024
MAX_PEERS_REPLY = 64
MAX_HAVE_IDS = 512
"""Message ids in one ``Have`` or ``Want`` frame."""
MAX_RANGE_BLOCKS = 128
"""Blocks asked for, and answered, in one range request."""
MAX_RANGE_BYTES = MAX_BLOCK_SIZE + 4 * 1024 * 1024
"""Encoded blocks in one range answer; the server stops adding blocks before this (one block
is always sent, and a block is at most ``MAX_BLOCK_SIZE``)."""
_ENVELOPE = 64
"""Room for the list header, the type and the request id around a payload."""


class MessageType(enum.IntEnum):
    HELLO = 1
    HELLO_ACK = 2
    DISCONNECT = 3
    GET_STATUS = 4
    STATUS = 5
    TRANSACTIONS = 16
    PROPOSAL = 17
    VOTE = 18
    CERTIFICATE = 19
    EVIDENCE = 20
    HAVE = 21
    WANT = 22
    GET_BLOCK = 32
    BLOCK = 33
    NOT_FOUND = 34
    GET_CERTIFICATES = 35
    CERTIFICATES = 36
    GET_VOTES = 37
    VOTES = 38
    GET_PEERS = 39
    PEERS = 40
    GET_BLOCK_RANGE = 41
    BLOCK_RANGE = 42


GOSSIP_TYPES = frozenset(
    {
        MessageType.TRANSACTIONS,
        MessageType.PROPOSAL,
        MessageType.VOTE,
        MessageType.CERTIFICATE,
        MessageType.EVIDENCE,
    }
)
"""Types whose frames are gossip: identified by keccak256 of the frame, relayed."""

MAX_SIZES: dict[MessageType, int] = {
    MessageType.HELLO: 512,
    MessageType.HELLO_ACK: 128,
    MessageType.DISCONNECT: 16,
    MessageType.GET_STATUS: 32,
    MessageType.STATUS: 256,
    MessageType.TRANSACTIONS: MAX_TX_BATCH_BYTES + 8 * MAX_TX_BATCH + _ENVELOPE,
    MessageType.PROPOSAL: MAX_BLOCK_SIZE + 256,
    MessageType.VOTE: MAX_VOTE_SIZE + _ENVELOPE,
    MessageType.CERTIFICATE: MAX_CERTIFICATE_SIZE + _ENVELOPE,
    MessageType.EVIDENCE: MAX_EVIDENCE_SIZE + _ENVELOPE,
    MessageType.HAVE: MAX_HAVE_IDS * 33 + _ENVELOPE,
    MessageType.WANT: MAX_HAVE_IDS * 33 + _ENVELOPE,
    MessageType.GET_BLOCK: 64,
    MessageType.BLOCK: MAX_BLOCK_SIZE + _ENVELOPE,
    MessageType.NOT_FOUND: 32,
    MessageType.GET_CERTIFICATES: 64,
    MessageType.CERTIFICATES: MAX_CERTIFICATES_REPLY * (MAX_CERTIFICATE_SIZE + 8) + _ENVELOPE,
    MessageType.GET_VOTES: 64,
    MessageType.VOTES: MAX_VOTES_REPLY * (MAX_VOTE_SIZE + 8) + _ENVELOPE,
    MessageType.GET_PEERS: 32,
    MessageType.PEERS: MAX_PEERS_REPLY * 400 + _ENVELOPE,
    MessageType.GET_BLOCK_RANGE: 64,
    MessageType.BLOCK_RANGE: MAX_RANGE_BYTES
    + MAX_RANGE_BLOCKS * (MAX_CERTIFICATE_SIZE + 16)
    + _ENVELOPE,
}
"""The largest frame of each type, in bytes (checked before the frame is parsed)."""

MAX_FRAME_SIZE = max(MAX_SIZES.values())
"""The transport's per-message limit: the largest frame of any type (a block)."""


class DisconnectReason(enum.IntEnum):
    """Why a connection is closed (sent in :class:`Disconnect`, logged on both sides)."""

    SHUTDOWN = 1
    PROTOCOL_VERSION = 2
    CHAIN_ID = 3
    GENESIS = 4
    BAD_SIGNATURE = 5
    REPLAYED_NONCE = 6
    SELF_CONNECTION = 7
    DUPLICATE_PEER = 8
    TOO_MANY_PEERS = 9
    BAD_MESSAGE = 10
    PROTOCOL_ERROR = 11
    TIMEOUT = 12
    WRONG_PEER_ID = 13
    RATE_LIMITED = 14
    BANNED = 15


def _check_len(length: int) -> Callable[[object, attrs.Attribute[bytes], bytes], None]:
    def check(_inst: object, attr: attrs.Attribute[bytes], value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != length:
            raise ValueError(f"{attr.name} must be {length} bytes")

    return check


@attrs.frozen(slots=True)
class Hello:
    """The first message each side sends: who it is, which chain, where it stands, and a
    fresh nonce the other side must sign (with the handshake digest, never raw)."""

    version: int
    chain_id: int
    genesis_hash: bytes = attrs.field(validator=_check_len(32))
    public_key: bytes = attrs.field(validator=_check_len(33))
    nonce: bytes = attrs.field(validator=_check_len(32))
    listen_port: int
    head_number: int
    head_hash: bytes = attrs.field(validator=_check_len(32))
    finalized_slot: int
    epoch: int
    view: int


@attrs.frozen(slots=True)
class HelloAck:
    """The node key's signature over the handshake digest of the other side's nonce."""

    signature: Signature


@attrs.frozen(slots=True)
class Disconnect:
    reason: DisconnectReason


@attrs.frozen(slots=True)
class GetStatus:
    request_id: int


@attrs.frozen(slots=True)
class Status:
    """Where a node stands; ``certified`` is the highest round of a certificate it holds."""

    request_id: int
    head_number: int
    head_hash: bytes = attrs.field(validator=_check_len(32))
    finalized_slot: int
    epoch: int
    view: int
    certified: Round | None


@attrs.frozen(slots=True)
class Transactions:
    """A batch of raw transactions (their network encoding)."""

    txs: tuple[bytes, ...]


@attrs.frozen(slots=True)
class Have:
    """Ids of gossip frames the sender holds (lazy gossip to peers outside its mesh)."""

    ids: tuple[bytes, ...]


@attrs.frozen(slots=True)
class Want:
    """Ids announced by a ``Have`` that the sender lacks: the other side sends the frames."""

    ids: tuple[bytes, ...]


@attrs.frozen(slots=True)
class GetBlock:
    request_id: int
    block_hash: bytes = attrs.field(validator=_check_len(32))


@attrs.frozen(slots=True)
class BlockReply:
    request_id: int
    block: Block


@attrs.frozen(slots=True)
class NotFound:
    request_id: int


@attrs.frozen(slots=True)
class GetCertificates:
    request_id: int
    epoch: int
    slot: int


@attrs.frozen(slots=True)
class Certificates:
    request_id: int
    certificates: tuple[Certificate, ...]


@attrs.frozen(slots=True)
class GetVotes:
    """The votes of ``validator_id`` the other side's core holds (the restart handshake)."""

    request_id: int
    validator_id: bytes = attrs.field(validator=_check_len(20))


@attrs.frozen(slots=True)
class Votes:
    request_id: int
    votes: tuple[SignedVote, ...]


@attrs.frozen(slots=True)
class GetPeers:
    request_id: int


@attrs.frozen(slots=True)
class Peers:
    request_id: int
    addrs: tuple[Multiaddr, ...]


@attrs.frozen(slots=True)
class GetBlockRange:
    """The committed canonical blocks ``start`` .. ``start + count - 1`` (range sync)."""

    request_id: int
    start: int
    count: int


@attrs.frozen(slots=True)
class BlockRange:
    """Committed canonical blocks from the asked ``start`` on, consecutive, each with its
    finalization certificate if the sender holds one (None otherwise): maybe fewer than asked
    (the sender's head, or the byte cap), none if it has not the start."""

    request_id: int
    blocks: tuple[tuple[Block, Certificate | None], ...]


Request: TypeAlias = GetStatus | GetBlock | GetCertificates | GetVotes | GetPeers | GetBlockRange
Response: TypeAlias = Status | BlockReply | NotFound | Certificates | Votes | Peers | BlockRange
Gossip: TypeAlias = Transactions | Proposal | SignedVote | Certificate | Evidence
WireMessage: TypeAlias = Hello | HelloAck | Disconnect | Gossip | Have | Want | Request | Response
