"""Connected peers: one :class:`Peer` per peer id, requests with ids and timeouts, and the
node's :class:`~moderntensor.node._fetch.BlockFetcher` over them (:class:`PeerManager`).

One connection per peer id. When a second one completes its handshake (two nodes dialed each
other at once, or a peer reconnected before we saw its old connection die), the rule is the
same on both ends, so both keep the same one:

* both connections in the same direction (a reconnect): the new one replaces the old;
* opposite directions (simultaneous dials): the one dialed by the node with the smaller
  peer id is kept; the other is closed with ``DUPLICATE_PEER``.

Each peer has a bounded queue of frames to send, drained by its writer task. Nothing here
waits on a peer: broadcasts and replies use ``send_nowait`` and a frame that finds a peer's
queue full is dropped for that peer and counted (the peer is far behind; consensus re-sends
on timeouts, a request times out and is asked elsewhere). Waiting instead would let one slow
peer stall gossip to all the others, or two peers' readers wait on each other's writers.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
from collections.abc import Callable

import attrs
import trio

from moderntensor.chain.blocks import Block
from moderntensor.consensus import Certificate
from moderntensor.network._config import NetworkConfig
from moderntensor.network._gossip import BoundedSet
from moderntensor.network._messages import (
    BlockRange,
    BlockReply,
    Certificates,
    DisconnectReason,
    GetBlock,
    GetBlockRange,
    GetCertificates,
    GetStatus,
    Hello,
    Request,
    Response,
    Status,
)
from moderntensor.network._multiaddr import Multiaddr
from moderntensor.network._transport import Connection
from moderntensor.network._wire import (
    encode_message,
)

__all__ = ["Direction", "Peer", "PeerManager"]

KNOWN_TXS = 32_768
"""Transaction hashes remembered per peer (sent to it or received from it): not sent again."""
RANGE_TIMEOUTS = 4
"""A range request waits this many request timeouts for its answer."""
BULK_SHARE = 4
"""The bulk queue holds a quarter as many frames as the urgent one."""
KNOWN_WANTS = 8_192
"""Ids served on ``Want`` remembered per peer (more than the message cache holds in ids)."""
MAX_PENDING_REQUESTS = 64
"""Requests in flight to one peer; more fail at once (the caller asks another peer)."""


class Direction(enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    value: Response | None = None


@attrs.define(eq=False)
class Peer:
    """One connected, authenticated peer (its session task owns ``conn``)."""

    peer_id: str
    hello: Hello
    direction: Direction
    conn: Connection
    addr: Multiaddr | None
    """Where it can be dialed: the address we dialed, or its host and announced listen port."""
    queue_size: int = 1024
    connected_at: float = 0.0
    known_txs: BoundedSet = attrs.field(factory=lambda: BoundedSet(KNOWN_TXS))
    served_wants: BoundedSet = attrs.field(factory=lambda: BoundedSet(KNOWN_WANTS))
    """Gossip ids already sent to it on ``Want``: each is sent once, however often asked."""
    dropped: int = 0
    """Frames dropped because its queue was full."""
    kick_reason: DisconnectReason | None = None
    status: Status | None = None
    """Its latest ``Status`` answer (head and finalized as last known; the Hello's before)."""
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    closed: trio.Event = attrs.field(factory=trio.Event)
    _pending: dict[int, _Waiter] = attrs.field(factory=dict)
    queue: trio.MemorySendChannel[bytes] = attrs.field(init=False)
    outgoing: trio.MemoryReceiveChannel[bytes] = attrs.field(init=False)
    bulk: trio.MemorySendChannel[bytes] = attrs.field(init=False)
    """Transaction batches and block ranges: sent only when nothing else waits."""
    bulk_outgoing: trio.MemoryReceiveChannel[bytes] = attrs.field(init=False)
    _ready: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self.queue, self.outgoing = trio.open_memory_channel[bytes](self.queue_size)
        self.bulk, self.bulk_outgoing = trio.open_memory_channel[bytes](
            max(1, self.queue_size // BULK_SHARE)
        )

    @property
    def label(self) -> str:
        """The peer id's first 12 hex digits (for logs)."""
        return self.peer_id[:12]

    def send_nowait(self, frame: bytes, *, bulk: bool = False) -> bool:
        """Queue a frame for the writer; False (and counted) if the queue is full or closed.
        ``bulk`` frames (transaction batches, block ranges: large, not urgent) go to a queue
        of their own that the writer drains only when no other frame waits, so a vote or a
        proposal never waits behind megabytes of transactions."""
        try:
            (self.bulk if bulk else self.queue).send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1
            return False
        self._ready.set()
        return True

    async def next_frame(self) -> bytes | None:
        """The next frame to write, urgent ones first; None once the peer is closed."""
        while True:
            for channel in (self.outgoing, self.bulk_outgoing):
                try:
                    return channel.receive_nowait()
                except trio.WouldBlock:
                    continue
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return None
            self._ready = trio.Event()
            await self._ready.wait()

    def expect(self, request_id: int) -> _Waiter | None:
        """Register a request in flight (None: too many already, or the peer is gone)."""
        if len(self._pending) >= MAX_PENDING_REQUESTS or self.closed.is_set():
            return None
        waiter = self._pending[request_id] = _Waiter()
        return waiter

    def resolve(self, response: Response) -> bool:
        """The answer to a request in flight; False if none waits for it (late or unasked)."""
        waiter = self._pending.pop(response.request_id, None)
        if waiter is None:
            return False
        if isinstance(response, Status):
            self.status = response
        waiter.value = response
        waiter.event.set()
        return True

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def kick(self, reason: DisconnectReason) -> None:
        """End this peer's session: it sends ``Disconnect(reason)`` and closes."""
        self.kick_reason = reason
        self.scope.cancel()

    def close(self) -> None:
        """The session ended: wake every request in flight (they get None)."""
        self.closed.set()
        self.queue.close()
        self.bulk.close()
        self._ready.set()
        for waiter in self._pending.values():
            waiter.event.set()
        self._pending.clear()


def is_loopback(host: str) -> bool:
    """``host`` is a loopback IP literal (127.0.0.0/8, ::1), exempt from the per-IP cap."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dialer(peer: Peer, own_id: str) -> str:
    return own_id if peer.direction is Direction.OUTBOUND else peer.peer_id


class PeerManager:
    """The set of connected peers; also the node's block fetcher (``fetch_block``,
    ``fetch_certificates``), asking one peer after another."""

    def __init__(self, own_id: str, config: NetworkConfig) -> None:
        self.own_id = own_id
        self.config = config
        self.peers: dict[str, Peer] = {}
        self._ids = itertools.count(1)
        self._turn = 0
        self.requests_failed = 0
        self.on_timeout: Callable[[Peer], None] | None = None
        """Called when a connected peer lets a request time out (the service scores it)."""

    def __len__(self) -> int:
        return len(self.peers)

    def get(self, peer_id: str) -> Peer | None:
        return self.peers.get(peer_id)

    def admit(self, peer: Peer) -> tuple[DisconnectReason | None, Peer | None]:
        """Register a peer whose handshake completed.

        Returns:
            (a reason to refuse it, or None; a peer it replaces, to be kicked, or None).
        """
        existing = self.peers.get(peer.peer_id)
        if existing is None:
            if self.limit_hit(peer) is not None:
                return DisconnectReason.TOO_MANY_PEERS, None
            self.peers[peer.peer_id] = peer
            return None, None
        if existing.direction is peer.direction:
            keep_new = True  # the peer reconnected: its old connection is stale
        else:
            keep_new = _dialer(peer, self.own_id) < _dialer(existing, self.own_id)
        if not keep_new:
            return DisconnectReason.DUPLICATE_PEER, None
        self.peers[peer.peer_id] = peer
        return None, existing

    def limit_hit(self, peer: Peer) -> str | None:
        """The connection limit a new ``peer`` would pass (its config key), or None.

        ``max_peers`` counts both directions; ``max_inbound`` / ``max_outbound`` each one;
        ``max_inbound_per_ip`` the inbound peers from the peer's IP (loopback exempt: a
        localnet puts every node on 127.0.0.1).
        """
        config = self.config
        if len(self.peers) >= config.max_peers:
            return "max_peers"
        same = [p for p in self.peers.values() if p.direction is peer.direction]
        if peer.direction is Direction.OUTBOUND:
            return "max_outbound" if len(same) >= config.max_outbound else None
        if len(same) >= config.max_inbound:
            return "max_inbound"
        host = peer.conn.remote_host
        if not is_loopback(host):
            from_host = sum(p.conn.remote_host == host for p in same)
            if from_host >= config.max_inbound_per_ip:
                return "max_inbound_per_ip"
        return None

    def count(self, direction: Direction) -> int:
        return sum(p.direction is direction for p in self.peers.values())

    def remove(self, peer: Peer) -> None:
        if self.peers.get(peer.peer_id) is peer:
            del self.peers[peer.peer_id]

    def broadcast(self, frame: bytes, *, exclude: Peer | None = None) -> int:
        """Queue ``frame`` to every peer but ``exclude``; returns how many took it."""
        return sum(p.send_nowait(frame) for p in list(self.peers.values()) if p is not exclude)

    def rotation(self) -> list[Peer]:
        """The peers, starting at a different one each call (spreads requests)."""
        peers = list(self.peers.values())
        if not peers:
            return []
        self._turn = (self._turn + 1) % len(peers)
        return peers[self._turn :] + peers[: self._turn]

    async def request(
        self, peer: Peer, make: Callable[[int], Request], *, timeout_s: float | None = None
    ) -> Response | None:
        """Send ``make(request_id)`` to ``peer``; its answer, or None on timeout or loss."""
        request_id = next(self._ids)
        waiter = peer.expect(request_id)
        if waiter is None:
            self.requests_failed += 1
            return None
        try:
            if not peer.send_nowait(encode_message(make(request_id))):
                self.requests_failed += 1
                return None
            with trio.move_on_after(timeout_s or self.config.request_timeout_s) as waited:
                await waiter.event.wait()
            if waiter.value is None:
                self.requests_failed += 1
                if waited.cancelled_caught and self.on_timeout is not None:
                    self.on_timeout(peer)
            return waiter.value
        finally:
            peer.forget(request_id)

    async def fetch_block(self, block_hash: bytes) -> Block | None:
        """The block with this hash from the first peer that has it (None if none does)."""
        for peer in self.rotation():
            reply = await self.request(peer, lambda rid: GetBlock(rid, block_hash))
            if isinstance(reply, BlockReply) and reply.block.hash == block_hash:
                return reply.block
        return None

    async def fetch_certificates(self, epoch: int, slot: int) -> list[Certificate]:
        """The certificates of round (``epoch``, ``slot``) from the first peer holding any."""
        for peer in self.rotation():
            reply = await self.request(peer, lambda rid: GetCertificates(rid, epoch, slot))
            if isinstance(reply, Certificates) and reply.certificates:
                return list(reply.certificates)
        return []

    async def heads(self) -> list[tuple[Peer, int]]:
        """Each connected peer's committed head height (the peers that answered in time)."""
        heads: list[tuple[Peer, int]] = []

        async def ask(peer: Peer) -> None:
            status = await self.request(peer, GetStatus)
            if isinstance(status, Status):
                heads.append((peer, status.head_number))

        async with trio.open_nursery() as nursery:
            for peer in list(self.peers.values()):
                nursery.start_soon(ask, peer)
        return heads

    async def fetch_range(self, peer: Peer, start: int, count: int) -> BlockRange | None:
        """Blocks ``start`` .. ``start + count - 1`` with their certificates from ``peer``
        (given ``RANGE_TIMEOUTS`` request timeouts: a range of full blocks is megabytes, and
        decoding it recovers every sender before the answer counts as arrived)."""
        wait = self.config.request_timeout_s * RANGE_TIMEOUTS
        reply = await self.request(peer, lambda rid: GetBlockRange(rid, start, count),
                                   timeout_s=wait)  # fmt: skip
        return reply if isinstance(reply, BlockRange) else None

    def punish(self, peer: Peer, reason: str) -> None:
        """``peer`` sent something provably wrong (a bad certificate or block): disconnect."""
        del reason  # logged by the caller and by the session's end
        peer.kick(DisconnectReason.BAD_MESSAGE)
