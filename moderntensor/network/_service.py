"""The network service: the one long-running Trio task that owns every peer connection.

``await nursery.start(service.run, outbound)`` listens (``[p2p] listen_addr``:``port``),
reports the bound port, then keeps dialing the bootstrap peers (exponential backoff with
jitter, bounded), forwards everything the consensus driver sends on ``outbound`` to every
peer, and gossips the transactions the chain service admits. Each connection runs in a task
of its own (:meth:`NetworkService._session`): the handshake, then a reader, a writer and a
greeter; whatever goes wrong with one peer ends that peer's session with one log line and
never the node.

What a reader does with a frame:

* gossip (transactions, proposals, votes, certificates, evidence): dropped if its id is in
  the seen-cache (no re-delivery, no re-relay); votes also by (signer, kind, epoch, slot,
  hash) after their signature was checked (a bad one is the sender's fault: disconnect).
  Otherwise *relayed* at once (see below) and handed to the node: consensus messages
  to the driver's inbox (awaited: back-pressure, never dropped), transaction batches to a
  bounded queue that one task submits to ``ChainService.submit_raw_transactions``, the
  copies the node holds left out (a batch that finds the queue full is shed and counted:
  the reader never waits on transactions); the admitted ones are then gossiped on by
  :meth:`NetworkService._gossip_transactions`, to peers not known to have them.
  Consensus messages are screened by the node first (ACCEPT / IGNORE / REJECT) and relayed
  through a bounded mesh with ``Have``/``Want`` for the other peers (``_relay``).
* requests (status, block by hash, certificates of a round, votes of a validator, peers):
  answered from the chain (committed and executed blocks), the node's journal and core.
* responses: handed to the request waiting for that id.

On each new connection the greeter asks the peer for its status and for the votes of ours it
holds, and gives the driver ``PeerStatus(certified, own_votes)``: that is how a validator
whose stake alone is not a quorum learns where the network is and what it signed before a
restart (sync before sign, docs/consensus.md "Restarts"). It then asks for the peer's peers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import secrets
from collections.abc import Sequence
from typing import TypeVar

import trio

from moderntensor import offload
from moderntensor.codec import DecodeError
from moderntensor.consensus import SignatureVerifier
from moderntensor.network._config import NetworkConfig
from moderntensor.network._errors import (
    HandshakeFailed,
    NetworkRemoteError,
    TransportError,
)
from moderntensor.network._gossip import (
    SeenCache,
    compute_message_id,
)
from moderntensor.network._handshake import (
    ChainIdentity,
    Handshake,
    HandshakeState,
    NonceBook,
)
from moderntensor.network._link import ConsensusLink, ConsensusMessage
from moderntensor.network._logging import event
from moderntensor.network._messages import (
    GOSSIP_TYPES,
    BlockRange,
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
    Request,
    Response,
    Want,
    WireMessage,
)
from moderntensor.network._multiaddr import Multiaddr, make_multiaddr
from moderntensor.network._peerbook import MAX_KNOWN_ADDRS, AddressBook
from moderntensor.network._peers import Direction, Peer, PeerManager
from moderntensor.network._relay import GossipRelay
from moderntensor.network._score import PeerScores, RateLimit
from moderntensor.network._serving import answer_request
from moderntensor.network._transport import Connection, Transport, WebSocketTransport
from moderntensor.network._upkeep import PeerUpkeep, compute_disconnect_label
from moderntensor.network._wire import (
    decode_message,
    encode_message,
    peek_type,
)
from moderntensor.service import ChainService

__all__ = ["NetworkService"]

log = logging.getLogger("moderntensor.network")

THREAD_DECODE_BYTES = 64 * 1024
"""Frames with blocks larger than this (full of transactions, whose senders are recovered
while decoding) are decoded in a worker thread, off the event loop. Other frames are parsed
on the loop: splitting RLP holds the GIL, so a thread would only add its hand-over (a
transaction batch is not decoded further here: the chain service does, in a thread)."""
_BLOCK_TYPES = frozenset({MessageType.PROPOSAL, MessageType.BLOCK, MessageType.BLOCK_RANGE})
TX_SUBSCRIPTION = 4096
"""Admitted transactions waiting to be gossiped (beyond it, the chain service drops some)."""
GOODBYE_TIMEOUT_S = 1.0
REPEATS_TRACKED = 4096
"""Gossip ids remembered per peer, to charge a peer that sends the same frame twice."""

_E = TypeVar("_E", bound=BaseException)
_REQUESTS = (GetStatus, GetBlock, GetCertificates, GetVotes, GetPeers, GetBlockRange)


class NetworkService(GossipRelay, PeerUpkeep):
    """One node's network (see the module docstring); ``run`` is a long-lived task.

    Args:
        config: addresses, limits and timings.
        identity: the node key and the chain.
        service: the chain service (blocks to serve, transactions to submit and gossip).
        link: the consensus side.
        peers: the peer set (the node builds it first, since it is also the block fetcher).
        transport: trio-websocket unless given (tests: a memory transport).
        verifier: a signature cache shared with the core (a vote checked here is then not
            recovered twice).
    """

    def __init__(
        self,
        config: NetworkConfig,
        identity: ChainIdentity,
        service: ChainService,
        link: ConsensusLink,
        *,
        peers: PeerManager | None = None,
        transport: Transport | None = None,
        verifier: SignatureVerifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.service = service
        self.link = link
        self.peers = peers if peers is not None else PeerManager(identity.peer_id, config)
        self.transport: Transport = transport or WebSocketTransport()
        self.verifier = verifier or SignatureVerifier(identity.chain_id, identity.genesis_hash)
        self.rng = rng or random.Random()
        self.nonces = NonceBook()
        self.seen = SeenCache(config.seen_ttl_s)
        self.vote_keys = SeenCache(config.seen_ttl_s)
        self.port: int | None = None
        self.book = AddressBook(config.stale_after_s, MAX_KNOWN_ADDRS, config.bootstrap)
        self._dialing: set[str] = set()
        self._outbound = 0  # outbound connections open or opening (at most max_outbound)
        self._nursery: trio.Nursery | None = None
        self.delivered = self.relayed = self.duplicates = self.served = 0
        self.scores = PeerScores(half_life_s=config.score_half_life_s, ban_s=config.ban_s)
        self.ignored = self.received = 0
        self.disconnects: collections.Counter[tuple[str, str]] = collections.Counter()
        self.identity_key = bytes.fromhex(identity.peer_id)
        self._handling: set[bytes] = set()  # gossip ids a reader is decoding or handing on
        self._init_mesh()
        self.peers.on_timeout = self._charge_timeout

    # -- the task ---------------------------------------------------------------------------

    async def run(
        self,
        outbound: trio.MemoryReceiveChannel[ConsensusMessage],
        *,
        task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen, then dial, gossip and serve until cancelled; reports the bound port."""
        pending = self.service.subscribe_pending_transactions(TX_SUBSCRIPTION)
        self._load_scores()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._keep_scores)
            if self.config.listen_addr is not None:
                self.port = await nursery.start(
                    self.transport.serve, self.config.listen_addr, self.config.port,
                    self._inbound,
                )  # fmt: skip
                event(log, logging.INFO, "p2p listening", addr=self.config.listen_addr,
                      port=self.port, peer_id=self.identity.peer_id)  # fmt: skip
            nursery.start_soon(self._broadcast_outbound, outbound)
            nursery.start_soon(self._gossip_transactions, pending)
            nursery.start_soon(self._ingest_transactions)
            nursery.start_soon(self._announce)
            for addr in self.config.bootstrap:
                if addr.peer_id != self.identity.peer_id:
                    self._dialing.add(addr.peer_id)
                    nursery.start_soon(self._keep_dialing, addr)
            task_status.started(self.port)

    # -- connections ------------------------------------------------------------------------

    async def _inbound(self, conn: Connection) -> None:
        await self._session(conn, Direction.INBOUND, None)

    async def _keep_dialing(self, addr: Multiaddr) -> None:
        """Stay connected to a bootstrap peer: dial, and after a failure or a disconnect
        wait (doubling from ``dial_backoff_s`` to ``dial_backoff_max_s``, jittered)."""
        delay = self.config.dial_backoff_s
        while True:
            peer = self.peers.get(addr.peer_id)
            if peer is not None:  # connected (maybe it dialed us): wait until it is gone
                await peer.closed.wait()
                delay = self.config.dial_backoff_s
            elif await self._dial(addr):
                delay = self.config.dial_backoff_s
            else:
                delay = min(2 * delay, self.config.dial_backoff_max_s)
            await trio.sleep(delay * self.rng.uniform(0.8, 1.2))

    async def _dial_once(self, addr: Multiaddr) -> None:
        try:
            await self._dial(addr)
        finally:
            self._dialing.discard(addr.peer_id)

    async def _dial(self, addr: Multiaddr) -> bool:
        """One connection to ``addr``, run to its end; True if the handshake completed.
        Not dialed (False) while ``max_outbound`` connections are open or opening, or banned."""
        banned = self.scores.is_banned(addr.peer_id, trio.current_time())
        if banned or self._outbound >= self.config.max_outbound:
            return False
        self._outbound += 1
        try:
            async with self.transport.connect(addr.host, addr.port) as conn:
                return await self._session(conn, Direction.OUTBOUND, addr)
        except TransportError as exc:
            event(log, logging.DEBUG, "dial failed", peer=addr.peer_id[:12],
                  addr=f"{addr.host}:{addr.port}", reason=str(exc))  # fmt: skip
            return False
        finally:
            self._outbound -= 1

    async def _session(
        self, conn: Connection, direction: Direction, dialed: Multiaddr | None
    ) -> bool:
        """Handshake, register, serve the peer until either side ends it; never raises
        (but for cancellation). Returns True if the handshake completed."""
        where = f"{conn.remote_host}:{conn.remote_port}"
        try:
            hello = await self._handshake(conn, dialed)
        except HandshakeFailed as exc:
            event(log, logging.INFO, "peer handshake failed", addr=where,
                  direction=direction.value, reason=exc.reason.name, detail=exc.detail,
                  by="peer" if exc.remote_closed else "us")  # fmt: skip
            self.disconnects[exc.reason.name, "peer" if exc.remote_closed else "us"] += 1
            if not exc.remote_closed:
                await self._goodbye(conn, exc.reason)
            return False
        except TransportError as exc:
            event(log, logging.DEBUG, "peer lost during handshake", addr=where,
                  direction=direction.value, reason=str(exc))  # fmt: skip
            return False
        except Exception:  # a bug: this connection ends, the listener and the node go on
            log.error("handshake failed unexpectedly", exc_info=True,
                      extra={"fields": {"addr": where}})  # fmt: skip
            await conn.aclose()
            return False
        peer = Peer(hello.public_key.hex(), hello, direction, conn,
                    dialed or self._listen_addr_of(conn, hello), self.config.peer_queue,
                    trio.current_time())  # fmt: skip
        refusal: DisconnectReason | None = DisconnectReason.BANNED
        replaced: Peer | None = None
        if not self.scores.is_banned(peer.peer_id, trio.current_time()):
            refusal, replaced = self.peers.admit(peer)
        if refusal is not None:
            event(log, logging.INFO, "peer refused", peer=peer.label, addr=where,
                  direction=direction.value, reason=refusal.name,
                  limit=self._on_refused(peer, refusal))  # fmt: skip
            await self._goodbye(conn, refusal)
            return True
        if replaced is not None:
            replaced.kick(DisconnectReason.DUPLICATE_PEER)
        self._on_connected(peer)
        event(log, logging.INFO, "peer connected", peer=peer.label, addr=where,
              direction=direction.value, peers=len(self.peers), head=hello.head_number,
              finalized_slot=hello.finalized_slot, epoch=hello.epoch,
              view=hello.view)  # fmt: skip
        reason = "closed"
        ended = False
        try:
            with peer.scope:
                reason = await self._serve_peer(peer)
            ended = True
        finally:
            self.peers.remove(peer)
            peer.close()
            if not ended:  # the node is stopping (cancelled): say so, briefly
                with trio.CancelScope(shield=True):
                    await self._goodbye(conn, DisconnectReason.SHUTDOWN, timeout_s=0.25)
        self._on_ended(peer, compute_disconnect_label(reason, peer.kick_reason))
        if peer.kick_reason is not None:
            reason = peer.kick_reason.name
            await self._goodbye(conn, peer.kick_reason)
        event(log, logging.INFO, "peer disconnected", peer=peer.label, addr=where,
              direction=direction.value, reason=reason, peers=len(self.peers),
              dropped=peer.dropped,
              duration_s=round(trio.current_time() - peer.connected_at, 1))  # fmt: skip
        return True

    async def _serve_peer(self, peer: Peer) -> str:
        """Run the peer's reader, writer and greeter; returns why the session ended."""
        reason = "closed"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, peer)
                nursery.start_soon(self._greet, peer)
                reason = await self._reader(peer)
                nursery.cancel_scope.cancel()
        except* NetworkRemoteError as group:
            error = _first(group, NetworkRemoteError)
            reason = f"{error.reason.name}: {error.detail}"
            self._charge(peer, error.reason)
            await self._goodbye(peer.conn, error.reason)
        except* TransportError as group:
            reason = f"connection lost: {_first(group, TransportError)}"
        except* Exception as group:  # a bug: this peer's session ends, the node goes on
            log.error("peer session failed", exc_info=group,
                      extra={"fields": {"peer": peer.label}})  # fmt: skip
            reason = "internal error"
        return reason

    async def _handshake(self, conn: Connection, dialed: Multiaddr | None) -> Hello:
        hs = Handshake(self.identity, self.link.local_status(), secrets.token_bytes(32),
                       self.nonces, listen_port=self.port or 0)  # fmt: skip
        try:
            with trio.fail_after(self.config.handshake_timeout_s):
                await conn.send(encode_message(hs.start()))
                while hs.state is not HandshakeState.DONE:
                    frame = await conn.receive()
                    try:
                        message = decode_message(frame)
                    except DecodeError as exc:
                        raise HandshakeFailed(DisconnectReason.BAD_MESSAGE, str(exc)) from None
                    for reply in hs.receive(message):
                        await conn.send(encode_message(reply))
        except trio.TooSlowError:
            raise HandshakeFailed(DisconnectReason.TIMEOUT, "no handshake in time") from None
        assert hs.peer is not None  # DONE is reached only after the peer's Hello
        if dialed is not None and hs.peer.public_key.hex() != dialed.peer_id:
            raise HandshakeFailed(DisconnectReason.WRONG_PEER_ID,
                                  f"dialed {dialed.peer_id[:12]}, "
                                  f"answered by {hs.peer.public_key.hex()[:12]}")  # fmt: skip
        return hs.peer

    async def _goodbye(
        self, conn: Connection, reason: DisconnectReason, *, timeout_s: float = GOODBYE_TIMEOUT_S
    ) -> None:
        """Tell the peer why, then close (best effort, briefly)."""
        with trio.move_on_after(timeout_s):
            with contextlib.suppress(TransportError):
                await conn.send(encode_message(Disconnect(reason)))
        await conn.aclose()

    def _listen_addr_of(self, conn: Connection, hello: Hello) -> Multiaddr | None:
        if hello.listen_port == 0:
            return None
        try:
            return make_multiaddr(conn.remote_host, hello.listen_port, hello.public_key.hex())
        except ValueError:
            return None

    # -- one peer's tasks -------------------------------------------------------------------

    async def _writer(self, peer: Peer) -> None:
        while (frame := await peer.next_frame()) is not None:
            await peer.conn.send(frame)

    async def _reader(self, peer: Peer) -> str:
        """Read and handle frames until the connection ends; returns why it ended.

        Raises:
            NetworkRemoteError: the peer sent something it must not.
            ConnectionClosed: the connection broke.
        """
        limit = RateLimit(self.config.max_frames_per_s, self.config.frame_burst,
                          trio.current_time())  # fmt: skip
        # Its own frames, once and twice: one repeat within the window is forgiven (a core
        # re-sending just after its relay, jitter bunching two sends), a third copy is not.
        repeated = SeenCache(self.config.seen_ttl_s, capacity=REPEATS_TRACKED)
        twice = SeenCache(self.config.seen_ttl_s, capacity=REPEATS_TRACKED)
        while True:
            frame = await peer.conn.receive()
            if not limit.take(trio.current_time()):
                rate = self.config.max_frames_per_s
                raise NetworkRemoteError(DisconnectReason.RATE_LIMITED, f"over {rate:g} frames/s")
            try:
                kind = peek_type(frame)
            except DecodeError as exc:
                raise NetworkRemoteError(DisconnectReason.BAD_MESSAGE, str(exc)) from None
            if kind in GOSSIP_TYPES:
                self.received += 1
                message_id = compute_message_id(frame)
                now = trio.current_time()
                if not repeated.add(message_id, now) and not twice.add(message_id, now):
                    self._charge_repeat(peer, now)
                # Another reader holding the same bytes (decoding a block takes a while): this
                # copy is that one, and gets whatever that one gets.
                if not self.seen.is_fresh(message_id, now) or message_id in self._handling:
                    self.duplicates += 1
                    continue
                self._handling.add(message_id)
                try:
                    await self._handle_gossip(peer, frame, kind, message_id)
                finally:
                    self._handling.discard(message_id)
                continue
            message = await self._decode(frame, kind)
            if isinstance(message, Disconnect):
                return f"peer said {message.reason.name}"
            if isinstance(message, Hello | HelloAck):
                raise NetworkRemoteError(DisconnectReason.PROTOCOL_ERROR, "handshake repeated")
            if isinstance(message, Have):
                self._on_have(peer, message)
            elif isinstance(message, Want):
                self._on_want(peer, message)
            elif isinstance(message, _REQUESTS):
                self._serve(peer, message)
            else:
                assert isinstance(message, Response)
                peer.resolve(message)

    async def _handle_gossip(
        self, peer: Peer, frame: bytes, kind: MessageType, message_id: bytes
    ) -> None:
        started = trio.current_time()
        message = await self._decode(frame, kind)
        if kind is MessageType.PROPOSAL:
            decode_ms = round((trio.current_time() - started) * 1000)
            event(log, logging.DEBUG, "proposal received", peer=peer.label, bytes=len(frame),
                  decode_ms=decode_ms)  # fmt: skip
        await self._on_gossip(peer, message, frame, message_id)

    async def _decode(self, frame: bytes, kind: MessageType) -> WireMessage:
        try:
            if kind in _BLOCK_TYPES and len(frame) > THREAD_DECODE_BYTES:
                return await offload.run_sync(decode_message, frame)
            return decode_message(frame)
        except DecodeError as exc:
            raise NetworkRemoteError(DisconnectReason.BAD_MESSAGE, str(exc)) from None

    def _serve(self, peer: Peer, request: Request) -> None:
        """Answer a request from what this node holds (never waits: see ``_peers``)."""
        now = trio.current_time()
        others = self.book.fresh(now, exclude=peer.peer_id) if isinstance(request, GetPeers) else ()
        reply = answer_request(request, self.link, self.service.chain, others, self.rng)
        self.served += 1
        peer.send_nowait(encode_message(reply), bulk=isinstance(reply, BlockRange))

    def _learn(self, addrs: Sequence[Multiaddr]) -> None:
        """Remember addresses from peer exchange; dial some while below ``max_peers`` and
        ``max_outbound`` (a bootnode dials none: it learns who connects to it)."""
        now = trio.current_time()
        for addr in addrs:
            pid = addr.peer_id
            if pid == self.identity.peer_id:
                continue
            self.book.learn(addr, now)
            if not self.config.discover or self.config.bootnode:
                continue
            busy = len(self.peers) + len(self._dialing) >= self.config.max_peers
            busy = busy or self._outbound >= self.config.max_outbound
            if busy or pid in self._dialing or self.peers.get(pid) is not None:
                continue
            if len(self._dialing) >= self.config.max_discovery_dials or self._nursery is None:
                continue
            self._dialing.add(pid)
            self._nursery.start_soon(self._dial_once, addr)


def _first(group: BaseExceptionGroup[BaseException], kind: type[_E]) -> _E:
    """The first leaf of ``kind`` in a (nested) exception group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc, kind)
        if isinstance(exc, kind):
            return exc
    raise LookupError(kind)
