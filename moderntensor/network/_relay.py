"""Gossip relay for :class:`~moderntensor.network._service.NetworkService`: what a reader does
with a gossip frame (dedupe, vote checks, screening, relay, hand to the node), and what the
node sends (the driver's broadcasts, the admitted transactions). See ``_service`` for the
whole story.

The mesh (gossipsub's shape, without its GRAFT/PRUNE negotiation): each node ranks its peers
by ``keccak256(own id || peer id)`` -- a stable order of its own, different at every node, so
the eager links form a random graph -- and relays a frame in full to the first
``mesh_degree`` of them (the *eager* peers). Every other peer gets the frame's id in a
``Have`` (batched every ``have_interval_s``); a peer that lacks it answers ``Want`` and is
sent the frame from the message cache. With at most ``mesh_degree`` + 1 peers that is plain
flooding; beyond, each frame costs D full copies per node instead of one per peer, and the
``Have``/``Want`` path repairs any hole in the mesh. The node's own messages and the
transactions it admitted go to every peer / the eager peers respectively (flood publish).

Two windows: a frame is handed to the node again once ``seen_ttl_s`` (about a slot) has
passed -- the core's re-sends after a timeout are byte-identical and must get through -- but
it is *relayed* at most once per ``relay_window_s`` (a minute or more). With one window, a
frame whose trip around a cycle of peers took longer than the short one (slow links, busy
nodes) came back as new, was relayed again and circulated for ever; the simulator found it.

Before relaying, each consensus message is screened by the node (``ConsensusLink.screen``):
ACCEPT is relayed and delivered, IGNORE neither (no blame), REJECT disconnects the sender.
"""

from __future__ import annotations

from collections import defaultdict

import trio

from moderntensor.chain.votes import Evidence, SignedVote
from moderntensor.consensus import Certificate, Proposal, SignatureVerifier
from moderntensor.crypto import keccak256
from moderntensor.network._config import NetworkConfig
from moderntensor.network._errors import NetworkRemoteError
from moderntensor.network._gossip import (
    BoundedSet,
    MessageCache,
    SeenCache,
    build_tx_frames,
    compute_message_id,
    compute_vote_key,
)
from moderntensor.network._link import ConsensusLink, ConsensusMessage, GossipVerdict
from moderntensor.network._messages import (
    MAX_HAVE_IDS,
    MAX_TX_BATCH,
    DisconnectReason,
    Have,
    Transactions,
    Want,
    WireMessage,
)
from moderntensor.network._peers import Peer, PeerManager
from moderntensor.network._score import FUTURE_VOTE_COST, PeerScores
from moderntensor.network._wire import encode_message
from moderntensor.service import ChainService

__all__ = ["GossipRelay"]

MAX_PENDING_HAVES = 4 * MAX_HAVE_IDS
"""Ids waiting for the next ``Have`` to one peer (the oldest are dropped beyond it)."""
TX_INGEST_FRAMES = 64
"""Gossip transaction batches waiting to be submitted (beyond it, arriving ones are shed)."""
TX_INGEST_BYTES = 16 * 1024 * 1024
"""Raw transaction bytes waiting to be submitted, all batches together."""
RECENT_TXS = 65_536
"""Hashes of transactions admitted from gossip, remembered to skip later copies (2 MB)."""


