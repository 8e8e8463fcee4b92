"""Peer-to-peer networking (DESIGN.md §7; layer 6: it talks to the chain service and the
consensus types, never to the node supervisor).

* ``_transport``: the seam -- connections carrying whole binary frames; trio-websocket in
  production, Trio memory channels in tests and the simulator.
* ``_wire``: RLP frames ``[type, field...]``, a total decoder with a size cap per type.
* ``_handshake``: the sans-I/O authenticated handshake (node keys, domain-separated digest,
  fresh nonces, reason codes).
* ``_peers``: connected peers (one per peer id), requests with ids and timeouts, the block
  fetcher over peers.
* ``_gossip``: message ids, the seen-cache, vote dedupe keys.
* ``_peerbook``: the known-address book (last seen, stale ones forgotten; a bootnode serves it).
* ``_score``, ``_persist``: peer scores and bans, kept across restarts in ``peers.json``.
* ``_service``: :class:`NetworkService`, the long-running task that owns every connection
  (with ``_relay``, the gossip, and ``_upkeep``, the book, scores on disk and what the node
  shows of its peers: ``mt_peers`` and ``/metrics``).

The node starts it in its nursery::

    port = await nursery.start(network.run, outbound_receive)

See docs/network.md for the protocol and what is not done yet.
"""

from __future__ import annotations

from moderntensor.network._config import NetworkConfig
from moderntensor.network._errors import (
    ConnectionClosed,
    DialError,
    HandshakeFailed,
    NetworkError,
    NetworkLocalError,
    NetworkRemoteError,
    TransportError,
)
from moderntensor.network._gossip import (
    BoundedSet,
    MessageCache,
    SeenCache,
    compute_message_id,
    compute_vote_key,
)
from moderntensor.network._handshake import (
    HANDSHAKE_DOMAIN,
    ChainIdentity,
    Handshake,
    HandshakeState,
    LocalStatus,
    NonceBook,
    compute_handshake_digest,
)
from moderntensor.network._link import ConsensusLink, ConsensusMessage, GossipVerdict
from moderntensor.network._messages import (
    GOSSIP_TYPES,
    MAX_FRAME_SIZE,
    MAX_RANGE_BLOCKS,
    PROTOCOL_VERSION,
    BlockRange,
    BlockReply,
    Certificates,
    Disconnect,
    DisconnectReason,
    GetBlock,
    GetBlockRange,
    GetCertificates,
    GetPeers,
    GetStatus,
    GetVotes,
    Have,
    Hello,
    HelloAck,
    MessageType,
    NotFound,
    Peers,
    Request,
    Response,
    Status,
    Transactions,
    Votes,
    Want,
    WireMessage,
)
from moderntensor.network._multiaddr import (
    MULTIADDR_FORM,
    Multiaddr,
    make_multiaddr,
    parse_multiaddr,
)
from moderntensor.network._peerbook import AddressBook
from moderntensor.network._peers import Direction, Peer, PeerManager, is_loopback
from moderntensor.network._persist import load_scores, save_scores
from moderntensor.network._score import PeerScores
from moderntensor.network._service import NetworkService
from moderntensor.network._transport import (
    Connection,
    ConnectionHandler,
    MemoryNetwork,
    MemoryTransport,
    Transport,
    WebSocketTransport,
)
from moderntensor.network._upkeep import NetworkStats, PeerInfo
from moderntensor.network._wire import (
    decode_message,
    encode_message,
    peek_type,
)

__all__ = [
    "GOSSIP_TYPES",
    "HANDSHAKE_DOMAIN",
    "MAX_FRAME_SIZE",
    "MAX_RANGE_BLOCKS",
    "MULTIADDR_FORM",
    "PROTOCOL_VERSION",
    "AddressBook",
    "BlockRange",
    "BlockReply",
    "BoundedSet",
    "Certificates",
    "ChainIdentity",
    "Connection",
    "ConnectionClosed",
    "ConnectionHandler",
    "ConsensusLink",
    "ConsensusMessage",
    "DialError",
    "Direction",
    "Disconnect",
    "DisconnectReason",
    "GetBlock",
    "GetBlockRange",
    "GetCertificates",
    "GetPeers",
    "GetStatus",
    "GetVotes",
    "GossipVerdict",
    "Handshake",
    "HandshakeFailed",
    "HandshakeState",
    "Have",
    "Hello",
    "HelloAck",
    "LocalStatus",
    "MemoryNetwork",
    "MemoryTransport",
    "MessageCache",
    "MessageType",
    "Multiaddr",
    "NetworkConfig",
    "NetworkError",
    "NetworkLocalError",
    "NetworkRemoteError",
    "NetworkService",
    "NetworkStats",
    "NonceBook",
    "NotFound",
    "Peer",
    "PeerInfo",
    "PeerManager",
    "PeerScores",
    "Peers",
    "Request",
    "Response",
    "SeenCache",
    "Status",
    "Transactions",
    "Transport",
    "TransportError",
    "Votes",
    "Want",
    "WebSocketTransport",
    "WireMessage",
    "compute_handshake_digest",
    "compute_message_id",
    "compute_vote_key",
    "decode_message",
    "encode_message",
    "is_loopback",
    "load_scores",
    "make_multiaddr",
    "parse_multiaddr",
    "peek_type",
    "save_scores",
]