class GossipRelay:
    """The gossip half of :class:`NetworkService` (a mixin: the attributes are its)."""

    config: NetworkConfig
    service: ChainService
    link: ConsensusLink
    peers: PeerManager
    verifier: SignatureVerifier
    seen: SeenCache
    vote_keys: SeenCache
    scores: PeerScores
    delivered: int
    relayed: int
    duplicates: int
    ignored: int
    identity_key: bytes

    def _init_mesh(self) -> None:
        self.cache = MessageCache(self.config.seen_ttl_s + 1.0, self.config.message_cache_bytes)
        self.wanted = SeenCache(self.config.request_timeout_s)  # ids asked for, not yet got
        self.relayed_ids = SeenCache(self.config.relay_window_s, capacity=262_144)
        self._haves: defaultdict[str, list[bytes]] = defaultdict(list)
        self._ranks: dict[str, bytes] = {}
        self.rejected = self.haves_sent = self.wants_sent = self.wants_served = 0
        self.recent_txs = BoundedSet(RECENT_TXS)  # hashes of transactions admitted from gossip
        self.known_txs_skipped = 0  # gossiped transactions this node had: not decoded
        self._tx_ingest, self._tx_ingested = trio.open_memory_channel[
            tuple[Peer, tuple[bytes, ...], int]
        ](TX_INGEST_FRAMES)
        self._tx_queued_bytes = 0
        self.txs_shed = 0  # gossiped transactions dropped unread: the node was too far behind

    # -- the mesh ---------------------------------------------------------------------------

    def _rank(self, peer: Peer) -> bytes:
        rank = self._ranks.get(peer.peer_id)
        if rank is None:
            if len(self._ranks) > 4 * self.config.max_peers:
                self._ranks.clear()
            rank = self._ranks[peer.peer_id] = keccak256(
                self.identity_key + bytes.fromhex(peer.peer_id)
            )
        return rank

    def _split(self, exclude: Peer | None = None) -> tuple[list[Peer], list[Peer]]:
        """(eager, lazy): the connected peers but ``exclude``, split by rank."""
        peers = sorted((p for p in self.peers.peers.values() if p is not exclude), key=self._rank)
        degree = self.config.mesh_degree
        return peers[:degree], peers[degree:]

    def _relay(self, frame: bytes, message_id: bytes, exclude: Peer | None, now: float) -> int:
        """Send ``frame`` to the eager peers, announce it to the lazy ones; the copies sent."""
        self.cache.put(message_id, frame, now)
        eager, lazy = self._split(exclude)
        for peer in eager:
            peer.send_nowait(frame)
        for peer in lazy:
            pending = self._haves[peer.peer_id]
            pending.append(message_id)
            if len(pending) > MAX_PENDING_HAVES:
                del pending[: len(pending) - MAX_PENDING_HAVES]
        return len(eager)

    async def _announce(self) -> None:
        """Every ``have_interval_s``: send each lazy peer the ids gathered for it."""
        while True:
            await trio.sleep(self.config.have_interval_s)
            haves, self._haves = self._haves, defaultdict(list)
            for peer_id, ids in haves.items():
                peer = self.peers.get(peer_id)
                if peer is None:
                    continue
                for i in range(0, len(ids), MAX_HAVE_IDS):
                    peer.send_nowait(encode_message(Have(tuple(ids[i : i + MAX_HAVE_IDS]))))
                    self.haves_sent += 1

    def _on_have(self, peer: Peer, have: Have) -> None:
        """Ask ``peer`` for the announced frames this node has not seen nor asked for."""
        now = trio.current_time()
        lacking = [i for i in have.ids if self.seen.is_fresh(i, now) and i not in self.wanted]
        if not lacking:
            return
        for message_id in lacking:
            self.wanted.add(message_id, now)
        peer.send_nowait(encode_message(Want(tuple(lacking))))
        self.wants_sent += 1

    def _on_want(self, peer: Peer, want: Want) -> None:
        """Send ``peer`` the asked frames still in the cache (others are gone: no answer),
        each at most once: a peer asking again and again for a cached block must not make
        this node send (and queue) it again and again."""
        now = trio.current_time()
        for message_id in want.ids:
            if message_id in peer.served_wants:
                continue
            frame = self.cache.get(message_id, now)
            if frame is not None:
                peer.served_wants.add(message_id)
                peer.send_nowait(frame)
                self.wants_served += 1

    # -- what peers send --------------------------------------------------------------------

    async def _on_gossip(
        self, peer: Peer, message: WireMessage, frame: bytes, message_id: bytes
    ) -> None:
        now = trio.current_time()
        if isinstance(message, SignedVote):
            key = compute_vote_key(message)
            if not self.vote_keys.is_fresh(key, now):
                self.duplicates += 1
                return
            if self._too_far_ahead(message):  # ignored: never recovered, never relayed
                self.ignored += 1
                if self._beyond_clock(message) and self.scores.charge(
                    peer.peer_id, FUTURE_VOTE_COST, now
                ):
                    peer.kick(DisconnectReason.BANNED)
                return
            if not self.verifier.is_authentic(message):
                raise NetworkRemoteError(DisconnectReason.BAD_SIGNATURE,
                                         f"a {message.kind.name} vote not signed by "
                                         f"0x{message.signer.hex()}")  # fmt: skip
            self.vote_keys.add(key, now)
        if isinstance(message, Transactions):
            if not self.seen.add(message_id, now):  # another peer's copy came first
                self.duplicates += 1
                return
            self._queue_transactions(peer, message.txs)
            return
        assert isinstance(message, SignedVote | Certificate | Proposal | Evidence)
        if not self.seen.is_fresh(message_id, now):  # another peer's copy came first
            self.duplicates += 1
            return
        verdict, why = self.link.screen(message)
        if verdict is GossipVerdict.IGNORE:  # maybe usable later: not marked seen
            self.ignored += 1
            return
        self.seen.add(message_id, now)
        if verdict is GossipVerdict.REJECT:
            self.rejected += 1
            raise NetworkRemoteError(DisconnectReason.BAD_MESSAGE, why)
        if self.relayed_ids.add(message_id, now):  # relayed once per relay window
            self.relayed += self._relay(frame, message_id, peer, now)
        self.delivered += 1
        await self.link.deliver(message)

    def _queue_transactions(self, peer: Peer, raws: tuple[bytes, ...]) -> None:
        """Hand a gossip batch to :meth:`_ingest_transactions`, so the peer's reader goes on at
        once to its next frame (a vote or a proposal behind megabytes of transactions must not
        wait for their decoding). Beyond ``TX_INGEST_FRAMES`` batches or ``TX_INGEST_BYTES``
        waiting, the batch is shed and counted (``txs_shed``): transactions are not consensus
        messages, the node that sent them still holds them, and a node this far behind
        must not fall further behind on votes."""
        size = sum(map(len, raws))
        if self._tx_queued_bytes + size > TX_INGEST_BYTES:
            self.txs_shed += len(raws)
            return
        try:
            self._tx_ingest.send_nowait((peer, raws, size))
        except trio.WouldBlock:
            self.txs_shed += len(raws)
            return
        self._tx_queued_bytes += size

    async def _ingest_transactions(self) -> None:
        """Submit the queued gossip batches, one at a time and in arrival order: a copy that
        arrives while the first is being decoded is recognised once that one is admitted."""
        async for peer, raws, size in self._tx_ingested:
            self._tx_queued_bytes -= size
            await self._on_transactions(peer, raws)

    async def _on_transactions(self, peer: Peer, raws: tuple[bytes, ...]) -> None:
        """Submit the transactions of a gossip batch that this node lacks.

        In a mesh every node gets most transactions from several peers (each node that admits
        one passes it on). A copy is recognised by its hash, before it is decoded: one in the
        pool, or admitted here lately (:attr:`recent_txs`, which also covers those that left
        the pool in a block since), costs a hash and a lookup, not a decode, a sender
        recovery and a rejection by the pool. A transaction this node refused before (a
        nonce gap, a full pool) is not remembered, so it is judged again."""
        pool = self.service.pool
        recent = self.recent_txs
        fresh: list[bytes] = []
        for raw in raws:
            tx_hash = keccak256(raw)
            peer.known_txs.add(tx_hash)
            if tx_hash not in recent and pool.get(tx_hash) is None:
                fresh.append(raw)
        self.known_txs_skipped += len(raws) - len(fresh)
        if not fresh:
            return
        for result in await self.service.submit_raw_transactions(fresh):
            if isinstance(result, bytes):
                recent.add(result)

    def _too_far_ahead(self, vote: SignedVote) -> bool:
        return vote.slot > self.link.local_status().view + self.config.max_future_slots

    def _beyond_clock(self, vote: SignedVote) -> bool:
        """Far ahead of the clock too: a lie, charged (a node catching up sees the network's
        current votes far ahead of its own view, from honest peers)."""
        return vote.slot > self.link.clock_slot() + self.config.max_future_slots

    # -- what the node sends ----------------------------------------------------------------

    async def _broadcast_outbound(
        self, outbound: trio.MemoryReceiveChannel[ConsensusMessage]
    ) -> None:
        """Forward the driver's broadcasts to every peer (marked seen, so peers' echoes are
        not delivered back to it)."""
        async for message in outbound:
            frame = encode_message(message)
            now = trio.current_time()
            message_id = compute_message_id(frame)
            self.seen.add(message_id, now)
            self.relayed_ids.add(message_id, now)  # our echoes are not relayed back out
            self.cache.put(message_id, frame, now)  # a peer may Want it after a relay's Have
            if isinstance(message, SignedVote):
                self.vote_keys.add(compute_vote_key(message), now)
            self.peers.broadcast(frame)

    async def _gossip_transactions(self, pending: trio.MemoryReceiveChannel[bytes]) -> None:
        """Gossip admitted transactions in batches, to each eager peer the ones it lacks
        (each node that admits them passes them on: the mesh reaches every node)."""
        async for first in pending:
            hashes = [first]
            while len(hashes) < MAX_TX_BATCH:
                try:
                    hashes.append(pending.receive_nowait())
                except trio.WouldBlock:
                    break
            txs = []
            for tx_hash in hashes:
                tx = self.service.pool.get(tx_hash)
                if tx is not None:
                    txs.append((tx_hash, tx.raw))
            eager, _lazy = self._split()
            encoded: dict[tuple[int, ...], list[bytes]] = {}  # the same batch: the same frames
            for peer in eager:
                lacking = tuple(i for i, (h, _) in enumerate(txs) if h not in peer.known_txs)
                frames = encoded.get(lacking)
                if frames is None:
                    frames = encoded[lacking] = build_tx_frames([txs[i][1] for i in lacking])
                for i in lacking:
                    peer.known_txs.add(txs[i][0])
                for frame in frames:
                    peer.send_nowait(frame, bulk=True)
